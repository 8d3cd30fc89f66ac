"""Rows for the storage tests, and the triggers that make PostgreSQL refuse or fail writes."""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from tests.harness.database import Database
from writer.copy_rows import COLUMNS
from writer.message import Row, parse_message
from writer.sample_messages import cluster_id, encoded

NOW = datetime.datetime(2030, 1, 1)  # naive UTC, after every sample timestamp
BAD_ORG = 666

# Refuses the rows of one organization, as a constraint or a trigger refuses bad data.
REFUSE_ORG_666 = f"""
CREATE FUNCTION refuse_org_666() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.org_id = {BAD_ORG} THEN
        RAISE EXCEPTION 'org % is refused by the test trigger', NEW.org_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_org_666 BEFORE INSERT ON new_reports FOR EACH ROW EXECUTE FUNCTION refuse_org_666();
"""

# A broken trigger: every row refused, whatever it holds.
REFUSE_EVERYTHING = """
CREATE FUNCTION refuse_everything() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'broken trigger refuses every row'; END $$;
CREATE TRIGGER refuse_everything BEFORE INSERT ON new_reports FOR EACH ROW EXECUTE FUNCTION refuse_everything();
"""
FIX_REFUSE_EVERYTHING = "DROP TRIGGER refuse_everything ON new_reports; DROP FUNCTION refuse_everything();"

# A transient outage of writes that leaves connections (and the supervisor's start-up check) working:
# every insert fails with 57P03, "the database system is not accepting connections".
OUTAGE = """
CREATE FUNCTION test_outage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'test outage: not accepting writes' USING ERRCODE = '57P03'; END $$;
CREATE TRIGGER test_outage BEFORE INSERT ON new_reports FOR EACH ROW EXECUTE FUNCTION test_outage();
"""
END_OUTAGE = "DROP TRIGGER test_outage ON new_reports; DROP FUNCTION test_outage();"


def make_rows(numbers: Iterable[int], size: str = "small_size", **kwargs: object) -> list[Row]:
    """The rows of sample messages ``numbers`` (each at the offset of its number)."""
    rows = []
    for number in numbers:
        row = parse_message(encoded(number, size, **kwargs), number, NOW)
        assert isinstance(row, Row), row
        rows.append(row)
    return rows


def make_row(number: int, report: bytes, **changes: object) -> Row:
    """A row of its own for ``number`` with the given report (JSON text), fields changed by ``changes``."""
    fields = dict(
        org_id=1000 + number,
        account_number=5000 + number,
        cluster=cluster_id(number),
        report=report,
        updated_at=datetime.datetime(2025, 3, 4, 5, 6, 7, 123456) + datetime.timedelta(seconds=number),
        kafka_offset=number,
    )
    fields.update(changes)
    return Row(**fields)


def row_with(org: int, cluster: int, second: int, offset: int) -> Row:
    """A row whose key (org, cluster, updated_at) is made of the three small numbers."""
    return make_row(0, b"{}", org_id=org, cluster=cluster_id(cluster),
                    updated_at=datetime.datetime(2025, 1, 1, 0, 0, second), kafka_offset=offset)


def with_org(row: Row, org_id: int) -> Row:
    return Row(org_id, row.account_number, row.cluster, row.report, row.updated_at, row.kafka_offset, row.request_id)


def stored_rows(database: Database) -> list[tuple]:
    with database.connect() as connection:
        return connection.execute(f"SELECT {', '.join(COLUMNS)} FROM new_reports ORDER BY kafka_offset").fetchall()


def as_tuple(row: Row) -> tuple:
    """A row as stored_rows() reads it back."""
    return (row.org_id, row.account_number, row.cluster, row.report.decode(), row.updated_at, row.kafka_offset)
