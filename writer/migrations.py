"""Running the schema and its migrations against a connection (one transaction per step)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg

from writer.catalog import table_exists
from writer.database import safe_error_text
from writer.schema import BASE_SCHEMA, LATEST_VERSION, MIGRATION_INFO_TABLE, MIGRATIONS

log = logging.getLogger(__name__)


class MigrationError(Exception):
    """A migration cannot run; the message is one line for the operator."""


def init_schema(connection: psycopg.Connection) -> None:
    """Create the base schema; on an initialized database it changes nothing."""
    with connection.transaction():
        for statement in BASE_SCHEMA:
            connection.execute(statement)


def init_migration_info(connection: psycopg.Connection) -> bool:
    """Create migration_info at version 0 if it is missing; True when it was created."""
    with connection.transaction():
        if table_exists(connection, MIGRATION_INFO_TABLE):
            return False
        connection.execute("CREATE TABLE migration_info (version INTEGER NOT NULL)")
        connection.execute("INSERT INTO migration_info (version) VALUES (0)")
        return True


def current_version(connection: psycopg.Connection, lock: bool = False) -> int:
    if not table_exists(connection, MIGRATION_INFO_TABLE):
        raise MigrationError("table migration_info does not exist: run --db-init-migration first")
    rows = connection.execute(
        "SELECT version FROM migration_info" + (" FOR UPDATE" if lock else "")
    ).fetchall()
    if len(rows) != 1:
        raise MigrationError(f"table migration_info must hold exactly one row, it holds {len(rows)}")
    version: int = rows[0][0]
    return version


def parse_target(text: str) -> int:
    if text.strip().lower() == "latest":
        return LATEST_VERSION
    try:
        target = int(text.strip(), 10)
    except ValueError:
        raise MigrationError(f"--migrate expects a version number or 'latest', got {text!r}") from None
    if not 0 <= target <= LATEST_VERSION:
        raise MigrationError(f"--migrate: version {target} does not exist (0..{LATEST_VERSION})")
    return target


def migrate(connection: psycopg.Connection, target: int, report: Callable[[str], None] = print) -> int:
    """Move the schema to ``target`` one step per transaction; returns the version reached."""
    while True:
        with connection.transaction():
            version = current_version(connection, lock=True)
            if version == target:
                return version
            if version > LATEST_VERSION or version < 0:
                raise MigrationError(f"database is at unknown version {version} "
                                     f"(this program knows 0..{LATEST_VERSION})")
            if target > version:
                step, statements, reached = MIGRATIONS[version], MIGRATIONS[version].up, version + 1
            else:
                step, statements, reached = MIGRATIONS[version - 1], MIGRATIONS[version - 1].down, version - 1
            try:
                for statement in statements:
                    connection.execute(statement)
            except psycopg.Error as error:
                raise MigrationError(f"migration {version} -> {reached} ({step.description}) failed: "
                                     f"{safe_error_text(error)}") from None
            connection.execute("UPDATE migration_info SET version = %s", (reached,))
        report(f"migrated from version {version} to {reached}: {step.description}")
