"""Liveness (/health) and readiness (/ready), decided from snapshots: pure functions, no I/O.

Liveness answers "should this pod be restarted?": every process is alive and
its loop turns. A worker that is dead (beyond its scheduled restart), or has
not polled Kafka for ``stale_after`` seconds (SIGSTOPped, deadlocked, stuck
beyond every timeout), or a supervisor whose own loop stopped turning, fails
it. A worker blocked in a call that only the broker or only the database can
end is alive but not ready, within a bound derived from the configured
timeouts (``limits``): a restart would not speed up a lock wait, a COMMIT
waiting for a synchronous standby or a coordinator change, and would repeat
the same batch. An unreachable broker or database, and a stop in progress,
do NOT fail liveness either.

Readiness answers "is this pod doing its job?": alive, no stop in progress,
every running worker reaches a broker and is not blocked, no worker is
retrying a failing database write, and the supervisor's database probe can
connect and write (see ``database_probe``) and still reports. Its body names
the database's state by a reason code; what the server answered stays in the
log (it names the host, port and database, and /ready needs no credentials).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from writer.config import Config


@dataclass(frozen=True)
class WorkerView:
    """One worker slot as the supervisor's loop last saw it, plus what the worker itself reports."""

    slot: int
    pid: int | None  # None: no process (dead, waiting for its restart)
    started: float  # wall-clock time the current process was started
    last_poll: float
    broker_up: bool
    database_ok: bool
    assigned: int
    kafka_wait_since: float = 0.0  # >0: blocked since then in a call only the broker can end
    database_wait_since: float = 0.0  # >0: in a database call (connect, write, commit) since then
    restart_at: float = 0.0  # no process: wall-clock time its restart is scheduled for (0: none)


# A worker's consume call returns at least once per batch timeout; three missed turns in a row, and never less than
# STALE_AFTER_MIN_S (short batch timeouts would flag a worker stalled by one slow scheduling turn), is a hang.
STALE_AFTER_BATCH_TIMEOUTS = 3
STALE_AFTER_MIN_S = 10.0
# A dead worker waiting for its scheduled restart is still alive this long past that time (the
# supervisor's loop and a spawn take a moment).
RESTART_GRACE_S = 10.0


@dataclass(frozen=True)
class Limits:
    stale_after: float  # no poll for longer: hung
    kafka_wait: float  # a commit or flush waiting for the broker is alive this long
    database_wait: float  # a database call is alive this long
    restart_grace: float = RESTART_GRACE_S  # a dead worker is alive this long past its scheduled restart


# librdkafka's socket.timeout.ms (this service does not change it): a request the broker does not answer
# fails after this long. A synchronous commit has no timeout of its own; finding a new group coordinator
# can add up to session.timeout.ms.
KAFKA_SOCKET_TIMEOUT_S = 60.0
KAFKA_WAIT_MARGIN_S = 30.0
# A database call's bound when the configuration sets no statement timeout: generous, because a restart
# helps neither a lock wait nor a COMMIT held by a synchronous standby, and repeats the same batch.
DATABASE_WAIT_S = 300.0
# Round trips of one batch write (connect aside) that a statement timeout bounds one by one.
DATABASE_ROUND_TRIPS = 4
DATABASE_ROUND_TRIP_MARGIN_S = 5.0


def limits(config: Config) -> Limits:
    """The liveness bounds that follow from the configuration."""
    storage = config.storage
    kafka_wait = config.broker.session_timeout_ms / 1000 + KAFKA_SOCKET_TIMEOUT_S + KAFKA_WAIT_MARGIN_S
    # connect_timeout 0 means "no limit" to libpq: the generous constant stands in for it.
    connect = storage.connect_timeout or DATABASE_WAIT_S
    statement = storage.write_timeout_s  # the statement_timeout; 0 sets none
    writing = max(DATABASE_WAIT_S, DATABASE_ROUND_TRIPS * (statement + DATABASE_ROUND_TRIP_MARGIN_S))
    return Limits(
        stale_after=max(STALE_AFTER_MIN_S,
                        STALE_AFTER_BATCH_TIMEOUTS * config.processing.batch_timeout_ms / 1000),
        kafka_wait=kafka_wait,
        database_wait=connect + writing,
    )


@dataclass(frozen=True)
class DatabaseView:
    state: str  # database_probe.OK, or why it is not ok (a reason code); UNKNOWN before the first probe
    detail: str  # for the log only: it may name the server, and /ready is served without authentication
    checked: float  # wall-clock time of the last probe (0: never)
    stale_after: float = float("inf")  # a probe result older than this no longer counts (a dead or hung probe)


def _seconds_since_poll(worker: WorkerView, now: float) -> float:
    # A process just started has not polled yet: its start counts as a poll.
    return now - max(worker.last_poll, worker.started)


def _waiting(since: float, limit: float, now: float) -> bool:
    return since > 0 and now - since <= limit


def _blocked_by_service(worker: WorkerView, now: float, bounds: Limits) -> bool:
    return (_waiting(worker.kafka_wait_since, bounds.kafka_wait, now)
            or _waiting(worker.database_wait_since, bounds.database_wait, now))


def _restart_pending(worker: WorkerView, now: float, bounds: Limits) -> bool:
    return worker.restart_at > 0 and now <= worker.restart_at + bounds.restart_grace


def liveness(workers: list[WorkerView], loop_beat: float, now: float, bounds: Limits) -> tuple[bool, dict[str, Any]]:
    problems = []
    if now - loop_beat > bounds.stale_after:
        problems.append(f"supervisor loop not turning for {now - loop_beat:.1f} s")
    for worker in workers:
        if worker.pid is None:
            if not _restart_pending(worker, now, bounds):
                problems.append(f"worker {worker.slot}: not running")
        elif (idle := _seconds_since_poll(worker, now)) > bounds.stale_after and not _blocked_by_service(
                worker, now, bounds):
            problems.append(f"worker {worker.slot}: no poll for {idle:.1f} s")
    return not problems, {
        "status": "ok" if not problems else "unavailable",
        "problems": problems,
        "workers": [_describe(worker, now) for worker in workers],
    }


def readiness(workers: list[WorkerView], database: DatabaseView, loop_beat: float, stop_requested: bool,
              now: float, bounds: Limits) -> tuple[bool, dict[str, Any]]:
    alive, body = liveness(workers, loop_beat, now, bounds)
    problems = list(body["problems"])
    if stop_requested:
        problems.append("stop requested")
    for worker in workers:
        if worker.pid is None:
            if _restart_pending(worker, now, bounds):
                problems.append(f"worker {worker.slot}: restarting")
            continue
        if not worker.broker_up:
            problems.append(f"worker {worker.slot}: no Kafka broker reachable")
        if _waiting(worker.kafka_wait_since, bounds.kafka_wait, now):
            problems.append(f"worker {worker.slot}: waiting for Kafka for {now - worker.kafka_wait_since:.1f} s")
        if (_waiting(worker.database_wait_since, bounds.database_wait, now)
                and _seconds_since_poll(worker, now) > bounds.stale_after):
            problems.append(f"worker {worker.slot}: waiting for the database for "
                            f"{now - worker.database_wait_since:.1f} s")
        if not worker.database_ok:
            problems.append(f"worker {worker.slot}: database writes failing, retrying")
    if database.state != "ok":
        problems.append(f"database: {database.state}")
    elif now - database.checked > database.stale_after:
        problems.append(f"database: probe silent for {now - database.checked:.1f} s")
    return not problems, {
        "status": "ok" if not problems else "unavailable",
        "problems": problems,
        "database": {"state": database.state,
                     "seconds_since_check": round(now - database.checked, 1) if database.checked else None},
        "workers": body["workers"],
    }


def _describe(worker: WorkerView, now: float) -> dict[str, Any]:
    return {
        "worker": worker.slot, "pid": worker.pid, "alive": worker.pid is not None,
        "seconds_since_poll": round(_seconds_since_poll(worker, now), 1) if worker.pid is not None else None,
        "broker_up": worker.broker_up, "database_ok": worker.database_ok, "assigned_partitions": worker.assigned,
    }
