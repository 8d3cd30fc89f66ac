"""Liveness (/health) and readiness (/ready): every state, from the pure decision up to the running service.

States: all well; stale poll (a hung or SIGSTOPped worker); dead worker; stop
requested; broker unreachable; database writes retrying; database down;
credentials rejected (retried, ERROR once a minute, counted, /ready 503).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import time
import uuid

import psutil
import psycopg
import pytest

from conftest import create_database, drop_database
from faults_helpers import Service, free_port, service_env, wait_until
from writer import config as config_module
from writer import database_probe
from writer.database_probe import (
    CREDENTIALS_REJECTED,
    DATABASE_MISSING,
    NOT_WRITABLE,
    OK,
    UNREACHABLE,
    DatabaseProbe,
    classify_connect_error,
    probe_once,
)
from writer.health import DatabaseView, Limits, WorkerView, limits, liveness, readiness

NOW = 1_000_000.0
STALE = 10.0
BOUNDS = Limits(stale_after=STALE, kafka_wait=120.0, database_wait=300.0, restart_grace=10.0)
DB_OK = DatabaseView("ok", "", NOW - 1)


def worker(slot=0, **changes) -> WorkerView:
    values = dict(slot=slot, pid=100 + slot, started=NOW - 100, last_poll=NOW - 1, broker_up=True,
                  database_ok=True, assigned=2)
    values.update(changes)
    return WorkerView(**values)


def decide(workers, database=DB_OK, loop_beat=NOW - 0.2, stop=False):
    live, live_body = liveness(workers, loop_beat, NOW, BOUNDS)
    ready, ready_body = readiness(workers, database, loop_beat, stop, NOW, BOUNDS)
    return live, ready, ready_body["problems"]


# ---- the decision, state by state --------------------------------------------------------------------


def test_all_well_is_live_and_ready():
    assert decide([worker(0), worker(1)]) == (True, True, [])


def test_stale_poll_fails_both():
    assert decide([worker(0), worker(1, last_poll=NOW - 10.5)]) == (False, False, ["worker 1: no poll for 10.5 s"])


def test_a_worker_just_started_counts_its_start_as_a_poll():
    assert decide([worker(0, started=NOW - 3, last_poll=0.0)])[:2] == (True, True)
    assert decide([worker(0, started=NOW - 11, last_poll=0.0)])[:2] == (False, False)


def test_waiting_for_the_broker_in_a_commit_is_live_but_not_ready():
    waiting = worker(0, last_poll=NOW - 50, kafka_wait_since=NOW - 50)
    assert decide([waiting]) == (True, False, ["worker 0: waiting for Kafka for 50.0 s"])
    stuck = worker(0, last_poll=NOW - 121, kafka_wait_since=NOW - 121)
    assert decide([stuck])[:2] == (False, False)


def test_dead_worker_fails_both():
    assert decide([worker(0), worker(1, pid=None)]) == (False, False, ["worker 1: not running"])


def test_stop_requested_is_live_but_not_ready():
    # A slow graceful stop must not earn a SIGKILL from the liveness probe.
    assert decide([worker(0)], stop=True) == (True, False, ["stop requested"])


def test_a_slow_database_call_is_live_but_not_ready_within_its_bound():
    # A lock wait, a COMMIT held by a synchronous standby: a restart would only repeat the batch.
    waiting = worker(0, started=NOW - 400, last_poll=NOW - 250, database_wait_since=NOW - 250)
    assert decide([waiting]) == (True, False, ["worker 0: waiting for the database for 250.0 s"])
    stuck = worker(0, started=NOW - 400, last_poll=NOW - 301, database_wait_since=NOW - 301)
    assert decide([stuck]) == (False, False, ["worker 0: no poll for 301.0 s"])


def test_a_short_database_call_leaves_the_worker_ready():
    assert decide([worker(0, database_wait_since=NOW - 0.5)]) == (True, True, [])


def test_a_worker_waiting_for_its_scheduled_restart_is_live_until_its_grace_ends():
    assert decide([worker(0, pid=None, restart_at=NOW + 20)]) == (True, False, ["worker 0: restarting"])
    assert decide([worker(0, pid=None, restart_at=NOW - 9)])[:2] == (True, False)
    assert decide([worker(0, pid=None, restart_at=NOW - 11)]) == (False, False, ["worker 0: not running"])


def test_a_silent_database_probe_stops_readiness():
    # The last result says ok, but the probe thread died or hangs: 46 s old, stale after 45 s.
    silent = DatabaseView("ok", "", NOW - 46, stale_after=45.0)
    assert decide([worker(0)], database=silent) == (True, False, ["database: probe silent for 46.0 s"])
    assert decide([worker(0)], database=DatabaseView("ok", "", NOW - 44, stale_after=45.0)) == (True, True, [])


def _config(**storage):
    env = {f"CCX_NOTIFICATION_WRITER__STORAGE__{k.upper()}": str(v) for k, v in storage.items()}
    return config_module.load(env)


def test_limits_follow_the_configured_timeouts():
    config = _config(connect_timeout=7)
    config = dataclasses.replace(config, broker=dataclasses.replace(config.broker, session_timeout_ms=45000),
                                 processing=dataclasses.replace(config.processing, batch_timeout_ms=5000))
    bounds = limits(config)
    # session 45 s + librdkafka's socket timeout 60 s + 30 s margin
    assert bounds.kafka_wait == 135.0
    # connect 7 s + the 300 s allowance for a write without a statement timeout
    assert bounds.database_wait == 307.0
    assert bounds.stale_after == 15.0
    # A statement timeout (when the configuration has one) bounds 4 round trips, each plus 5 s.
    config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, write_timeout_s=100))
    assert limits(config).database_wait == 7 + 4 * 105
    # connect_timeout 0 is "no limit" to libpq: the allowance stands in for it.
    config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, connect_timeout=0))
    assert limits(config).database_wait == 300 + 420


def test_supervisor_loop_not_turning_fails_both():
    assert decide([worker(0)], loop_beat=NOW - 12) == (False, False, ["supervisor loop not turning for 12.0 s"])


def test_broker_unreachable_is_live_but_not_ready():
    assert decide([worker(0, broker_up=False)]) == (True, False, ["worker 0: no Kafka broker reachable"])


def test_database_retrying_is_live_but_not_ready():
    assert decide([worker(0, database_ok=False)]) == (True, False, ["worker 0: database writes failing, retrying"])


@pytest.mark.parametrize("state", [UNREACHABLE, CREDENTIALS_REJECTED, NOT_WRITABLE, "not checked yet"])
def test_database_probe_failing_is_live_but_not_ready(state):
    assert decide([worker(0)], database=DatabaseView(state, "why", NOW - 2)) == (
        True, False, [f"database: {state} (why)"])


# ---- classifying connection errors (real PostgreSQL) -------------------------------------------------


def connect_error(conninfo: str) -> psycopg.Error:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(conninfo, connect_timeout=5).close()
    assert caught.value.sqlstate is None  # why the text must be read: psycopg gives no SQLSTATE here
    return caught.value


@pytest.fixture
def role(postgres_server, migrated_database):
    """A login role of this test's own that may write new_reports; dropped afterwards."""
    name = f"ccxw_role_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as connection:
        connection.execute(f'CREATE ROLE "{name}" LOGIN')
    with migrated_database.connect() as connection:
        connection.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{name}"')
    yield name
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
        with migrated_database.connect() as db:
            db.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{name}"')
        # A terminated backend drops its temporary tables (owned by the role) a moment later.
        for attempt in range(50):
            try:
                connection.execute(f'DROP ROLE IF EXISTS "{name}"')
                break
            except psycopg.errors.DependentObjectsStillExist:
                if attempt == 49:
                    raise
                time.sleep(0.2)


def test_connection_errors_are_classified(postgres_server, migrated_database, role):
    server = postgres_server
    base = f"host={server.host} port={server.port}"
    assert classify_connect_error(connect_error(f"{base} user=nosuch_{uuid.uuid4().hex[:6]} dbname=postgres")) \
        == CREDENTIALS_REJECTED
    with psycopg.connect(server.conninfo(), autocommit=True) as connection:
        connection.execute(f'ALTER ROLE "{role}" NOLOGIN')
    assert classify_connect_error(connect_error(f"{base} user={role} dbname={migrated_database.name}")) \
        == CREDENTIALS_REJECTED
    assert classify_connect_error(connect_error(f"{base} user={server.user} dbname=nosuch_{uuid.uuid4().hex[:6]}")) \
        == DATABASE_MISSING
    with psycopg.connect(server.conninfo(), autocommit=True) as connection:
        connection.execute(f'ALTER DATABASE "{migrated_database.name}" ALLOW_CONNECTIONS false')
    try:
        # "database ... is not currently accepting connections": the server answered and refused.
        assert classify_connect_error(connect_error(migrated_database.conninfo)) == database_probe.REFUSED
    finally:
        with psycopg.connect(server.conninfo(), autocommit=True) as connection:
            connection.execute(f'ALTER DATABASE "{migrated_database.name}" ALLOW_CONNECTIONS true')
    assert classify_connect_error(connect_error(f"host=127.0.0.1 port={free_port()} user=x dbname=x")) == UNREACHABLE


def test_probe_sees_writable_read_only_and_missing_table(postgres_server, migrated_database):
    assert probe_once(migrated_database.conninfo) == (OK, "")
    empty = create_database(postgres_server)
    try:
        state, detail = probe_once(empty.conninfo)
    finally:
        drop_database(empty)
    assert (state, "new_reports" in detail) == (NOT_WRITABLE, True)
    with migrated_database.connect() as connection:
        connection.execute(f'ALTER DATABASE "{migrated_database.name}" SET default_transaction_read_only = on')
    assert probe_once(migrated_database.conninfo)[0] == NOT_WRITABLE


def test_rejected_credentials_are_counted_every_probe_and_logged_once_a_minute(
        postgres_server, migrated_database, role, caplog):
    rejected = []
    conninfo = f"host={postgres_server.host} port={postgres_server.port} user={role} dbname={migrated_database.name}"
    probe = DatabaseProbe(conninfo, "the test database", lambda: rejected.append(1))
    probe.check()
    assert probe.view().state == OK
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as connection:
        connection.execute(f'ALTER ROLE "{role}" NOLOGIN')
    with caplog.at_level(logging.INFO, logger="writer.supervisor"):
        for _ in range(3):
            probe.check()
        assert probe.view().state == CREDENTIALS_REJECTED
        assert len(rejected) == 3
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "rejects our credentials" in errors[0].getMessage()
        # A minute later (the clock of the rate limit moved back instead of waiting): logged again.
        probe._last_error_log -= database_probe.ERROR_LOG_INTERVAL_S
        probe.check()
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2
        with psycopg.connect(postgres_server.conninfo(), autocommit=True) as connection:
            connection.execute(f'ALTER ROLE "{role}" LOGIN')
        probe.check()
    assert probe.view().state == OK and len(rejected) == 4
    assert any(r.getMessage() == "database ready again" for r in caplog.records)


# ---- the supervisor's side: snapshots, never Process objects from the HTTP thread ----------------------


def _exit_at_once() -> None:
    os._exit(7)


@pytest.fixture
def supervisor(tmp_path, migrated_database):
    from writer.supervisor import Supervisor

    env = {f"CCX_NOTIFICATION_WRITER__{k}": v for k, v in {
        "PROCESSING__WORKERS": "1", "METRICS__NAMESPACE": "t", "PROCESSING__MAX_RESTARTS": "100",
    }.items()}
    env.update(migrated_database.env())
    return Supervisor(config_module.load(env), str(tmp_path))


def test_health_never_reaps_a_worker(supervisor):
    """/health runs in the HTTP thread; reaping a child there races with the main loop's reap and stop."""
    process = multiprocessing.get_context("spawn").Process(target=_exit_at_once)
    process.start()
    supervisor.slots[0].process = process
    supervisor.slots[0].started = time.time()
    supervisor._publish_processes()
    wait_until(lambda: psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE, 30, message="the child to exit")
    supervisor.health()
    supervisor.ready()
    # Still a zombie: only the main loop may wait for it.
    assert psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE
    assert process._popen.returncode is None
    # The main loop's reap sees the death, with its exit status, and /ready says so; /health waits for the
    # scheduled restart (plus a grace period) before it counts the slot as not running.
    assert supervisor._reap()
    assert supervisor.slots[0].process is None and len(supervisor.slots[0].deaths) == 1
    assert "worker 0: restarting" in supervisor.ready()[1]["problems"]
    assert supervisor.health()[0] is True
    supervisor.slots[0].restart_due = time.time() - 11
    supervisor._publish_processes()
    ok, body = supervisor.health()
    assert (ok, body["problems"]) == (False, ["worker 0: not running"])


def test_stop_requested_turns_ready_503_at_once_and_leaves_health_200(supervisor):
    supervisor.slots[0].started = time.time()
    supervisor.processes = ((0, os.getpid(), time.time(), 0.0),)
    assert supervisor.health()[0] is True
    supervisor.request_stop()
    assert supervisor.health()[0] is True
    assert "stop requested" in supervisor.ready()[1]["problems"]


# ---- the running service -----------------------------------------------------------------------------


def test_service_liveness_and_readiness(postgres_server, migrated_database, role, kafka_bootstrap, topic, tmp_path):
    """Hung worker -> /health 503; credentials rejected -> /ready 503 only. (Every other state is decided by
    the same functions, tested above with each state written out.)"""
    env = service_env({**migrated_database.env(), "CCX_NOTIFICATION_WRITER__STORAGE__PG_USERNAME": role},
                      kafka_bootstrap, topic, f"health-{uuid.uuid4().hex[:8]}",
                      PROCESSING__BATCH_TIMEOUT_MS="500")
    service = Service(env, workdir=tmp_path)
    admin = psycopg.connect(postgres_server.conninfo(), autocommit=True)

    def status(path):
        code, body = service.request(path)
        return code

    try:
        service.wait_http()
        wait_until(lambda: status("/ready") == 200, 60, message="/ready 200")
        assert status("/health") == 200
        # A hung worker: liveness fails (the stale limit is 10 s), readiness too.
        worker = service.wait_workers(2)[0]
        worker.suspend()
        try:
            wait_until(lambda: status("/health") == 503, 30, message="/health 503 for a SIGSTOPped worker")
            code, body = service.health()
            assert any(p.startswith("worker ") and ": no poll for " in p for p in body["problems"]), body
        finally:
            worker.resume()
        wait_until(lambda: status("/health") == 200, 30, message="/health 200 after SIGCONT")
        # Credentials rejected (a password rotation gone wrong): retried, logged, counted, not ready.
        admin.execute(f'ALTER ROLE "{role}" NOLOGIN')
        try:
            wait_until(lambda: status("/ready") == 503, 30, message="/ready 503 with credentials rejected")
            assert status("/health") == 200
            assert parse_ready(service)["database"]["state"] == CREDENTIALS_REJECTED
            wait_until(lambda: service.metrics().get(
                "ccx_notification_writer_database_credentials_rejected_total", 0) >= 1, 30,
                message="rejections counted")
        finally:
            admin.execute(f'ALTER ROLE "{role}" LOGIN')
        wait_until(lambda: status("/ready") == 200, 30, message="/ready 200 once the credentials work")
        assert service.process.poll() is None
        assert service.stop() == 0
    finally:
        admin.close()
        service.close()
    errors = [r for r in service.log_records() if r.get("level") == "error"]
    where = f"{role}@{postgres_server.host}:{postgres_server.port}/{migrated_database.name}"
    assert len(errors) == 1, errors
    assert errors[0]["message"].startswith(f"PostgreSQL at {where} rejects our credentials: "), errors


def parse_ready(service) -> dict:
    import json

    return json.loads(service.request("/ready")[1])


def test_one_broker_transport_error_is_no_outage(migrated_database, kafka_bootstrap, topic):
    """Only 'all brokers down' marks the broker unreachable; the statistics callback tells the rest."""
    from confluent_kafka import KafkaError

    from writer.status import WorkerStatus, new_status_array, read_slot
    from writer.worker import Worker

    env = {"CCX_NOTIFICATION_WRITER__BROKER__ADDRESSES": kafka_bootstrap,
           "CCX_NOTIFICATION_WRITER__BROKER__TOPIC": topic, **migrated_database.env()}
    array = new_status_array(multiprocessing.get_context("spawn"), 1)
    status = WorkerStatus(array, 0)
    status.broker_up(True)
    worker = Worker(config_module.load(env), status, f"g-{uuid.uuid4().hex[:6]}")
    try:
        for code in (KafkaError._TRANSPORT, KafkaError._RESOLVE):
            worker._on_kafka_error(KafkaError(code))
            assert read_slot(array, 0)["broker_up"] == 1, code
        worker._on_kafka_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
        assert read_slot(array, 0)["broker_up"] == 0
    finally:
        worker.consumer.close()
        worker.writer.close()
