"""BatchWriter against a real PostgreSQL at the latest schema version."""

from __future__ import annotations

import datetime
import logging
import os
import subprocess
import tempfile
import threading
import time
import uuid

import psycopg
import pytest
from psycopg import errors

from conftest import Database, console_script, create_database, drop_database
from writer.copy_rows import COLUMNS
from writer.message import Row, parse_message
from writer.sample_messages import encoded
from writer.schema import LATEST_VERSION
from writer.storage import (
    STAGING_STREAK,
    STAGING_TABLE,
    BatchWriter,
    FatalDatabaseError,
    TransientDatabaseError,
    is_row_refusal,
    is_transient,
)

NOW = datetime.datetime(2030, 1, 1)
APPLICATION = "ccx-notification-writer"
BAD_ORG = 666

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


def make_rows(numbers, size: str = "small_size", **kwargs) -> list[Row]:
    rows = []
    for number in numbers:
        row = parse_message(encoded(number, size, **kwargs), number, NOW)
        assert isinstance(row, Row), row
        rows.append(row)
    return rows


def with_org(row: Row, org_id: int) -> Row:
    return Row(org_id, row.account_number, row.cluster, row.report, row.updated_at, row.kafka_offset, row.request_id)


def stored_rows(database) -> list[tuple]:
    with database.connect() as connection:
        return connection.execute(f"SELECT {', '.join(COLUMNS)} FROM new_reports ORDER BY kafka_offset").fetchall()


def as_tuple(row: Row) -> tuple:
    return (row.org_id, row.account_number, row.cluster, row.report.decode(), row.updated_at, row.kafka_offset)


def count(database) -> int:
    with database.connect() as connection:
        return connection.execute("SELECT count(*) FROM new_reports").fetchone()[0]


@pytest.fixture(scope="module")
def migrated_template(postgres_server):
    """One database migrated through the command line, as conftest's migrated_database is."""
    template = create_database(postgres_server)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCX_NOTIFICATION_WRITER") and k != "ACG_CONFIG"}
    env.update(template.env())
    with tempfile.TemporaryDirectory() as workdir:
        for args in (["--db-init-migration"], ["--db-init"], ["--migrate", "latest"]):
            result = subprocess.run([console_script(), *args], env=env, cwd=workdir,
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stderr
    yield template
    drop_database(template)


@pytest.fixture
def migrated_database(postgres_server, migrated_template):
    """A copy of the migrated template per test: the same schema, much faster than migrating again."""
    name = f"ccxw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template.name}"')
    database = Database(postgres_server, name)
    with database.connect() as connection:
        assert connection.execute("SELECT version FROM migration_info").fetchone() == (LATEST_VERSION,)
    yield database
    drop_database(database)


@pytest.fixture
def writer_conninfo(migrated_database) -> str:
    return f"{migrated_database.conninfo} application_name={APPLICATION}"


@pytest.fixture
def writer(writer_conninfo):
    writer = BatchWriter(writer_conninfo)
    yield writer
    writer.close()


@pytest.fixture
def refusing_database(migrated_database):
    with migrated_database.connect() as connection:
        connection.execute(REFUSE_ORG_666)
    return migrated_database


# --- storing and idempotence -----------------------------------------------------------------


def test_write_stores_rows(migrated_database, writer):
    rows = make_rows(range(10))
    result = writer.write(rows)
    assert (result.stored, result.duplicates, result.refused) == (10, 0, [])
    assert stored_rows(migrated_database) == [as_tuple(row) for row in rows]


def test_write_of_nothing_does_nothing(migrated_database, writer):
    result = writer.write([])
    assert (result.stored, result.stored_bytes, result.duplicates, result.refused) == (0, 0, 0, [])
    assert count(migrated_database) == 0


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
    assert count(migrated_database) == 3


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
    assert count(refusing_database) == 0


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
    assert count(refusing_database) == 30 - len(bad)


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
    assert count(migrated_database) == 48


@pytest.mark.parametrize("bad_report", [b'{"reports":["\xff\xfe"]}', b'{"reports":["nul\x00byte"]}'])
def test_report_the_encoding_refuses(migrated_database, writer, bad_report):
    rows = make_rows(range(20))
    rows[7] = Row(rows[7].org_id, rows[7].account_number, rows[7].cluster, bad_report, rows[7].updated_at, 7)
    result = writer.write(rows)
    assert [row for row, _ in result.refused] == [rows[7]]
    assert result.stored == 19
    assert count(migrated_database) == 19


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
    assert count(migrated_database) == 3 + STAGING_STREAK - 1 + STAGING_STREAK + 1


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
    assert count(refusing_database) == 38
    with refusing_database.connect() as connection:
        assert connection.execute("SELECT count(*) FROM new_reports WHERE org_id = %s", (BAD_ORG,)).fetchone()[0] == 0


# --- transient and fatal errors --------------------------------------------------------------


def writer_backends(database) -> list[int]:
    with database.connect() as connection:
        return [pid for (pid,) in connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
            (APPLICATION, database.name),
        )]


def terminate_writer_backends(database) -> int:
    pids = writer_backends(database)
    with database.connect() as connection:
        for pid in pids:
            # With a timeout, pg_terminate_backend waits until the backend is gone.
            assert connection.execute("SELECT pg_terminate_backend(%s, 30000)", (pid,)).fetchone()[0]
    return len(pids)


def test_terminated_backend_is_transient_then_reconnects(migrated_database, writer):
    assert writer.write(make_rows(range(5))).stored == 5
    before = writer_backends(migrated_database)
    assert len(before) == 1
    assert terminate_writer_backends(migrated_database) == 1

    batch = make_rows(range(5, 10))
    with pytest.raises(TransientDatabaseError):
        writer.write(batch)
    assert count(migrated_database) == 5  # nothing of the failed batch committed

    result = writer.write(batch)  # the caller retries the same batch
    assert (result.stored, result.duplicates) == (5, 0)
    after = writer_backends(migrated_database)
    assert len(after) == 1 and after != before
    assert count(migrated_database) == 10


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
    writer = BatchWriter(f"{migrated_database.conninfo} application_name={APPLICATION} options='-c lock_timeout=50'")
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
    assert count(migrated_database) == 6


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


# --- classification of real server errors ----------------------------------------------------


def error_from(connection: psycopg.Connection, statement: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as raised:
        connection.execute(statement)
    return raised.value


@pytest.fixture
def admin(database):
    with database.connect() as connection:
        connection.execute(
            "CREATE TABLE t (id integer PRIMARY KEY, v integer NOT NULL CHECK (v >= 0), ref integer REFERENCES t (id))"
        )
        connection.execute("INSERT INTO t VALUES (1, 1, NULL), (2, 2, NULL)")
        yield connection


@pytest.mark.parametrize(
    "statement,error_class",
    [
        ("SELECT 1/0", errors.DivisionByZero),
        ("SELECT 'x'::integer", errors.InvalidTextRepresentation),
        ("SELECT 2147483648::integer", errors.NumericValueOutOfRange),
        ("SELECT date '2020-02-30'", errors.DatetimeFieldOverflow),
        ("INSERT INTO t VALUES (3, -1, NULL)", errors.CheckViolation),
        ("INSERT INTO t VALUES (3, NULL, NULL)", errors.NotNullViolation),
        ("INSERT INTO t VALUES (3, 1, 99)", errors.ForeignKeyViolation),
        ("DO $$ BEGIN RAISE EXCEPTION 'refused'; END $$", errors.RaiseException),
    ],
)
def test_row_refusals_are_classified(admin, statement, error_class):
    error = error_from(admin, statement)
    assert isinstance(error, error_class)
    assert is_row_refusal(error)
    assert not is_transient(error)


def test_invalid_utf8_in_copy_is_a_row_refusal(admin):
    with (
        pytest.raises(psycopg.Error) as raised,
        admin.cursor() as cursor,
        cursor.copy("COPY t (id, v) FROM STDIN") as copy,
    ):
        copy.write(b"3\t1\n4\t\xff\n")
    assert isinstance(raised.value, psycopg.DataError)
    assert is_row_refusal(raised.value) and not is_transient(raised.value)


@pytest.mark.parametrize(
    "statement,error_class",
    [
        ("INSERT INTO t VALUES (1, 1, NULL)", errors.UniqueViolation),
        ("SELECT * FROM no_such_table", errors.UndefinedTable),
        ("SELECT no_such_column FROM t", errors.UndefinedColumn),
        ("SELEC 1", errors.SyntaxError),
    ],
)
def test_neither_refusal_nor_transient(admin, statement, error_class):
    error = error_from(admin, statement)
    assert isinstance(error, error_class)
    assert not is_row_refusal(error)
    assert not is_transient(error)


def test_insufficient_privilege_is_neither(database):
    role = f"ccxw_test_role_{database.name[-12:]}"
    with database.connect() as connection:
        connection.execute("CREATE TABLE t (id integer)")
        connection.execute(f'CREATE ROLE "{role}"')
        try:
            connection.execute(f'SET ROLE "{role}"')
            error = error_from(connection, "INSERT INTO t VALUES (1)")
        finally:
            connection.execute("RESET ROLE")
            connection.execute(f'DROP ROLE "{role}"')
    assert isinstance(error, errors.InsufficientPrivilege)
    assert not is_transient(error) and not is_row_refusal(error)


def test_serialization_failure_is_transient(admin, database):
    with database.connect(autocommit=False) as first, database.connect() as second:
        first.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        assert first.execute("SELECT v FROM t WHERE id = 1").fetchone() == (1,)  # the snapshot is taken
        second.execute("UPDATE t SET v = 10 WHERE id = 1")
        error = error_from(first, "UPDATE t SET v = 20 WHERE id = 1")
        first.rollback()
    assert isinstance(error, errors.SerializationFailure)
    assert is_transient(error) and not is_row_refusal(error)


def test_deadlock_is_transient(admin, database):
    with database.connect(autocommit=False) as first, database.connect(autocommit=False) as second:
        for connection in (first, second):
            connection.execute("SET deadlock_timeout = '10ms'")
        first.execute("UPDATE t SET v = v + 1 WHERE id = 1")
        second.execute("UPDATE t SET v = v + 1 WHERE id = 2")
        outcome = {}

        def second_side():
            try:
                second.execute("UPDATE t SET v = v + 1 WHERE id = 1")
            except psycopg.Error as error:
                outcome["second"] = error

        thread = threading.Thread(target=second_side)
        thread.start()
        # Wait until the second transaction is blocked on the row lock the first one holds.
        with database.connect() as observer:
            pid = second.info.backend_pid
            for _ in range(3000):
                waiting = observer.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
                if waiting and waiting[0] == "Lock":
                    break
                time.sleep(0.01)
        try:
            first.execute("UPDATE t SET v = v + 1 WHERE id = 2")
        except psycopg.Error as error:
            outcome["first"] = error
        first.rollback()
        thread.join(60)
        second.rollback()
    deadlocks = [error for error in outcome.values() if isinstance(error, errors.DeadlockDetected)]
    assert len(deadlocks) == 1, outcome
    assert is_transient(deadlocks[0]) and not is_row_refusal(deadlocks[0])


def test_lock_not_available_is_transient(admin, database):
    with database.connect(autocommit=False) as locker, database.connect() as waiter:
        locker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        waiter.execute("SET lock_timeout = '10ms'")
        error = error_from(waiter, "SELECT * FROM t")
        locker.rollback()
    assert isinstance(error, errors.LockNotAvailable)
    assert is_transient(error) and not is_row_refusal(error)


def test_statement_timeout_is_transient(admin):
    admin.execute("SET statement_timeout = '10ms'")
    error = error_from(admin, "SELECT pg_sleep(60)")
    assert isinstance(error, errors.QueryCanceled) and error.sqlstate == "57014"
    assert is_transient(error) and not is_row_refusal(error)


def test_terminated_connection_is_transient(database):
    with database.connect() as victim, database.connect() as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 30000)", (victim.info.backend_pid,))
        error = error_from(victim, "SELECT 1")
        assert isinstance(error, psycopg.OperationalError)
        assert is_transient(error) and not is_row_refusal(error)
        # The connection is now unusable: what comes next is transient too.
        later = error_from(victim, "SELECT 1")
        assert is_transient(later)


def test_closed_connection_and_refused_connection_are_transient(database):
    connection = database.connect()
    connection.close()
    closed = error_from(connection, "SELECT 1")
    assert is_transient(closed) and not is_row_refusal(closed)
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect("host=127.0.0.1 port=1 user=postgres dbname=postgres connect_timeout=5")
    assert is_transient(raised.value) and not is_row_refusal(raised.value)


def test_database_that_does_not_exist_is_not_a_row_refusal(postgres_server):
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(postgres_server.conninfo("ccxw_no_such_database_at_all"))
    assert not is_row_refusal(raised.value)
