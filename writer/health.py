"""Liveness (/health) and readiness (/ready), decided from snapshots: pure functions, no I/O.

Liveness answers "should this pod be restarted?": every process is alive and
its loop turns. A worker that is dead, or has not polled Kafka for
``stale_after`` seconds (hung in a write, SIGSTOPped, deadlocked; a commit or
flush waiting for the broker counts as alive for ``KAFKA_WAIT_LIMIT_S``), or a
supervisor whose own loop stopped turning, fails it; so does a stop in
progress. An unreachable broker or database does NOT fail liveness: a
restart cannot fix them.

Readiness answers "is this pod doing its job?": alive, every running worker
reaches a broker, no worker is retrying a failing database write, and the
supervisor's database probe can connect and write (see ``database_probe``).
"""

from __future__ import annotations

from dataclasses import dataclass


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


# A worker blocked in a commit or flush waits for the broker, within librdkafka's request timeouts (60 s):
# alive, though not ready. Longer than this, it counts as hung.
KAFKA_WAIT_LIMIT_S = 120.0


@dataclass(frozen=True)
class DatabaseView:
    state: str  # database_probe.OK, or why it is not ok; UNKNOWN before the first probe
    detail: str
    checked: float  # wall-clock time of the last probe (0: never)


def _seconds_since_poll(worker: WorkerView, now: float) -> float:
    # A process just started has not polled yet: its start counts as a poll.
    return now - max(worker.last_poll, worker.started)


def _waiting_for_kafka(worker: WorkerView, now: float) -> bool:
    return worker.kafka_wait_since > 0 and now - worker.kafka_wait_since <= KAFKA_WAIT_LIMIT_S


def liveness(workers: list[WorkerView], loop_beat: float, stop_requested: bool, now: float,
             stale_after: float) -> tuple[bool, dict]:
    problems = []
    if stop_requested:
        problems.append("stop requested")
    if now - loop_beat > stale_after:
        problems.append(f"supervisor loop not turning for {now - loop_beat:.1f} s")
    for worker in workers:
        if worker.pid is None:
            problems.append(f"worker {worker.slot}: not running")
        elif (idle := _seconds_since_poll(worker, now)) > stale_after and not _waiting_for_kafka(worker, now):
            problems.append(f"worker {worker.slot}: no poll for {idle:.1f} s")
    return not problems, {
        "status": "ok" if not problems else "unavailable",
        "problems": problems,
        "workers": [_describe(worker, now) for worker in workers],
    }


def readiness(workers: list[WorkerView], database: DatabaseView, loop_beat: float, stop_requested: bool,
              now: float, stale_after: float) -> tuple[bool, dict]:
    alive, body = liveness(workers, loop_beat, stop_requested, now, stale_after)
    problems = list(body["problems"])
    for worker in workers:
        if worker.pid is None:
            continue
        if not worker.broker_up:
            problems.append(f"worker {worker.slot}: no Kafka broker reachable")
        if _waiting_for_kafka(worker, now):
            problems.append(f"worker {worker.slot}: waiting for Kafka for {now - worker.kafka_wait_since:.1f} s")
        if not worker.database_ok:
            problems.append(f"worker {worker.slot}: database writes failing, retrying")
    if database.state != "ok":
        problems.append(f"database: {database.state}" + (f" ({database.detail})" if database.detail else ""))
    return not problems, {
        "status": "ok" if not problems else "unavailable",
        "problems": problems,
        "database": {"state": database.state, "detail": database.detail,
                     "seconds_since_check": round(now - database.checked, 1) if database.checked else None},
        "workers": body["workers"],
    }


def _describe(worker: WorkerView, now: float) -> dict:
    return {
        "worker": worker.slot, "pid": worker.pid, "alive": worker.pid is not None,
        "seconds_since_poll": round(_seconds_since_poll(worker, now), 1) if worker.pid is not None else None,
        "broker_up": worker.broker_up, "database_ok": worker.database_ok, "assigned_partitions": worker.assigned,
    }
