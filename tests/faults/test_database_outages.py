"""Issue 9's fault scenarios against the real service (console script: supervisor and worker processes),
the Kafka mock and PostgreSQL, counting exact rows (none lost, none twice) and committed offsets.

A. a partition paused during a database retry, revoked, assigned back (item 1)
B. a database that refuses every row, at low traffic (item 3)
C. a failover: sessions on a read-only former primary (item 4)
D. a half-open database connection: a loopback proxy that stops forwarding (item 5)
E. a payload-tracker outage (item 6)
F. stop time after SIGTERM while retrying and while a write hangs (item 7), exit 5 when retries give up (9)
G. a repeat of a refused key in one batch (item 2)

Short versions run by default; ``-m slow`` runs longer ones. With CCX_RELIABILITY_RESULTS=<file>
each scenario appends its numbers there (README "Reliability").
"""

from __future__ import annotations

import signal
import time

import orjson
import pytest

from faults_helpers import (
    PARTITIONS,
    RowMonitor,
    Service,
    StallingProxy,
    committed,
    consume_topic,
    end_offsets,
    expected_key,
    free_port,
    header,
    produce_numbers,
    record,
    row_count,
    service_env,
    stored_keys,
    terminate_writer_backends,
    wait_until,
)
from test_faults import assert_exact, drain_timeout, group, no_worker_crash, reliability_results, workdir  # noqa: F401
from writer.kafka_mock import produce
from writer.sample_messages import encoded

# A transient outage of writes that leaves connections (and the supervisor's start-up check) working:
# every insert fails with 57P03, "the database system is not accepting connections".
OUTAGE = """
CREATE FUNCTION test_outage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'test outage: not accepting writes' USING ERRCODE = '57P03'; END $$;
CREATE TRIGGER test_outage BEFORE INSERT ON new_reports FOR EACH ROW EXECUTE FUNCTION test_outage();
"""
END_OUTAGE = "DROP TRIGGER test_outage ON new_reports; DROP FUNCTION test_outage();"
REFUSE_EVERYTHING = """
CREATE FUNCTION refuse_everything() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'broken trigger refuses every row'; END $$;
CREATE TRIGGER refuse_everything BEFORE INSERT ON new_reports FOR EACH ROW EXECUTE FUNCTION refuse_everything();
"""
FIX_REFUSE_EVERYTHING = "DROP TRIGGER refuse_everything ON new_reports; DROP FUNCTION refuse_everything();"


def sql(database, statement: str) -> None:
    with database.connect() as connection:
        connection.execute(statement)


def sql_on_server(database, statement: str) -> None:
    """From the maintenance database: this one's sessions may be read-only."""
    import psycopg

    with psycopg.connect(database.server.conninfo(), autocommit=True) as connection:
        connection.execute(statement)


def messages_logged(service: Service, text: str) -> list[dict]:
    return [r for r in service.log_records() if text in r.get("message", "")]


def wait_logged(service: Service, text: str, count: int = 1, timeout: float = 60) -> list[dict]:
    return wait_until(lambda: len(found := messages_logged(service, text)) >= count and found, timeout,
                      message=f"{count} log lines with {text!r}")


class _Keys:
    def __init__(self, keys: set) -> None:
        self.keys = keys


def produce_more(bootstrap: str, topic: str, numbers) -> _Keys:
    """Sample messages ``numbers`` after what the topic holds (partition number % 4); their keys."""
    numbers = list(numbers)
    for partition in range(PARTITIONS):
        mine = [n for n in numbers if n % PARTITIONS == partition]
        produce(bootstrap, topic, [encoded(n) for n in mine], [str(n).encode() for n in mine], partition=partition)
    return _Keys({expected_key(n) for n in numbers})


def second_env(env: dict, **settings) -> dict:
    other = dict(env, CCX_NOTIFICATION_WRITER__METRICS__ADDRESS=f"127.0.0.1:{free_port()}")
    other.update({"CCX_NOTIFICATION_WRITER__" + k.upper(): str(v) for k, v in settings.items()})
    return other


# ---- A. partition paused during a retry, revoked, assigned back (item 1) ------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("messages", [400])
def test_partition_revoked_during_a_retry_is_consumed_when_it_comes_back(
        migrated_database, kafka_bootstrap, topic, group, workdir, messages):
    """Worker A retries through an outage; member B joins (takes partitions), then leaves (they come back)."""
    database = migrated_database
    half = messages // 2
    produced = produce_numbers(kafka_bootstrap, topic, range(half))
    env = service_env(database.env(), kafka_bootstrap, topic, group, PROCESSING__WORKERS=1)
    first = Service(env, workdir=workdir, name="a")
    second = None
    try:
        first.wait_http()
        wait_until(lambda: row_count(database) == half, drain_timeout(half), message="the first half stored")
        sql(database, OUTAGE)
        more = produce_more(kafka_bootstrap, topic, range(half, messages))
        wait_logged(first, "database unavailable, retrying")
        second = Service(second_env(env), workdir=workdir, name="b")
        wait_logged(first, "partitions revoked", timeout=90)
        wait_logged(second, "partitions assigned", timeout=90)
        assert second.stop(60) == 0, second.stderr()[-3000:]
        wait_logged(first, "partitions assigned", count=2, timeout=90)  # the partitions came back
        sql(database, END_OUTAGE)
        recovered = time.monotonic()
        wait_until(lambda: row_count(database) == messages, 120, message="every row stored after the outage")
        wait_until(lambda: committed(kafka_bootstrap, topic, group) == end_offsets(kafka_bootstrap, topic), 60,
                   message="offsets committed to the end")
        drained = time.monotonic()
    finally:
        status = first.stop(60)
        first.close()
        if second is not None:
            second.close()
    assert status == 0, first.stderr()[-3000:]
    outcome = assert_exact(database, produced.keys | more.keys, kafka_bootstrap, topic, group)
    no_worker_crash(first)
    record("A. partition revoked while paused in a DB retry, assigned back", messages=messages, faults=1,
           **outcome, drained_after_s=round(drained - recovered, 1))


# ---- B. the database refuses every row, at low traffic (item 3) ----------------------------------------------------


@pytest.mark.parametrize("before,during", [pytest.param(2, 3, id="ci"),
                                           pytest.param(20, 30, id="full", marks=pytest.mark.slow)])
def test_a_database_refusing_every_row_stops_the_service_at_one_message_per_batch(
        migrated_database, kafka_bootstrap, topic, group, workdir, before, during):
    database = migrated_database
    env = service_env(database.env(), kafka_bootstrap, topic, group, PROCESSING__WORKERS=1,
                      PROCESSING__MAX_RESTARTS=1, BROKER__DEAD_LETTER_TOPIC=topic + ".dead-letters")
    service = Service(env, workdir=workdir, name="refusing")
    numbers = list(range(before + during))
    try:
        service.wait_http()
        for number in numbers[:before]:  # one message at a time: batches of one
            produce(kafka_bootstrap, topic, [encoded(number)], [str(number).encode()], partition=number % PARTITIONS)
            wait_until(lambda number=number: row_count(database) == number + 1, 60, message=f"message {number} stored")
        sql(database, REFUSE_EVERYTHING)
        for number in numbers[before:]:
            produce(kafka_bootstrap, topic, [encoded(number)], [str(number).encode()], partition=number % PARTITIONS)
            time.sleep(0.3)  # low traffic: each message alone in its batch
        status = service.wait(120)
    finally:
        service.close()
    assert status == 5, service.stderr()[-3000:]
    assert messages_logged(service, "refused all")
    assert row_count(database) == before
    # Nothing refused was committed (nor dead-lettered): after the fix, it is all consumed again.
    assert end_offsets(kafka_bootstrap, topic) != committed(kafka_bootstrap, topic, group)
    assert not messages_logged(service, "message rejected")
    sql(database, FIX_REFUSE_EVERYTHING)
    fixed = time.monotonic()
    replay = Service(env, "--replay", workdir=workdir, name="after-fix")
    try:
        assert replay.wait(drain_timeout(len(numbers))) == 0, replay.stderr()[-3000:]
    finally:
        replay.close()
    drained = time.monotonic()
    outcome = assert_exact(database, {expected_key(n) for n in numbers}, kafka_bootstrap, topic, group)
    record("B. DB refuses every row, 1 message per batch", messages=len(numbers), faults=during, **outcome,
           stopped_with=status, drained_after_fix_s=round(drained - fixed, 1))


# ---- C. failover: the old primary is read-only (item 4) --------------------------------------------------------------


@pytest.mark.parametrize("messages,read_only_s", [pytest.param(1000, 3, id="ci"),
                                                  pytest.param(10000, 10, id="full", marks=pytest.mark.slow)])
def test_failover_to_a_read_only_primary_is_retried_not_fatal(
        migrated_database, kafka_bootstrap, topic, group, workdir, messages, read_only_s):
    database = migrated_database
    half = messages // 2
    produced = produce_numbers(kafka_bootstrap, topic, range(half))
    env = service_env(database.env(), kafka_bootstrap, topic, group, PROCESSING__BATCH_SIZE=50)
    monitor = RowMonitor(database)
    service = Service(env, workdir=workdir, name="failover")
    try:
        monitor.wait_rows(half, timeout=drain_timeout(half))
        # Sessions that connect now land on a "former primary": every transaction is read-only.
        sql_on_server(database, f'ALTER DATABASE "{database.name}" SET default_transaction_read_only = on')
        terminate_writer_backends(database)
        more = produce_more(kafka_bootstrap, topic, range(half, messages))
        wait_logged(service, "read-only", timeout=60)
        time.sleep(read_only_s)
        sql_on_server(database, f'ALTER DATABASE "{database.name}" RESET default_transaction_read_only')
        promoted = time.monotonic()
        wait_until(lambda: committed(kafka_bootstrap, topic, group) == end_offsets(kafka_bootstrap, topic),
                   drain_timeout(messages), interval=0.5, message="every offset committed")
        drained = time.monotonic()
    finally:
        monitor.stop()
        status = service.stop(60)
        service.close()
    assert status == 0, service.stderr()[-3000:]
    no_worker_crash(service)
    outcome = assert_exact(database, produced.keys | more.keys, kafka_bootstrap, topic, group)
    retries = messages_logged(service, "database unavailable, retrying")
    assert retries
    record("C. failover: sessions on a read-only former primary (25006)", messages=messages, faults=1, **outcome,
           read_only_s=read_only_s, resumed_after_s=monitor.progress_after(promoted),
           drained_after_s=round(drained - promoted, 1), retries=len(retries))


# ---- D. half-open database connections (item 5) ----------------------------------------------------------------------


@pytest.mark.parametrize("messages,stalled_s", [pytest.param(1000, 8, id="ci"),
                                                pytest.param(10000, 20, id="full", marks=pytest.mark.slow)])
def test_half_open_database_connections_are_cut_and_replaced(
        migrated_database, kafka_bootstrap, topic, group, workdir, messages, stalled_s):
    database = migrated_database
    proxy = StallingProxy(database.server.host, database.server.port)
    produced = produce_numbers(kafka_bootstrap, topic, range(messages))
    env = service_env(database.env(), kafka_bootstrap, topic, group, PROCESSING__BATCH_SIZE=50,
                      STORAGE__PG_HOST="127.0.0.1", STORAGE__PG_PORT=proxy.port, STORAGE__WRITE_TIMEOUT_S=2,
                      STORAGE__CONNECT_TIMEOUT=2)
    monitor = RowMonitor(database)
    service = Service(env, "--replay", workdir=workdir, name="half-open")
    try:
        monitor.wait_rows(messages // 5, timeout=drain_timeout(messages))
        proxy.stall()  # every connection open now stays silent for ever, new ones too until heal()
        stalled = time.monotonic()
        time.sleep(stalled_s)
        proxy.heal()
        healed = time.monotonic()
        status = service.wait(drain_timeout(messages))
        drained = time.monotonic()
    finally:
        monitor.stop()
        service.close()
        proxy.close()
    assert status == 0, service.stderr()[-3000:]
    no_worker_crash(service)
    outcome = assert_exact(database, produced.keys, kafka_bootstrap, topic, group)
    timed_out = messages_logged(service, "database unavailable, retrying") + messages_logged(service, "timed out")
    assert timed_out, "the workers should have noticed the silent connections"
    record("D. half-open DB connections (proxy stops forwarding)", messages=messages, faults=1, **outcome,
           stalled_s=round(healed - stalled, 1), resumed_after_s=monitor.progress_after(healed),
           drained_after_s=round(drained - healed, 1))


# ---- E. payload-tracker outage (item 6) ------------------------------------------------------------------------------


@pytest.mark.parametrize("messages", [pytest.param(600, id="ci"),
                                      pytest.param(6000, id="full", marks=pytest.mark.slow)])
def test_a_tracker_outage_never_holds_up_storage(migrated_database, kafka_bootstrap, topic, group, workdir, messages):
    """The tracker topic is missing and not created: no status can be delivered. Batches of 20 rows: with a
    5 s flush per batch (the old shared producer) the drain would take over 75 s for 600 messages."""
    database = migrated_database
    numbers = list(range(messages))
    for partition in range(PARTITIONS):
        mine = [n for n in numbers if n % PARTITIONS == partition]
        produce(kafka_bootstrap, topic, [encoded(n, request_id=f"request-{n}") for n in mine],
                [str(n).encode() for n in mine], partition=partition)
    env = service_env(database.env(), kafka_bootstrap, topic, group, PROCESSING__BATCH_SIZE=20,
                      TRACKER__TOPIC=topic + ".missing-status", TRACKER__AUTO_CREATE_TOPIC="false",
                      BROKER__DEAD_LETTER_TOPIC=topic + ".dead-letters")
    service = Service(env, workdir=workdir, name="tracker-outage")
    started = time.monotonic()
    try:
        service.wait_http()
        wait_until(lambda: committed(kafka_bootstrap, topic, group) == end_offsets(kafka_bootstrap, topic), 60,
                   interval=0.5, message="every offset committed while the tracker is out")
        drained = time.monotonic()
        dropped_name = "ccx_notification_writer_tracker_statuses_dropped_total"
        wait_until(lambda: service.metrics().get(dropped_name, 0) == 3 * messages, 60, interval=1,
                   message="every status counted as dropped")
    finally:
        status = service.stop(60)
        service.close()
    assert status == 0, service.stderr()[-3000:]
    no_worker_crash(service)
    outcome = assert_exact(database, {expected_key(n) for n in numbers}, kafka_bootstrap, topic, group)
    record("E. payload-tracker outage (status topic missing)", messages=messages, faults=1, **outcome,
           drained_s=round(drained - started, 1), statuses_dropped=3 * messages)


# ---- F. stop time and exit status (items 7, 9) ----------------------------------------------------------------------


def stop_bound(env: dict) -> float:
    """The documented bound: a worker exits within shutdown_timeout_s of SIGTERM; plus process exits."""
    return float(env["CCX_NOTIFICATION_WRITER__PROCESSING__SHUTDOWN_TIMEOUT_S"]) + 3


def test_sigterm_during_a_database_retry_stops_at_once(migrated_database, kafka_bootstrap, topic, group, workdir):
    database = migrated_database
    produce_numbers(kafka_bootstrap, topic, range(40))
    sql(database, OUTAGE)
    env = service_env(database.env(), kafka_bootstrap, topic, group, PROCESSING__WORKERS=1)
    service = Service(env, workdir=workdir, name="sigterm-retrying")
    try:
        # Backoff 0.25 s doubling to 10 s: after the 4th retry the worker sleeps about 4 s.
        wait_logged(service, "database unavailable, retrying", count=4, timeout=60)
        service.signal(signal.SIGTERM)
        asked = time.monotonic()
        status = service.wait(60)
        stopped = time.monotonic() - asked
    finally:
        service.close()
    assert status == 0, service.stderr()[-3000:]
    assert not messages_logged(service, "did not stop in time")
    records = service.log_records()
    stop_index = next(i for i, r in enumerate(records)
                      if "stopping while the database is unavailable" in r.get("message", ""))
    retries_before = len([r for r in records[:stop_index] if "retrying the batch" in r.get("message", "")])
    assert retries_before == len(messages_logged(service, "retrying the batch")), "no attempt after SIGTERM"
    assert stopped <= stop_bound(env), f"stopped after {stopped:.1f} s"
    assert row_count(database) == 0 and committed(kafka_bootstrap, topic, group) == {p: 0 for p in range(PARTITIONS)}


@pytest.mark.slow  # by default, tests/test_storage_faults.py::test_sigterm_style_abort_cuts_a_hung_write_short
def test_sigterm_during_a_hung_write_stops_within_the_bound(migrated_database, kafka_bootstrap, topic, group, workdir):
    database = migrated_database
    proxy = StallingProxy(database.server.host, database.server.port)
    produced = produce_numbers(kafka_bootstrap, topic, range(400))
    env = service_env(database.env(), kafka_bootstrap, topic, group, PROCESSING__WORKERS=1,
                      PROCESSING__BATCH_SIZE=20, STORAGE__PG_HOST="127.0.0.1", STORAGE__PG_PORT=proxy.port,
                      STORAGE__WRITE_TIMEOUT_S=600)  # the write timeout does not help: only the stop can end it
    monitor = RowMonitor(database)
    service = Service(env, workdir=workdir, name="sigterm-hung")
    try:
        monitor.wait_rows(20, timeout=60)
        proxy.stall()
        time.sleep(1)
        service.signal(signal.SIGTERM)
        asked = time.monotonic()
        status = service.wait(60)
        stopped = time.monotonic() - asked
    finally:
        monitor.stop()
        service.close()
        proxy.close()
    assert status == 0, service.stderr()[-3000:]
    assert not messages_logged(service, "did not stop in time")
    assert stopped <= stop_bound(env), f"stopped after {stopped:.1f} s"
    # What is committed is stored (nothing committed ahead of the database).
    stored = stored_keys(database)
    assert produced.keys_below(committed(kafka_bootstrap, topic, group)) <= set(stored)


def test_database_retries_that_give_up_exit_5(migrated_database, kafka_bootstrap, topic, group, workdir):
    database = migrated_database
    produce_numbers(kafka_bootstrap, topic, range(20))
    sql(database, OUTAGE)
    env = service_env(database.env(), kafka_bootstrap, topic, group, PROCESSING__WORKERS=1,
                      PROCESSING__MAX_RESTARTS=0, STORAGE__RETRY_MAX_SECONDS=2)
    service = Service(env, workdir=workdir, name="give-up")
    try:
        status = service.wait(90)
    finally:
        service.close()
    assert status == 5, service.stderr()[-3000:]
    assert messages_logged(service, "still unavailable after retrying")
    assert [r for r in messages_logged(service, "died with status") if "status 5" in r["message"]]
    assert row_count(database) == 0 and committed(kafka_bootstrap, topic, group) == {p: 0 for p in range(PARTITIONS)}


# ---- G. a repeat of a refused key (item 2) ---------------------------------------------------------------------------


# By default, tests/test_worker_reliability.py::test_a_repeat_of_a_refused_key_is_written_in_a_second_round runs.
@pytest.mark.slow
def test_a_later_message_with_the_key_of_a_refused_one_is_stored(migrated_database, kafka_bootstrap, topic, group,
                                                                  workdir):
    """Same primary key twice in one batch: the first refused by a trigger (its content), the second fine."""
    from writer.sample_messages import message

    database = migrated_database
    sql(database, "CREATE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                  " IF NEW.report LIKE '%refuse-me%' THEN RAISE EXCEPTION 'marked report refused'; END IF;"
                  " RETURN NEW; END $$;"
                  "CREATE TRIGGER refuse_marked BEFORE INSERT ON new_reports"
                  " FOR EACH ROW EXECUTE FUNCTION refuse_marked()")
    bad = message(1)
    bad["Report"]["reports"] = [{"rule_id": "refuse-me"}]
    values = [encoded(0), orjson.dumps(bad), encoded(1), encoded(2)]  # offsets 0..3 in one partition
    produce(kafka_bootstrap, topic, values, [b"k"] * len(values), partition=0)
    dead_letters = topic + ".dead-letters"
    env = service_env(database.env(), kafka_bootstrap, topic, group, PROCESSING__WORKERS=1,
                      PROCESSING__BATCH_SIZE=1000, PROCESSING__BATCH_TIMEOUT_MS=1500,
                      BROKER__DEAD_LETTER_TOPIC=dead_letters)
    service = Service(env, "--replay", workdir=workdir, name="repeat")
    try:
        assert service.wait(120) == 0, service.stderr()[-3000:]
    finally:
        service.close()
    with database.connect() as connection:
        rows = connection.execute("SELECT cluster, kafka_offset FROM new_reports ORDER BY kafka_offset").fetchall()
    assert [offset for _, offset in rows] == [0, 2, 3]  # message 1 from offset 2, not lost as a "duplicate"
    letters = consume_topic(kafka_bootstrap, dead_letters)
    assert [int(header(m, "ccx-source-offset")) for m in letters] == [1]
    assert "duplicates 0" in service.stdout()
