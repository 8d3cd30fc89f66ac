"""The service's processes stopped and killed (console script: supervisor and 2 workers, the Kafka mock,
PostgreSQL), exact rows and offsets checked, numbers recorded for the README's reliability tables:

3. a worker SIGKILLed mid-batch, restarted by the supervisor;
4. the supervisor SIGTERMed mid-stream, then restarted;
5. the supervisor SIGKILLed alone (its orphaned workers must stop) or with its whole process group;
F. stop time after SIGTERM while retrying and while a write hangs; exit 5 when the retries give up.
"""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from tests.harness.database import execute, row_count, stored_keys
from tests.harness.fix_scenario import sizes
from tests.harness.kafka import committed_offsets, nothing_committed
from tests.harness.proxy import StallingProxy
from tests.harness.scenario import produce_numbers, replay_summary, shutdown_bound, wait_all_assigned
from tests.harness.service import Service, service_env, wait_until
from tests.harness.storage import OUTAGE

# ---- 3. workers killed -----------------------------------------------------------------------------------


@pytest.mark.parametrize("messages,kills", sizes(2, 6))
def test_workers_killed(scenario, messages, kills):
    scenario.produce(messages)
    service = scenario.start("--replay")
    killed, last_fault = [], None
    for k in range(kills):
        scenario.wait_share(k, kills)
        workers = service.wait_workers(2)
        if len(workers) < 2:  # the replay finished first: no one left to kill
            break
        victim = min(workers, key=lambda w: w.create_time())  # the oldest: alternates between slots
        victim.kill()
        killed.append(victim.pid)
        gone_by = time.monotonic() + 10  # a process with threads takes a moment to die: counted alive meanwhile,
        while any(w.pid == victim.pid for w in service.workers()) and time.monotonic() < gone_by:  # it would be
            time.sleep(0.05)  # picked (and killed) twice
        last_fault = time.monotonic()
        service.wait_workers(2)  # restarted (or the replay finished)
    scenario.drain(service)
    scenario.verify()
    summary = replay_summary(service)
    assert summary["rejected"] == 0
    deaths = service.logged("died with status")
    assert len(killed) >= min(kills, 2), "the replay drained before the workers could be killed"
    assert len(deaths) == len(killed), deaths
    assert len({r["message"].split()[1] for r in deaths}) == min(len(killed), 2), "both worker slots should be hit"
    scenario.record("3. worker SIGKILL mid-batch, supervisor restarts it", faults=len(killed),
                    resumed_after_s=scenario.resumed_after(last_fault),
                    drained_after_s=scenario.drained_after(last_fault), redelivered=summary["duplicates"])


# ---- 4. supervisor SIGTERM -----------------------------------------------------------------------------------


@pytest.mark.parametrize("messages,stops", sizes(1, 4))
def test_supervisor_sigterm(scenario, messages, stops):
    produced = scenario.produce(messages)
    env = scenario.env
    shutdowns, stored_not_committed = [], 0
    for k in range(stops):
        service = scenario.start(name=f"service-{k}")
        try:
            service.wait_http()
            wait_all_assigned(service)
            scenario.wait_share(k, stops)
            service.signal(signal.SIGTERM)
            asked = time.monotonic()
            status = service.wait(shutdown_bound(env) + 30)
            shutdowns.append(round(time.monotonic() - asked, 1))
        finally:
            service.close()
        assert status == 0, service.stderr()[-3000:]
        assert shutdowns[-1] <= shutdown_bound(env), f"shutdown took {shutdowns[-1]} s"
        assert not service.workers()
        # Every consumed offset is committed with its row stored: a stop finishes and commits the batch in flight
        # (serving the group's rebalance while the last commit is refused, then from the revocation callback).
        stored = stored_keys(scenario.database)
        below = produced.keys_below(scenario.committed())
        assert not below - set(stored), "committed offsets whose rows are not stored"
        assert set(stored) <= produced.keys
        stored_not_committed = max(stored_not_committed, len(set(stored) - below))
        assert stored_not_committed == 0, f"{stored_not_committed} rows stored but their offsets not committed"
    restarted = time.monotonic()
    service = scenario.drain(scenario.start("--replay", name="replay"))
    scenario.verify()
    scenario.record("4. supervisor SIGTERM mid-stream, then restart", faults=stops, shutdown_s=max(shutdowns),
                    shutdown_bound_s=shutdown_bound(env), stored_not_committed=stored_not_committed,
                    resumed_after_s=scenario.resumed_after(restarted),
                    drained_after_s=scenario.drained_after(restarted),
                    redelivered=replay_summary(service)["duplicates"])


# ---- 5. supervisor SIGKILL -------------------------------------------------------------------------------------


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("messages,crashes", sizes(2, 6))
def test_supervisor_sigkill(scenario, messages, crashes):
    """Odd crashes: SIGKILL to the supervisor alone (its orphaned workers must stop by themselves);
    even crashes: SIGKILL to the whole process group (everything dies mid-batch)."""
    produced = scenario.produce(messages)
    orphan_exit = []
    for k in range(crashes):
        service = scenario.start(name=f"service-{k}")
        try:
            workers = service.wait_workers(2)
            scenario.wait_share(k, crashes)
            if k % 2 == 0:
                service.signal(signal.SIGKILL)
                killed = time.monotonic()
                service.wait(10)
                wait_until(lambda workers=workers: all(_gone(w) for w in workers), shutdown_bound(scenario.env),
                           message="the orphaned workers to stop")
                orphan_exit.append(round(time.monotonic() - killed, 1))
            else:
                service.kill_group()
                service.wait(10)
        finally:
            service.close()
        stored = set(stored_keys(scenario.database))
        assert not produced.keys_below(scenario.committed()) - stored, "committed offsets whose rows are not stored"
        assert stored <= produced.keys
    restarted = time.monotonic()
    service = scenario.drain(scenario.start("--replay", name="replay"))
    scenario.verify()
    scenario.record("5. supervisor SIGKILL (alone / whole group), then restart", faults=crashes,
                    orphans_stopped_within_s=max(orphan_exit), resumed_after_s=scenario.resumed_after(restarted),
                    drained_after_s=scenario.drained_after(restarted),
                    redelivered=replay_summary(service)["duplicates"])


# ---- F. stop time and exit status (issue 9, items 7, 9) ----------------------------------------------------------


def stop_bound(env: dict) -> float:
    """The documented bound: a worker exits within shutdown_timeout_s of SIGTERM; plus process exits."""
    return float(env["CCX_NOTIFICATION_WRITER__PROCESSING__SHUTDOWN_TIMEOUT_S"]) + 3


def test_sigterm_during_a_database_retry_stops_at_once(migrated_database, kafka_bootstrap, topic, group, workdir):
    database = migrated_database
    produce_numbers(kafka_bootstrap, topic, range(40))
    execute(database, OUTAGE)
    env = service_env(database.env(), kafka_bootstrap, topic, group, PROCESSING__WORKERS=1)
    service = Service(env, workdir=workdir, name="sigterm-retrying")
    try:
        # Backoff 0.25 s doubling to 10 s: after the 4th retry the worker sleeps about 4 s.
        service.wait_logged("database unavailable, retrying", count=4, timeout=60)
        service.signal(signal.SIGTERM)
        asked = time.monotonic()
        status = service.wait(60)
        stopped = time.monotonic() - asked
    finally:
        service.close()
    assert status == 0, service.stderr()[-3000:]
    assert not service.logged("did not stop in time")
    records = service.log_records()
    stop_index = next(i for i, r in enumerate(records)
                      if "stopping while the database is unavailable" in r.get("message", ""))
    retries_before = len([r for r in records[:stop_index] if "retrying the batch" in r.get("message", "")])
    assert retries_before == len(service.logged("retrying the batch")), "no attempt after SIGTERM"
    assert stopped <= stop_bound(env), f"stopped after {stopped:.1f} s"
    assert row_count(database) == 0 and nothing_committed(committed_offsets(kafka_bootstrap, topic, group))


# By default, tests/integration/test_storage_faults.py::test_sigterm_style_abort_cuts_a_hung_write_short runs.
@pytest.mark.slow
def test_sigterm_during_a_hung_write_stops_within_the_bound(scenario):
    server = scenario.database.server
    proxy = StallingProxy(server.host, server.port)
    try:
        scenario.configure(PROCESSING__WORKERS=1, PROCESSING__BATCH_SIZE=20, STORAGE__PG_HOST="127.0.0.1",
                           STORAGE__PG_PORT=proxy.port,
                           STORAGE__WRITE_TIMEOUT_S=600)  # the write timeout does not help: only the stop can end it
        produced = scenario.produce(400)
        service = scenario.start(name="sigterm-hung")
        scenario.monitor.wait_rows(20, timeout=60)
        proxy.stall()
        time.sleep(1)
        service.signal(signal.SIGTERM)
        asked = time.monotonic()
        status = service.wait(60)
        stopped = time.monotonic() - asked
    finally:
        scenario.close()
        proxy.close()
    assert status == 0, service.stderr()[-3000:]
    assert not service.logged("did not stop in time")
    assert service.logged("stopping while the database is unavailable")  # the stop met a hung write
    assert stopped <= stop_bound(scenario.env), f"stopped after {stopped:.1f} s"
    # What is committed is stored (nothing committed ahead of the database).
    assert produced.keys_below(scenario.committed()) <= set(stored_keys(scenario.database))


def test_database_retries_that_give_up_exit_5(migrated_database, kafka_bootstrap, topic, group, workdir):
    database = migrated_database
    produce_numbers(kafka_bootstrap, topic, range(20))
    execute(database, OUTAGE)
    env = service_env(database.env(), kafka_bootstrap, topic, group, PROCESSING__WORKERS=1,
                      PROCESSING__MAX_RESTARTS=0, STORAGE__RETRY_MAX_SECONDS=2)
    service = Service(env, workdir=workdir, name="give-up")
    try:
        status = service.wait(90)
    finally:
        service.close()
    assert status == 5, service.stderr()[-3000:]
    assert service.logged("still unavailable after retrying")
    assert [r for r in service.logged("died with status") if "status 5" in r["message"]]
    assert row_count(database) == 0 and nothing_committed(committed_offsets(kafka_bootstrap, topic, group))
