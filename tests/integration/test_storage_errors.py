"""How real PostgreSQL errors are classified for the BatchWriter: row refusals (the row is dead-lettered),
transient errors (the batch is retried), neither (the worker stops)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg import errors

from writer.storage import is_row_refusal, is_transient

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
