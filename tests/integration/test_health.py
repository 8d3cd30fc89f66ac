"""Liveness (/health) and readiness (/ready) with the real PostgreSQL, the supervisor and the running service:
connection errors classified, the database probe, rejected credentials (retried, ERROR once a minute, counted,
/ready 503), the supervisor's snapshots (the pure decision, state by state: tests/unit/test_health_decisions.py).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
import uuid

import psutil
import psycopg
import pytest

from tests.harness.database import create_database, drop_database
from tests.harness.service import Service, free_port, service_env, wait_until
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
            # Served without authentication: the server's answer (naming host, port, database, role) is logged only.
            body = service.request("/ready")[1].decode()
            for part in (postgres_server.host, f"port {postgres_server.port}", migrated_database.name, role):
                assert part not in body, body
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


def test_one_broker_transport_error_is_no_outage():
    """Only 'all brokers down' marks the broker unreachable; the statistics callback tells the rest."""
    from confluent_kafka import KafkaError

    from writer.metrics import Metrics
    from writer.partitions import PartitionBook
    from writer.stages.broker_events import BrokerEvents
    from writer.status import WorkerStatus, new_status_array, read_slot

    array = new_status_array(multiprocessing.get_context("spawn"), 1)
    status = WorkerStatus(array, 0)
    status.broker_up(True)
    events = BrokerEvents(status, Metrics(f"g_{uuid.uuid4().hex[:6]}"), PartitionBook())  # the worker's error_cb
    for code in (KafkaError._TRANSPORT, KafkaError._RESOLVE):
        events.on_error(KafkaError(code))
        assert read_slot(array, 0)["broker_up"] == 1, code
    events.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert read_slot(array, 0)["broker_up"] == 0
