"""The supervisor's restart policy: backoff between restarts, the window of remembered deaths, the exit
status when it gives up (a worker killed by a signal: 2), and its metrics."""

from __future__ import annotations

import datetime
import signal
import uuid

import pytest

from faults_helpers import Service, service_env, wait_until
from writer.restart_policy import after_death, service_exit_status

# ---- the policy, with the numbers written out -----------------------------------------------------------


def test_backoff_doubles_per_remembered_death_up_to_30_s():
    deaths: list[float] = []
    delays = []
    for now in range(10):
        deaths, delay = after_death(deaths, float(now), window=100, max_restarts=10)
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_one_death_more_than_max_restarts_within_the_window_stops():
    assert after_death([10.0, 20.0], 25.0, window=60, max_restarts=2) == ([10.0, 20.0, 25.0], None)
    assert after_death([], 0.0, window=60, max_restarts=0) == ([0.0], None)


def test_deaths_older_than_the_window_are_forgotten():
    # 10 s ago and 61 s ago, window 60 s: only the recent one counts, so this is the second death (1 s).
    assert after_death([39.0, 90.0], 100.0, window=60, max_restarts=2) == ([90.0, 100.0], 1.0)
    assert after_death([39.0, 40.0], 100.0, window=60, max_restarts=1) == ([100.0], 0.5)


@pytest.mark.parametrize("worker_status,service_status", [(5, 5), (3, 3), (1, 1), (-9, 2), (-15, 2), (0, 2),
                                                         (None, 2)])
def test_exit_status_when_giving_up(worker_status, service_status):
    assert service_exit_status(worker_status) == service_status


# ---- the running service ------------------------------------------------------------------------------------


def _time(record: dict) -> datetime.datetime:
    return datetime.datetime.fromisoformat(record["time"])


def test_service_stops_with_2_when_its_worker_is_killed_by_a_signal(migrated_database, kafka_bootstrap, topic,
                                                                     tmp_path):
    env = service_env(migrated_database.env(), kafka_bootstrap, topic, f"policy-{uuid.uuid4().hex[:8]}",
                      PROCESSING__WORKERS="1", PROCESSING__MAX_RESTARTS="0")
    service = Service(env, workdir=tmp_path)
    try:
        service.wait_http()
        service.wait_workers(1, timeout=60)[0].send_signal(signal.SIGKILL)
        status = service.wait(60)
    finally:
        service.close()
    assert status == 2, service.stderr()[-2000:]
    assert [r["message"] for r in service.log_records() if r["level"] == "error"][-1] == \
        "worker 0 died 1 times within 60 s: stopping"


@pytest.mark.slow
def test_service_restarts_with_backoff_forgets_old_deaths_and_stops_with_2_after_sigkills(
        migrated_database, kafka_bootstrap, topic, tmp_path):
    env = service_env(migrated_database.env(), kafka_bootstrap, topic, f"policy-{uuid.uuid4().hex[:8]}",
                      PROCESSING__WORKERS="1", PROCESSING__MAX_RESTARTS="2", PROCESSING__RESTART_WINDOW_S="8")
    service = Service(env, workdir=tmp_path)
    kills = []

    def kill_worker() -> None:
        worker = service.wait_workers(1, timeout=60)[0]
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        kills.append(worker.pid)

    def restarted() -> None:
        wait_until(lambda: [w for w in service.workers() if w.pid not in kills], 60, interval=0.05,
                   message="the worker to be restarted")

    try:
        service.wait_http()
        kill_worker()
        restarted()
        kill_worker()
        restarted()
        # Both deaths fall out of the 8 s window: the next one is a first death again.
        second_death = wait_until(lambda: [r for r in service.log_records() if "died with status" in r["message"]],
                                  10)[-1]
        wait_until(lambda: datetime.datetime.now(datetime.UTC) - _time(second_death)
                   > datetime.timedelta(seconds=8.5), 20, message="the window to pass")
        kill_worker()
        restarted()
        wait_until(lambda: service.metrics().get("ccx_notification_writer_worker_restarts_total") == 3, 20,
                   message="3 restarts counted")
        kill_worker()
        restarted()
        kill_worker()  # the third death within 8 s, max_restarts 2: the service stops
        status = service.wait(60)
    finally:
        service.close()
    assert status == 2, service.stderr()[-2000:]
    records = service.log_records()
    plans = [r["message"] for r in records if r["message"].startswith("restarting worker 0 in")]
    assert plans == ["restarting worker 0 in 0.5 s", "restarting worker 0 in 1.0 s", "restarting worker 0 in 0.5 s",
                     "restarting worker 0 in 1.0 s"]
    assert [r["message"] for r in records if r["message"].startswith("worker 0 died")] == [
        "worker 0 died 3 times within 8 s: stopping"]
    # No restart came before its delay.
    starts = [_time(r) for r in records if r["message"] == "worker 0 started"]
    deaths = [_time(r) for r in records if "died with status -9" in r["message"]]
    assert len(starts) == 5 and len(deaths) == 5
    for death, start, plan in zip(deaths, starts[1:], plans, strict=False):
        assert (start - death).total_seconds() >= float(plan.split(" in ")[1].split(" ")[0]) - 0.05, (death, start)
