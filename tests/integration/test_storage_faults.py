"""BatchWriter under faults that need more than a refusing row (issue 9): a database that refuses
everything, a read-only primary after a failover, a statement that never ends, a connection that went
silent, a client encoding other than UTF-8. Real PostgreSQL; a loopback proxy for the silent connection."""

from __future__ import annotations

import threading

import pytest

from tests.harness.database import APPLICATION_NAME, row_count
from tests.harness.proxy import StallingProxy
from tests.harness.storage import BAD_ORG, REFUSE_EVERYTHING, REFUSE_ORG_666, make_rows, with_org
from writer import config as config_module
from writer.database import conninfo
from writer.message import Row
from writer.storage import BatchWriter, FatalDatabaseError, TransientDatabaseError, WriteTimedOut

# --- a fault that refuses everything stops the writer at any batch size (item 3) -----------------------------


@pytest.mark.parametrize("batch", [1, 3, 10])
def test_a_database_refusing_everything_is_fatal_at_any_batch_size(migrated_database, writer, batch):
    assert writer.write(make_rows([1000])).stored == 1  # the canary: a row it accepted before
    with migrated_database.connect() as connection:
        connection.execute(REFUSE_EVERYTHING)
    with pytest.raises(FatalDatabaseError, match="refused all"):
        writer.write(make_rows(range(batch)))
    assert row_count(migrated_database) == 1


def test_an_after_trigger_refusing_everything_is_fatal_too(migrated_database, writer):
    assert writer.write(make_rows([1000])).stored == 1
    with migrated_database.connect() as connection:
        connection.execute(REFUSE_EVERYTHING.replace("BEFORE INSERT", "AFTER INSERT"))
    with pytest.raises(FatalDatabaseError, match="refused all"):
        writer.write(make_rows([1]))
    assert row_count(migrated_database) == 1


def test_a_fresh_writer_uses_a_synthetic_canary(migrated_database, writer):
    with migrated_database.connect() as connection:
        connection.execute(REFUSE_EVERYTHING)
    with pytest.raises(FatalDatabaseError, match="refused all"):
        writer.write(make_rows([3]))
    assert row_count(migrated_database) == 0


@pytest.mark.parametrize("fresh", [True, False])
def test_a_lone_bad_row_is_still_isolated_in_a_batch_of_one(migrated_database, writer, fresh):
    with migrated_database.connect() as connection:
        connection.execute(REFUSE_ORG_666)
    if not fresh:
        assert writer.write(make_rows([1000])).stored == 1
    bad = with_org(make_rows([5])[0], BAD_ORG)
    result = writer.write([bad])
    assert [row for row, _ in result.refused] == [bad]
    assert "refused by the test trigger" in result.refused[0][1]
    assert writer.write(make_rows([6])).stored == 1  # and the stream goes on
    assert row_count(migrated_database) == (1 if fresh else 2)


def test_the_canary_is_never_stored(migrated_database, writer):
    with migrated_database.connect() as connection:
        connection.execute(REFUSE_ORG_666)
    for number in range(3):
        writer.write([with_org(make_rows([number])[0], BAD_ORG)])
    assert row_count(migrated_database) == 0


@pytest.mark.parametrize("fresh", [True, False])
def test_a_column_type_the_binary_copy_does_not_fit_is_fatal_not_every_row_refused(migrated_database, writer, fresh):
    # An INSERT with text parameters fits kafka_offset narrowed to integer; the COPY's 8-byte value does not.
    if not fresh:
        assert writer.write(make_rows([1000])).stored == 1
    with migrated_database.connect() as connection:
        connection.execute("ALTER TABLE new_reports ALTER COLUMN kafka_offset TYPE integer")
    with pytest.raises(FatalDatabaseError, match="refused all"):
        writer.write(make_rows(range(3)))
    assert row_count(migrated_database) == (0 if fresh else 1)


def test_a_check_constraint_refusing_everything_is_fatal(migrated_database, writer):
    with migrated_database.connect() as connection:
        connection.execute("ALTER TABLE new_reports ADD CONSTRAINT test_only_broken CHECK (org_id < 0)")
    with pytest.raises(FatalDatabaseError):
        writer.write(make_rows([1]))


# --- failover: read-only transaction (item 4) -----------------------------------------------------------------


def test_read_only_session_is_transient_and_the_retry_uses_a_fresh_connection(migrated_database, writer):
    assert writer.write(make_rows([0])).stored == 1
    # What a demoted primary (hot standby) does to every session that stays connected to it.
    writer._connection.execute("SET default_transaction_read_only = on")
    writer._connection.commit()
    with pytest.raises(TransientDatabaseError, match="read-only"):
        writer.write(make_rows([1, 2]))
    assert writer.write(make_rows([1, 2])).stored == 2
    assert row_count(migrated_database) == 3


# --- writes that never end (item 5) -----------------------------------------------------------------------------


def test_a_statement_blocked_for_longer_than_the_write_timeout_times_out(migrated_database, writer_conninfo):
    writer = BatchWriter(writer_conninfo, write_timeout=1)
    try:
        assert writer.write(make_rows([0])).stored == 1
        with migrated_database.connect(autocommit=False) as locker:
            locker.execute("LOCK TABLE new_reports IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(WriteTimedOut):
                writer.write(make_rows(range(1, 6)))
            locker.rollback()
        assert writer.write(make_rows(range(1, 6))).stored == 5
    finally:
        writer.close()
    assert row_count(migrated_database) == 6


def test_a_silent_connection_is_cut_by_the_watchdog(migrated_database):
    server = migrated_database.server
    proxy = StallingProxy(server.host, server.port)
    writer = BatchWriter(f"host=127.0.0.1 port={proxy.port} user={server.user} dbname={migrated_database.name} "
                         f"application_name={APPLICATION_NAME} connect_timeout=2", write_timeout=1)
    try:
        assert writer.write(make_rows([0])).stored == 1
        proxy.stall()
        outcome = []
        thread = threading.Thread(target=lambda: outcome.append(_write_or_error(writer, make_rows([1, 2]))))
        thread.start()
        thread.join(60)  # the test's own guard; the watchdog acts after write_timeout + 5 s
        assert not thread.is_alive(), "the write hung on the silent connection"
        assert isinstance(outcome[0], WriteTimedOut), outcome
        with pytest.raises(TransientDatabaseError):  # new connections are silent too: connect_timeout
            writer.write(make_rows([1, 2]))
        proxy.heal()
        assert writer.write(make_rows([1, 2])).stored == 2
    finally:
        writer.close()
        proxy.close()
    assert row_count(migrated_database) == 3


def test_sigterm_style_abort_cuts_a_hung_write_short(migrated_database):
    server = migrated_database.server
    proxy = StallingProxy(server.host, server.port)
    writer = BatchWriter(f"host=127.0.0.1 port={proxy.port} user={server.user} dbname={migrated_database.name}",
                         write_timeout=0)  # no timeout at all: only the abort can end the write
    try:
        assert writer.write(make_rows([0])).stored == 1
        proxy.stall()
        outcome = []
        thread = threading.Thread(target=lambda: outcome.append(_write_or_error(writer, make_rows([1]))))
        thread.start()
        thread.join(1)
        assert thread.is_alive()  # hung, as it would be for ever
        import time

        writer.watchdog.abort_by(time.monotonic())
        thread.join(30)
        assert not thread.is_alive() and isinstance(outcome[0], TransientDatabaseError), outcome
    finally:
        writer.close()
        proxy.close()


def _write_or_error(writer, rows):
    try:
        return writer.write(rows)
    except Exception as error:  # noqa: BLE001 - returned to the test thread
        return error


# --- client encoding (item 17) --------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["PGCLIENTENCODING", "pg_params"])
def test_reports_are_stored_as_utf8_whatever_the_client_encoding(migrated_database, monkeypatch, where):
    settings = {"PG_HOST": migrated_database.server.host, "PG_PORT": str(migrated_database.server.port),
                "PG_USERNAME": migrated_database.server.user, "PG_DB_NAME": migrated_database.name}
    if where == "pg_params":
        settings["PG_PARAMS"] = "client_encoding=LATIN1"
    else:
        monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    config = config_module.load({f"CCX_NOTIFICATION_WRITER__STORAGE__{k}": v for k, v in settings.items()})
    row = make_rows([1])[0]
    report = '{"reports":[{"details":"caf\u00e9"}]}'.encode()  # LATIN1 can hold it: re-encoded silently
    row = Row(row.org_id, row.account_number, row.cluster, report, row.updated_at, row.kafka_offset)
    writer = BatchWriter(conninfo(config))
    try:
        assert writer.write([row]).stored == 1
    finally:
        writer.close()
    monkeypatch.delenv("PGCLIENTENCODING", raising=False)
    with migrated_database.connect() as connection:
        stored = connection.execute("SELECT report FROM new_reports").fetchone()[0]
        as_bytes = connection.execute("SELECT convert_to(report, 'UTF8') FROM new_reports").fetchone()[0]
    assert stored == report.decode()
    assert as_bytes == report
