"""One measured run each: the COPY ceiling, the writer's --replay, the original algorithm.

Each run gets a fresh store (database or schema) and, for the writer, a fresh consumer group;
each verifies its rows before its figures count. CPU and peak RSS come from /proc (procfs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

from bench import ceiling, kafka, pipeline, procfs
from bench.common import (
    CLI,
    Backlog,
    BenchFailure,
    SessionSampler,
    log,
    log_time,
    migrated_store,
    prefill,
    run_replay,
    verify,
    writer_env,
)
from bench.pg import PgTarget
from writer.kafka_options import CONSUMER_OPTIONS_VARIABLE

ROLES = ("workers", "supervisor", "postgres", "broker")
# Workers whose first partitions come further apart than this were held up by the group join (the mock
# answers every member within one election, well under a second apart, when nothing goes wrong).
JOIN_STALL_S = 2.0
STALL_RERUNS = 2


@dataclass
class Result:
    name: str
    kind: str  # ceiling | pipeline | writer | baseline
    messages: int
    rows: int
    seconds: float  # the figure the rate is computed from
    rate: float  # messages (ceiling: rows) per second
    seconds_total: float | None = None  # writer: process start -> caught up (group join included)
    rate_total: float | None = None
    streams: int = 1
    cpu_us_per_message: dict[str, float | None] = field(default_factory=dict)  # role -> µs of CPU per message
    worker_rss_kib: list[int] = field(default_factory=list)
    supervisor_rss_kib: int | None = None
    waits: str = ""
    note: str = ""
    prefilled: int = 0
    # writer: each worker's idle share of the window (main thread neither on a CPU nor waiting for one)
    idle_share: list[float] = field(default_factory=list)
    # writer: the workers' CPU by thread class (main, librdkafka, other), µs per message
    thread_cpu_us_per_message: dict[str, float] = field(default_factory=dict)
    # writer: the librdkafka consumer options this run set over everybody's (a --consumer-sweep value)
    consumer_options: dict[str, str] = field(default_factory=dict)
    # writer: seconds from the first worker's first partitions to the last worker's (None: a worker got none)
    join_spread: float | None = None


@dataclass
class Setup:
    target: PgTarget
    broker: kafka.Broker
    broker_pid: int | None  # the broker's process when it runs on this host
    keep: bool
    extra_env: dict[str, str]
    partitions: int
    writer_command: tuple[str, ...] = (CLI,)

    def watched(self, sessions: SessionSampler):
        """The extra processes a run samples: its PostgreSQL backends and the broker, where local."""
        local_pg = self.target.local_host

        def pids() -> dict[int, str]:
            found = sessions.local_backends() if local_pg else {}
            if self.broker_pid is not None:
                found[self.broker_pid] = "broker"
            return found
        return pids


# Sampled CPU figures (the writer's) over a window shorter than this many sampling intervals are
# mostly interpolation: shown as "-".
MIN_SAMPLED_INTERVALS = 20


def cpu_per_message(sampler: procfs.ProcessSampler, start: float, end: float, count: int, roles=ROLES) -> dict:
    if end - start < MIN_SAMPLED_INTERVALS * sampler.interval:
        return {role: None for role in roles}
    figures = {}
    for role in roles:
        seconds = sampler.cpu_between(role, start, end)
        figures[role] = None if seconds is None or not count else 1e6 * seconds / count
    return figures


# ---- the measurements ------------------------------------------------------------------------

def measure_ceiling(setup: Setup, backlog: Backlog, streams: int, batches: list[bytes]) -> Result:
    store = migrated_store(setup.target, f"ceiling{streams}")
    application = f"ccxw-bench-ceiling-{uuid.uuid4().hex[:8]}"
    readings = []
    try:
        with SessionSampler(store, application) as sessions:
            watched = setup.watched(sessions)

            def backends_seen() -> None:
                # The streams' backends must be known before the clock starts, or their CPU is missed.
                deadline = time.time() + 3
                while len(sessions.backend_pids) < streams and time.time() < deadline:
                    time.sleep(0.02)
                readings.append(procfs.read_cpu(watched()))

            def finished_writing() -> None:  # the streams hold their connections (backends) until this ran
                readings.append(procfs.read_cpu(watched()))

            started, finished = ceiling.run(store.conninfo(application), batches, streams, backends_seen,
                                            finished_writing)
        rows = verify(store, backlog.expected)
    finally:
        if not setup.keep:
            store.drop()
    seconds = finished - started
    # CPU read directly at the start and the end (no sampling: a ceiling run lasts well under a second).
    cpu = {role: procfs.cpu_used(*readings, role) for role in ("postgres", "broker")}
    return Result(f"ceiling: COPY, {streams} stream{'s' if streams > 1 else ''}", "ceiling", rows, rows, seconds,
                  rows / seconds, streams=streams, waits=sessions.summary(),
                  cpu_us_per_message={role: None if used is None else 1e6 * used / rows for role, used in cpu.items()})


def measure_pipeline(setup: Setup, backlog: Backlog, processes: int, messages: list[tuple[bytes, int]],
                     batch_size: int) -> Result:
    store = migrated_store(setup.target, f"pipeline{processes}")
    application = f"ccxw-bench-pipeline-{uuid.uuid4().hex[:8]}"
    readings = []
    try:
        with SessionSampler(store, application) as sessions:
            watched = setup.watched(sessions)

            def processes_and_others(pids: list[int]) -> dict[int, str]:
                return {**watched(), **dict.fromkeys(pids, "workers")}

            def connected(pids: list[int]) -> None:
                deadline = time.time() + 3  # their backends must be known before the clock starts
                while len(sessions.backend_pids) < processes and time.time() < deadline:
                    time.sleep(0.02)
                readings.append(procfs.read_cpu(processes_and_others(pids)))

            def finished_writing(pids: list[int]) -> None:
                readings.append(procfs.read_cpu(processes_and_others(pids)))

            started, finished, stored, _ = pipeline.run(store.conninfo(application), messages, processes, batch_size,
                                                        connected, finished_writing)
        rows = verify(store, backlog.expected)
    finally:
        if not setup.keep:
            store.drop()
    if stored != rows:
        raise BenchFailure(f"pipeline ceiling: {stored} rows reported stored, {rows} found")
    seconds = finished - started
    cpu = {role: procfs.cpu_used(*readings, role) for role in ("workers", "postgres", "broker")}
    return Result(f"pipeline: parse + COPY from memory, {processes} process{'es' if processes > 1 else ''}",
                  "pipeline", len(messages), rows, seconds, len(messages) / seconds, streams=processes,
                  waits=sessions.summary(),
                  cpu_us_per_message={role: None if used is None else 1e6 * used / len(messages)
                                      for role, used in cpu.items()})


def measure_writer(setup: Setup, backlog: Backlog, workers: int, prefilled: int = 0,
                   wrap: list[str] | None = None, consumer_options: dict[str, str] | None = None) -> Result:
    store = migrated_store(setup.target, f"writer{workers}")
    application = f"ccxw-bench-writer-{uuid.uuid4().hex[:8]}"
    group = f"ccxw-bench-{uuid.uuid4().hex[:10]}"
    watcher = None
    try:
        if prefilled:
            log(f"pre-filling new_reports with {prefilled:,} rows")
            log(f"  done in {prefill(store, prefilled, backlog.size):.0f} s")
        env = writer_env(store, setup.broker, backlog.topic, workers, application, setup.extra_env)
        if consumer_options:  # over the ones every run sets (--consumer-option)
            env[CONSUMER_OPTIONS_VARIABLE] = json.dumps(
                {**json.loads(env.get(CONSUMER_OPTIONS_VARIABLE, "{}")), **consumer_options})
        if backlog.count >= 10_000:
            watcher = kafka.CommitWatcher(setup.broker, backlog.topic, group, sorted(set(backlog.partitions)))
        with SessionSampler(store, application) as sessions:
            run = run_replay(env, group, timeout=120 + backlog.count / 100, extra_pids=setup.watched(sessions),
                             wrap=wrap, progress=(watcher, backlog.count) if watcher else None,
                             command=setup.writer_command)
        if run.returncode != 0:
            tail = "\n".join([json.dumps(line) for line in run.log[-15:]] + run.stderr_other[-15:])
            raise BenchFailure(f"--replay with {workers} workers exited {run.returncode}:\n{tail}")
        summary = next((line for line in run.stdout.splitlines() if line.startswith("replay finished: ")), "")
        expected = (f"messages {backlog.count}, stored {backlog.valid_count}, duplicates 0, "
                    f"rejected {backlog.count - backlog.valid_count}")
        if not summary.startswith("replay finished: " + expected):
            raise BenchFailure(f"unexpected replay summary {summary!r}, expected {expected!r}")
        rows = verify(store, backlog.expected, prefilled)
    finally:
        if watcher is not None:
            watcher.close()
        if not setup.keep:
            store.drop()
    caught_up = run.first("replay: caught up")
    assigned = run.all("partitions assigned")
    if caught_up is None or not assigned:
        raise BenchFailure("the writer's log lacks the assignment or caught-up lines")
    end = log_time(caught_up)
    begin = min(log_time(line) for line in assigned)
    total = end - run.started
    failed_commits = len(run.all("offset commit failed"))
    spread = join_spread(assigned, min(workers, backlog.partition_count))  # a worker beyond them gets none
    events = (f"{len(assigned)} assignment events"
              + (f", {failed_commits} failed offset commits" if failed_commits else "")
              # librdkafka's mock can leave a worker without partitions for a session timeout (bench/README.md)
              + (", a worker got no partition" if spread is None else
                 f", a worker's first partitions came {spread:.1f} s after the first worker's"
                 if spread > JOIN_STALL_S else ""))
    supervisor_rss = run.sampler.peak_rss("supervisor").get(run.pid)
    label = " ".join(f"{key}={value}" for key, value in (consumer_options or {}).items())
    sampled = end - begin >= MIN_SAMPLED_INTERVALS * run.sampler.interval
    threads = run.sampler.thread_cpu_between("workers", begin, end) if sampled else None
    return Result(
        f"this writer: --replay, {workers} worker{'s' if workers > 1 else ''}" + (f" [{label}]" if label else ""),
        "writer", backlog.count, rows,
        end - begin, backlog.count / (end - begin), total, backlog.count / total, streams=workers,
        cpu_us_per_message=cpu_per_message(run.sampler, begin, end, backlog.count),
        worker_rss_kib=sorted(run.sampler.peak_rss("workers").values()), supervisor_rss_kib=supervisor_rss,
        waits=sessions.summary(), note=events, prefilled=prefilled,
        idle_share=[share for _, share in sorted(run.sampler.idle_shares("workers", begin, end).items())]
        if sampled else [],
        thread_cpu_us_per_message={kind: 1e6 * seconds / backlog.count for kind, seconds in threads.items()}
        if threads else {},
        consumer_options=dict(consumer_options or {}), join_spread=spread,
    )


def measure_writer_unstalled(setup: Setup, backlog: Backlog, workers: int, **options) -> Result:
    """``measure_writer``; on the benchmark's own mock, a start whose group join stalled measured the mock's
    coordinator, not the writer (bench/README.md, "Known problems"): it runs again, at most STALL_RERUNS times,
    and the note says so. On a given broker a stall is a finding and stays."""
    reruns = 0
    while True:
        result = measure_writer(setup, backlog, workers, **options)
        if setup.broker.given or reruns == STALL_RERUNS or not join_stalled(result):
            break
        reruns += 1
        log(f"  the mock's group join stalled ({result.note}): this start runs again")
    if reruns:
        result.note += f"; started {reruns + 1} times (the mock's group join stalled)"
    return result


def join_spread(assigned: list[dict], holders: int) -> float | None:
    """Seconds from the first worker's first "partitions assigned" log line to the last worker's first one (by
    process id); None when fewer than ``holders`` workers got partitions."""
    firsts: dict[int, float] = {}
    for line in assigned:
        if not line.get("message", "").endswith(": none"):  # an empty incremental assignment holds nothing
            firsts.setdefault(line.get("pid", 0), log_time(line))
    return max(firsts.values()) - min(firsts.values()) if firsts and len(firsts) >= holders else None


def join_stalled(result: Result) -> bool:
    return result.kind == "writer" and (result.join_spread is None or result.join_spread > JOIN_STALL_S)


def measure_baseline(setup: Setup, backlog: Backlog) -> Result:
    store = migrated_store(setup.target, "baseline")
    try:
        started = time.time()
        env = dict(os.environ, BENCH_KAFKA_OPTIONS=json.dumps(
            {k: v for k, v in setup.broker.options.items() if k != "bootstrap.servers"}))
        result = subprocess.run(
            [sys.executable, "-m", "bench.baseline", "--bootstrap", setup.broker.bootstrap, "--topic", backlog.topic,
             "--conninfo", store.conninfo("ccxw-bench-baseline"), "--count", str(backlog.count)],
            capture_output=True, text=True, timeout=3600, cwd=os.path.dirname(os.path.dirname(__file__)), env=env,
        )
        if result.returncode != 0:
            raise BenchFailure(f"baseline failed: {result.stdout} {result.stderr[-2000:]}")
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        if figures["messages"] != backlog.count or figures["stored"] != backlog.valid_count:
            raise BenchFailure(f"baseline consumed/stored {figures}, expected {backlog.count}/{backlog.valid_count}")
        rows = verify(store, backlog.expected)
    finally:
        if not setup.keep:
            store.drop()
    seconds = figures["seconds_after_first"]
    return Result("baseline: original algorithm, 1 process", "baseline", backlog.count, rows, seconds,
                  backlog.count / seconds, figures["seconds_total"], backlog.count / figures["seconds_total"],
                  worker_rss_kib=[figures["peak_rss_kib"]], note=f"{time.time() - started:.0f} s wall")
