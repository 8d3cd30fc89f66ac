"""BatchWriter findings of the issue-9 review (items 3, 5, 6, 9): the canary when part of a batch was a
duplicate, timeouts in force from the connection's first statement, a connection broken by the idle
timeout, a canary whose key is taken. Real PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.harness.database import row_count
from tests.harness.storage import REFUSE_EVERYTHING, make_rows
from writer.dry_run import DryRunWriter
from writer.storage import (
    CANARY_CLUSTER,
    DEFAULT_CONNECT_TIMEOUT_S,
    WATCHDOG_MARGIN_S,
    BatchWriter,
    FatalDatabaseError,
    TransientDatabaseError,
    WriteTimedOut,
    session_conninfo,
)


def test_a_batch_with_a_duplicate_and_every_new_row_refused_is_fatal(migrated_database, writer):
    stored = make_rows([1000])
    assert writer.write(stored).stored == 1
    with migrated_database.connect() as connection:
        # AFTER: the duplicate is skipped by ON CONFLICT DO NOTHING before any trigger runs.
        connection.execute(REFUSE_EVERYTHING.replace("BEFORE INSERT", "AFTER INSERT"))
    with pytest.raises(FatalDatabaseError, match="refused all"):
        writer.write(stored + make_rows([1, 2]))
    assert row_count(migrated_database) == 1


# --- item 5: the timeouts bind from the connection's first statement; connect is bounded -------------------------


def test_a_new_connection_waiting_behind_a_lock_times_out(migrated_database, writer_conninfo):
    writer = BatchWriter(writer_conninfo, write_timeout=1)
    outcome: list[BaseException] = []

    def write() -> None:
        try:
            writer.write(make_rows([1]))
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome.append(error)

    with migrated_database.connect() as holder:
        holder.execute("BEGIN; LOCK TABLE new_reports IN ACCESS EXCLUSIVE MODE")
        writing = threading.Thread(target=write, daemon=True)
        writing.start()
        writing.join(30)  # without the timeouts the writer's first statement waits for the lock for ever
        stuck = writing.is_alive()
        holder.execute("ROLLBACK")
    writing.join(30)
    writer.close()
    assert not stuck, "the writer's first statement waited for the lock without a bound"
    assert len(outcome) == 1 and isinstance(outcome[0], WriteTimedOut), outcome
    assert row_count(migrated_database) == 0


@pytest.mark.parametrize("make", [lambda c: BatchWriter(c, write_timeout=2), lambda c: DryRunWriter(c, "", 2)],
                         ids=["batch", "dry-run"])
def test_options_given_in_pg_params_are_kept_with_the_timeouts(writer_conninfo, make):
    writer = make(f"{writer_conninfo} options='-c work_mem=1234kB'")
    try:
        connection = writer._connect()
        shown = {name: connection.execute(f"SHOW {name}").fetchone()[0]
                 for name in ("work_mem", "statement_timeout", "idle_in_transaction_session_timeout")}
        connection.rollback()
    finally:
        writer.close()
    assert shown == {"work_mem": "1234kB", "statement_timeout": "2s", "idle_in_transaction_session_timeout": "4s"}


def test_the_dry_run_session_stays_read_only(writer_conninfo):
    writer = DryRunWriter(writer_conninfo, "", 2)
    try:
        [(read_only,)] = writer._connect().execute("SHOW default_transaction_read_only").fetchall()
    finally:
        writer.close()
    assert read_only == "on"


@pytest.mark.parametrize(("given", "expected"), [("0", str(DEFAULT_CONNECT_TIMEOUT_S)), ("7", "7"),
                                                 (None, str(DEFAULT_CONNECT_TIMEOUT_S))])
def test_connecting_is_always_bounded(given, expected):
    conninfo = "host=db dbname=x" + (f" connect_timeout={given}" if given is not None else "")
    assert conninfo_to_dict(session_conninfo(conninfo, {}))["connect_timeout"] == expected


# --- item 6: an error that leaves the connection broken is transient -------------------------------------------------


def test_a_session_ended_by_the_idle_timeout_is_retried(migrated_database, writer_conninfo):
    writer = BatchWriter(writer_conninfo, write_timeout=0.5)  # idle_in_transaction_session_timeout: 1 s
    try:
        connection = writer._connect()
        connection.execute("SELECT 1")  # opens a transaction and leaves it idle: the server ends the session
        time.sleep(2)
        with pytest.raises(TransientDatabaseError):
            writer.write(make_rows([1]))
        assert writer.write(make_rows([1])).stored == 1  # on a fresh connection
    finally:
        writer.close()
    assert row_count(migrated_database) == 1


# --- item 8: the watchdog is re-armed for every statement ------------------------------------------------------------


def test_the_watchdog_is_armed_for_each_statement_of_a_staged_write(writer_conninfo, monkeypatch):
    writer = BatchWriter(writer_conninfo, write_timeout=5)
    try:
        rows = make_rows(range(3))
        assert writer.write(rows[:1]).stored == 1
        armed: list[float] = []
        real_arm = writer.watchdog.arm
        monkeypatch.setattr(writer.watchdog, "arm", lambda fd, seconds: (armed.append(seconds), real_arm(fd, seconds)))
        result = writer.write(rows)  # a duplicate: the COPY fails, the staging path runs
        assert (result.stored, result.duplicates) == (2, 1)
    finally:
        writer.close()
    # BEGIN, direct COPY, staging COPY, MERGE, TRUNCATE, COMMIT: each with the whole bound
    assert armed == [5 + WATCHDOG_MARGIN_S] * 6


# --- item 9: a canary whose key is taken tries another moment ------------------------------------------------------


def test_a_canary_colliding_with_a_stored_row_still_finds_a_database_refusing_everything(migrated_database, writer):
    nil_cluster = dataclasses.replace(make_rows([1000])[0], cluster=CANARY_CLUSTER)  # a report under the nil id
    assert writer.write([nil_cluster]).stored == 1  # now also the canary: its key is taken
    with migrated_database.connect() as connection:
        connection.execute(REFUSE_EVERYTHING.replace("BEFORE INSERT", "AFTER INSERT"))
    with pytest.raises(FatalDatabaseError, match="refused all"):
        writer.write(make_rows([1, 2]))
    assert row_count(migrated_database) == 1
