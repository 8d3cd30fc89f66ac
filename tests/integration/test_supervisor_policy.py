"""The supervisor's restart policy in the running service: backoff between restarts, the window of remembered
deaths, the exit status when it gives up (a worker killed by a signal: 2), and its metrics (the policy alone:
tests/unit/test_restart_policy.py)."""

from __future__ import annotations

import datetime
import signal
import uuid

import pytest

from tests.harness.service import Service, service_env, wait_until

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
