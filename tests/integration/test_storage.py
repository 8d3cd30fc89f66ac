"""BatchWriter against a real PostgreSQL at the latest schema version: storing, idempotence, refused rows, the
staging path, transient and fatal errors (how real server errors are classified: test_storage_errors.py)."""

from __future__ import annotations

import datetime
import logging

import pytest
from psycopg import errors

from tests.harness.database import APPLICATION_NAME, row_count, terminate_writer_backends, writer_backends
from tests.harness.storage import BAD_ORG, as_tuple, make_rows, stored_rows, with_org
from writer.message import Row
from writer.storage import (
    STAGING_STREAK,
    STAGING_TABLE,
    BatchWriter,
    FatalDatabaseError,
    TransientDatabaseError,
)

# --- storing and idempotence -----------------------------------------------------------------


def test_write_stores_rows(migrated_database, writer):
    rows = make_rows(range(10))
    result = writer.write(rows)
    assert (result.stored, result.duplicates, result.refused) == (10, 0, [])
    assert stored_rows(migrated_database) == [as_tuple(row) for row in rows]


def test_write_of_nothing_does_nothing(migrated_database, writer):
    result = writer.write([])
    assert (result.stored, result.stored_bytes, result.duplicates, result.refused) == (0, 0, 0, [])
    assert row_count(migrated_database) == 0


def test_stored_bytes_is_the_size_of_the_stored_reports(migrated_database, writer):
    rows = make_rows(range(5), "large_size") + make_rows(range(5, 10), "analysis_metadata_only")
    rows.append(Row(1, 2, rows[0].cluster, '{"reports":["žluťoučký 日本 \U0001F600"]}'.encode(),
                    datetime.datetime(2020, 1, 1), 99))
    result = writer.write(rows)
    assert result.stored_bytes == sum(len(row.report) for row in rows)
    with migrated_database.connect() as connection:
        stored_bytes = connection.execute("SELECT sum(octet_length(report)) FROM new_reports").fetchone()[0]
        assert stored_bytes == result.stored_bytes


def test_same_rows_again_are_duplicates_not_second_rows(migrated_database, writer, writer_conninfo):
    rows = make_rows(range(20))
    assert writer.write(rows).stored == 20
    again = writer.write(rows)
    assert (again.stored, again.stored_bytes, again.duplicates, again.refused) == (0, 0, 20, [])
    # A different writer (another worker, after a restart) sees them as duplicates too.
    other = BatchWriter(writer_conninfo)
    try:
        third = other.write(rows)
    finally:
        other.close()
    assert (third.stored, third.duplicates) == (0, 20)
    assert stored_rows(migrated_database) == [as_tuple(row) for row in rows]


def test_mixed_batch_stores_exactly_the_new_rows(migrated_database, writer):
    old = make_rows(range(0, 20, 2))
    assert writer.write(old).stored == 10
    new = make_rows(range(1, 20, 2))
    # A replayed message with the same key but another offset and content keeps the stored row.
    replayed = [
        Row(r.org_id, r.account_number, r.cluster, b'{"reports":["changed"]}', r.updated_at, 1000 + r.kafka_offset)
        for r in old
    ]
    batch = [row for pair in zip(replayed, new, strict=True) for row in pair]
    result = writer.write(batch)
    assert (result.stored, result.duplicates, result.refused) == (10, 10, [])
    assert result.stored_bytes == sum(len(row.report) for row in new)
    assert stored_rows(migrated_database) == sorted(map(as_tuple, old + new), key=lambda t: t[5])


def test_same_cluster_other_timestamp_is_a_new_row(migrated_database, writer):
    first = make_rows([1])[0]
    later = Row(first.org_id, first.account_number, first.cluster, first.report,
                first.updated_at + datetime.timedelta(microseconds=1), 2)
    other_org = with_org(first, first.org_id + 1)
    assert writer.write([first]).stored == 1
    result = writer.write([first, later, other_org])
    assert (result.stored, result.duplicates) == (2, 1)
    assert row_count(migrated_database) == 3


# --- rows the database refuses ---------------------------------------------------------------


def test_refused_row_is_the_only_one_left_out(refusing_database, writer):
    rows = make_rows(range(10))
    rows[4] = with_org(rows[4], BAD_ORG)
    result = writer.write(rows)
    assert result.stored == 9 and result.duplicates == 0
    assert [row for row, _ in result.refused] == [rows[4]]
    assert "refused by the test trigger" in result.refused[0][1]
    assert stored_rows(refusing_database) == [as_tuple(row) for i, row in enumerate(rows) if i != 4]
    assert result.stored_bytes == sum(len(row.report) for i, row in enumerate(rows) if i != 4)


@pytest.mark.parametrize("bad_positions", [(0,), (199,), (0, 57, 58, 133, 199), tuple(range(0, 200, 23))])
def test_several_refused_rows_spread_in_a_batch(refusing_database, writer, bad_positions):
    rows = make_rows(range(200), "analysis_metadata_only")
    for position in bad_positions:
        rows[position] = with_org(rows[position], BAD_ORG)
    result = writer.write(rows)
    assert [row for row, _ in result.refused] == [rows[p] for p in bad_positions]
    assert result.stored == 200 - len(bad_positions)
    good = [row for i, row in enumerate(rows) if i not in bad_positions]
    assert stored_rows(refusing_database) == [as_tuple(row) for row in good]


def test_every_row_refused(refusing_database, writer):
    rows = [with_org(row, BAD_ORG) for row in make_rows(range(8))]
    result = writer.write(rows)
    assert result.stored == 0
    assert [row for row, _ in result.refused] == rows
    assert row_count(refusing_database) == 0


def test_refused_rows_with_duplicates_in_the_same_batch(refusing_database, writer):
    stored_before = make_rows(range(0, 30, 3))
    assert writer.write(stored_before).stored == 10
    rows = make_rows(range(30))
    bad = {5, 17, 29}
    for position in bad:
        rows[position] = with_org(rows[position], BAD_ORG)
    result = writer.write(rows)
    assert [row for row, _ in result.refused] == [rows[p] for p in sorted(bad)]
    assert result.duplicates == 10
    assert result.stored == 30 - 10 - len(bad)
    assert row_count(refusing_database) == 30 - len(bad)


def test_check_constraint_refusal(migrated_database, writer):
    with migrated_database.connect() as connection:
        connection.execute("ALTER TABLE new_reports ADD CONSTRAINT test_no_667 CHECK (org_id <> 667)")
    rows = make_rows(range(50))
    rows[10] = with_org(rows[10], 667)
    rows[11] = with_org(rows[11], 667)
    result = writer.write(rows)
    assert [row for row, _ in result.refused] == rows[10:12]
    assert "test_no_667" in result.refused[0][1]
    assert result.stored == 48
    assert row_count(migrated_database) == 48


@pytest.mark.parametrize("bad_report", [b'{"reports":["\xff\xfe"]}', b'{"reports":["nul\x00byte"]}'])
def test_report_the_encoding_refuses(migrated_database, writer, bad_report):
    rows = make_rows(range(20))
    rows[7] = Row(rows[7].org_id, rows[7].account_number, rows[7].cluster, bad_report, rows[7].updated_at, 7)
    result = writer.write(rows)
    assert [row for row, _ in result.refused] == [rows[7]]
    assert result.stored == 19
    assert row_count(migrated_database) == 19


# --- direct COPY and the staging path --------------------------------------------------------


def copy_targets(caplog) -> list[str]:
    """Which table each COPY of the writer went to, in order, from its SQL log."""
    targets = []
    for record in caplog.records:
        text = record.getMessage()
        if text.startswith("sql: COPY"):
            targets.append("staging" if STAGING_TABLE in text else "direct")
    caplog.clear()
    return targets


def test_staging_used_after_a_conflict_then_direct_again(migrated_database, writer_conninfo, caplog):
    caplog.set_level(logging.INFO, logger="writer.storage")
    writer = BatchWriter(writer_conninfo, log_sql=True)
    try:
        numbers = iter(range(10_000))
        first = make_rows([next(numbers) for _ in range(5)])
        assert writer.write(first).stored == 5
        assert copy_targets(caplog) == ["direct"]

        conflicting = first[:2] + make_rows([next(numbers) for _ in range(3)])
        result = writer.write(conflicting)
        assert (result.stored, result.duplicates) == (3, 2)
        assert copy_targets(caplog) == ["direct", "staging"]  # direct fails on the key, staging merges

        all_rows = first + conflicting[2:]
        for _ in range(STAGING_STREAK):
            batch = make_rows([next(numbers) for _ in range(4)])
            result = writer.write(batch)
            assert (result.stored, result.duplicates) == (4, 0)
            assert result.stored_bytes == sum(len(row.report) for row in batch)
            assert copy_targets(caplog) == ["staging"]
            all_rows += batch

        batch = make_rows([next(numbers) for _ in range(4)])
        assert writer.write(batch).stored == 4
        assert copy_targets(caplog) == ["direct"]
        all_rows += batch
    finally:
        writer.close()
    assert stored_rows(migrated_database) == [as_tuple(row) for row in all_rows]


def test_conflict_during_the_streak_restarts_it(migrated_database, writer_conninfo, caplog):
    caplog.set_level(logging.INFO, logger="writer.storage")
    writer = BatchWriter(writer_conninfo, log_sql=True)
    try:
        rows = make_rows(range(3))
        writer.write(rows)
        writer.write(rows)  # conflict: the streak starts
        for number in range(STAGING_STREAK - 1):
            writer.write(make_rows([100 + number]))
        writer.write(rows[:1])  # another conflict, through staging: the streak starts over
        copy_targets(caplog)
        for number in range(STAGING_STREAK):
            writer.write(make_rows([200 + number]))
            assert copy_targets(caplog) == ["staging"]
        writer.write(make_rows([300]))
        assert copy_targets(caplog) == ["direct"]
    finally:
        writer.close()
    assert row_count(migrated_database) == 3 + STAGING_STREAK - 1 + STAGING_STREAK + 1


def test_staging_path_refuses_rows_too(refusing_database, writer_conninfo, caplog):
    caplog.set_level(logging.INFO, logger="writer.storage")
    writer = BatchWriter(writer_conninfo, log_sql=True)
    try:
        rows = make_rows(range(40))
        assert writer.write(rows[:10]).stored == 10
        writer.write(rows[:1])  # a conflict: staging from now on
        copy_targets(caplog)
        batch = rows[10:40]
        batch[3] = with_org(batch[3], BAD_ORG)
        batch[20] = with_org(batch[20], BAD_ORG)
        result = writer.write(batch)
        assert set(copy_targets(caplog)) == {"staging"}
        assert [row for row, _ in result.refused] == [batch[3], batch[20]]
        assert result.stored == 28
    finally:
        writer.close()
    assert row_count(refusing_database) == 38
    with refusing_database.connect() as connection:
        assert connection.execute("SELECT count(*) FROM new_reports WHERE org_id = %s", (BAD_ORG,)).fetchone()[0] == 0


# --- transient and fatal errors --------------------------------------------------------------


def test_terminated_backend_is_transient_then_reconnects(migrated_database, writer):
    assert writer.write(make_rows(range(5))).stored == 5
    before = writer_backends(migrated_database)
    assert len(before) == 1
    assert terminate_writer_backends(migrated_database) == 1

    batch = make_rows(range(5, 10))
    with pytest.raises(TransientDatabaseError):
        writer.write(batch)
    assert row_count(migrated_database) == 5  # nothing of the failed batch committed

    result = writer.write(batch)  # the caller retries the same batch
    assert (result.stored, result.duplicates) == (5, 0)
    after = writer_backends(migrated_database)
    assert len(after) == 1 and after != before
    assert row_count(migrated_database) == 10


def test_terminated_backend_retry_of_a_partly_stored_batch(migrated_database, writer):
    rows = make_rows(range(10))
    assert writer.write(rows[:5]).stored == 5
    terminate_writer_backends(migrated_database)
    with pytest.raises(TransientDatabaseError):
        writer.write(rows)
    result = writer.write(rows)
    assert (result.stored, result.duplicates) == (5, 5)
    assert stored_rows(migrated_database) == [as_tuple(row) for row in rows]


def test_lock_timeout_is_transient_and_commits_nothing(migrated_database):
    writer = BatchWriter(f"{migrated_database.conninfo} application_name={APPLICATION_NAME}"
                         " options='-c lock_timeout=50'")
    try:
        assert writer.write(make_rows([0])).stored == 1
        with migrated_database.connect(autocommit=False) as locker:
            locker.execute("LOCK TABLE new_reports IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(TransientDatabaseError):
                writer.write(make_rows(range(1, 6)))
        result = writer.write(make_rows(range(1, 6)))
        assert result.stored == 5
    finally:
        writer.close()
    assert row_count(migrated_database) == 6


def test_server_unreachable_is_transient():
    writer = BatchWriter("host=127.0.0.1 port=1 user=postgres dbname=postgres connect_timeout=5")
    with pytest.raises(TransientDatabaseError):
        writer.write(make_rows([1]))
    writer.close()


def test_missing_table_is_fatal(migrated_database, writer):
    assert writer.write(make_rows([1])).stored == 1
    with migrated_database.connect() as connection:
        connection.execute("DROP TABLE new_reports CASCADE")
    with pytest.raises(FatalDatabaseError) as raised:
        writer.write(make_rows([2]))
    assert "new_reports" in str(raised.value)
    assert isinstance(raised.value.__cause__, errors.UndefinedTable)


def test_missing_table_is_fatal_for_a_fresh_connection(migrated_database, writer_conninfo):
    with migrated_database.connect() as connection:
        connection.execute("DROP TABLE new_reports CASCADE")
    writer = BatchWriter(writer_conninfo)
    kept = []  # the caller keeps the errors (to log them): their tracebacks must not keep connections open
    try:
        for _ in range(3):  # still fatal on every attempt, not turned into something else
            with pytest.raises(FatalDatabaseError) as raised:
                writer.write(make_rows([1]))
            kept.append(raised.value)
        assert writer_backends(migrated_database) == []  # no connection left behind
    finally:
        writer.close()
    assert all(isinstance(error.__cause__, errors.UndefinedTable) for error in kept)


def test_missing_column_is_fatal_not_refused(migrated_database, writer):
    with migrated_database.connect() as connection:
        connection.execute("ALTER TABLE new_reports DROP COLUMN kafka_offset")
    with pytest.raises(FatalDatabaseError):
        writer.write(make_rows(range(3)))
