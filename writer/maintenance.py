"""Maintenance operations of the command line: cleanup, drop, age-based listing and deletion.

Table names come from constant lists and are composed with psycopg.sql; the
age is always a bound parameter cast to interval by PostgreSQL, and must be
greater than zero (an age of zero or less would select every row).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import NamedTuple

import psycopg
from psycopg import sql

from writer.catalog import table_exists
from writer.schema import DATA_TABLES_IN_DELETE_ORDER, TABLES_IN_DROP_ORDER


class AgedTable(NamedTuple):
    table: str
    columns: tuple[str, ...]


AGED_TABLES = {
    "new_reports": AgedTable("new_reports", ("org_id", "account_number", "cluster", "updated_at", "kafka_offset")),
    "reported": AgedTable("reported", ("org_id", "account_number", "cluster", "updated_at", "notified_at", "state")),
    "read_errors": AgedTable("read_errors", ("error_id", "org_id", "cluster", "updated_at", "created_at")),
}

_OLDER_THAN = sql.SQL("updated_at < NOW() - {}::interval").format(sql.Placeholder())


class NonPositiveMaxAge(ValueError):
    """--max-age of zero or less: it would list or delete every row."""


def check_max_age(connection: psycopg.Connection, max_age: str, now: datetime.datetime | None = None) -> None:
    """Refuse a ``max_age`` that reaches no earlier than ``now`` (default: the database's NOW(), as the
    query uses). Tested on the moment it gives, not the interval alone: comparing intervals counts a
    month as 30 days, so '1 month -29 days' looked positive, yet on 1 March it reaches into the future."""
    [(non_positive,)] = connection.execute(
        "SELECT NOT (coalesce(%(now)s::timestamptz, NOW()) - %(age)s::interval"
        " < coalesce(%(now)s::timestamptz, NOW()))",
        {"now": now, "age": max_age},
    ).fetchall()
    if non_positive:
        raise NonPositiveMaxAge(f"--max-age {max_age!r} must be greater than zero (it would select every row)")


def cleanup_all(connection: psycopg.Connection, report: Callable[[str], None] = print) -> dict[str, int]:
    """Delete the content of every data table in one transaction."""
    deleted = {}
    with connection.transaction():
        for table in DATA_TABLES_IN_DELETE_ORDER:
            if not table_exists(connection, table):
                continue
            cursor = connection.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
            deleted[table] = cursor.rowcount
    for table, count in deleted.items():
        report(f"{table}: {count} rows deleted")
    return deleted


def drop_all(connection: psycopg.Connection, report: Callable[[str], None] = print) -> list[str]:
    dropped = []
    with connection.transaction():
        for table in TABLES_IN_DROP_ORDER:
            if table_exists(connection, table):
                connection.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
                dropped.append(table)
    for table in dropped:
        report(f"table {table} dropped")
    if not dropped:
        report("no tables to drop")
    return dropped


def rows_older_than(connection: psycopg.Connection, table: str, max_age: str) -> list[tuple]:
    aged = AGED_TABLES[table]
    check_max_age(connection, max_age)
    query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY updated_at, org_id, cluster").format(
        sql.SQL(", ").join(map(sql.Identifier, aged.columns)), sql.Identifier(table), _OLDER_THAN
    )
    return connection.execute(query, (max_age,)).fetchall()


def print_older_than(connection, table: str, max_age: str, report: Callable[[str], None] = print) -> int:
    rows = rows_older_than(connection, table, max_age)
    columns = AGED_TABLES[table].columns
    for row in rows:
        report("  ".join(f"{name}={value}" for name, value in zip(columns, row, strict=True)))
    report(f"{table}: {len(rows)} rows older than {max_age}")
    return len(rows)


def delete_older_than(connection, table: str, max_age: str, report: Callable[[str], None] = print) -> int:
    check_max_age(connection, max_age)
    with connection.transaction():
        query = sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(table), _OLDER_THAN)
        count = connection.execute(query, (max_age,)).rowcount
    report(f"{table}: {count} rows older than {max_age} deleted")
    return count


def truncate_reported(connection, report: Callable[[str], None] = print) -> None:
    with connection.transaction():
        connection.execute("TRUNCATE TABLE reported")
    report("table reported truncated")
