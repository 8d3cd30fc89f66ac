"""Liveness (/health) and readiness (/ready) as the pure decision, state by state, and its bounds from the
configuration (the probe against PostgreSQL, the supervisor and the running service:
tests/integration/test_health.py).

States: all well; stale poll (a hung or SIGSTOPped worker); dead worker; stop
requested; broker unreachable; database writes retrying; database down;
credentials rejected.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from writer import config as config_module
from writer.database_probe import CREDENTIALS_REJECTED, DATABASE_MISSING, NOT_WRITABLE, UNKNOWN, UNREACHABLE
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


@pytest.mark.parametrize("state", [UNREACHABLE, CREDENTIALS_REJECTED, NOT_WRITABLE, UNKNOWN])
def test_database_probe_failing_is_live_but_not_ready(state):
    assert decide([worker(0)], database=DatabaseView(state, "why", NOW - 2)) == (True, False, [f"database: {state}"])


def test_readys_body_gives_the_databases_reason_code_and_never_its_address():
    # /ready is served without authentication: where the database is and what it answered stay in the log.
    detail = 'connection to server at "10.1.2.3", port 6543 failed: FATAL:  database "notification_x" does not exist'
    ready, body = readiness([worker(0)], DatabaseView(DATABASE_MISSING, detail, NOW - 2), NOW - 0.2, False, NOW,
                            BOUNDS)
    assert not ready
    assert body["database"] == {"state": "database_missing", "seconds_since_check": 2.0}
    assert body["problems"] == ["database: database_missing"]
    text = json.dumps(body)
    for part in ("10.1.2.3", "6543", "notification_x"):
        assert part not in text
