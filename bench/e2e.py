"""End-to-end benchmark of ccx-notification-writer: one command, one PostgreSQL, one broker, the same messages.

    .venv/bin/python -m bench.e2e                       # 100k middle-size messages, 1 and 2 workers
    .venv/bin/python -m bench.e2e --quick               # CI: ~3000 messages, every section, small
    .venv/bin/python -m bench.e2e --latency --scaling --output bench/results.md
    .venv/bin/python -m bench.e2e --bootstrap-servers kafka:9093 --postgres "host=db user=bench dbname=x" \\
        --schema-only --partitions 8 --workers 1,2,4,8 --messages 200000 --json sweep.json

Side by side, in one run (see bench/README.md for what each figure means):

- ceiling: the writer's own COPY data (pre-built outside the timing) written straight into a
  fresh migrated new_reports, one stream per worker count of the sweep, one transaction per batch;
- this writer: a backlog produced once to a topic of the benchmark's own, drained by
  ``ccx-notification-writer --replay`` once per worker count (``--workers``), each time in a fresh
  consumer group and a fresh database (or schema);
- baseline: the original algorithm (bench/baseline.py) on a subset of the same messages;
- --latency: produce -> committed row, p50/p99, at a quarter of the measured 2-worker rate;
- --scaling: 2 workers on backlogs of 20k/100k/300k messages, and on a table pre-filled with 1M rows.

Without --bootstrap-servers it starts librdkafka's mock cluster; without --postgres it uses the
local PostgreSQL (or an embedded one). It never writes to the service's topics or tables.
Every run is verified (row count = valid messages, nothing stored twice, the stored
(cluster, kafka_offset) set = the produced one, every report as expected); a wrong result exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field

import psycopg
from confluent_kafka import KafkaException

from bench import ceiling, kafka, procfs
from bench.common import (
    CLI, BenchFailure, Backlog, MessageFactory, SessionSampler, digest, fmt_rate, log_time, migrated_store,
    parse_log, prefill, produce_backlog, run_replay, shrunk_report, verify, writer_env,
)
from bench.pg import PgTarget, TargetError
from writer import sample_messages
from writer.config import SCHEMA

MIB = 1024
ROLES = ("workers", "supervisor", "postgres", "broker")


@dataclass
class Result:
    name: str
    kind: str  # ceiling | writer | baseline
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


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Setup:
    target: PgTarget
    broker: kafka.Broker
    broker_pid: int | None  # the broker's process when it runs on this host
    keep: bool
    extra_env: dict[str, str]
    partitions: int

    def watched(self, sessions: SessionSampler):
        """The extra processes a run samples: its PostgreSQL backends and the broker, where local."""
        local_pg = self.target.local_host

        def pids() -> dict[int, str]:
            found = sessions.local_backends() if local_pg else {}
            if self.broker_pid is not None:
                found[self.broker_pid] = "broker"
            return found
        return pids


def cpu_per_message(sampler: procfs.ProcessSampler, start: float, end: float, count: int, roles=ROLES) -> dict:
    figures = {}
    for role in roles:
        seconds = sampler.cpu_between(role, start, end)
        figures[role] = None if seconds is None or not count else 1e6 * seconds / count
    return figures


# ---- the measurements ------------------------------------------------------------------------

def measure_ceiling(setup: Setup, backlog: Backlog, streams: int, batches: list[bytes]) -> Result:
    store = migrated_store(setup.target, f"ceiling{streams}")
    application = f"ccxw-bench-ceiling-{uuid.uuid4().hex[:8]}"
    try:
        with SessionSampler(store, application) as sessions, \
                procfs.ProcessSampler(None, setup.watched(sessions)) as sampler:
            def backends_seen() -> None:
                # The streams' backends must be sampled before the clock starts, or their CPU is missed.
                deadline = time.time() + 3
                while len(sessions.backend_pids) < streams and time.time() < deadline:
                    time.sleep(0.02)
                time.sleep(3 * sampler.interval)

            started, finished = ceiling.run(store.conninfo(application), batches, streams, backends_seen)
        rows = verify(store, backlog.expected)
    finally:
        if not setup.keep:
            store.drop()
    seconds = finished - started
    return Result(f"ceiling: COPY, {streams} stream{'s' if streams > 1 else ''}", "ceiling", rows, rows, seconds,
                  rows / seconds, streams=streams, waits=sessions.summary(),
                  cpu_us_per_message=cpu_per_message(sampler, started, finished, rows, ("postgres", "broker")))


def measure_writer(setup: Setup, backlog: Backlog, workers: int, label: str = "", prefilled: int = 0,
                   wrap: list[str] | None = None) -> Result:
    store = migrated_store(setup.target, f"writer{workers}")
    application = f"ccxw-bench-writer-{uuid.uuid4().hex[:8]}"
    group = f"ccxw-bench-{uuid.uuid4().hex[:10]}"
    watcher = None
    try:
        if prefilled:
            log(f"pre-filling new_reports with {prefilled:,} rows")
            log(f"  done in {prefill(store, prefilled, backlog.size):.0f} s")
        env = writer_env(store, setup.broker, backlog.topic, workers, application, setup.extra_env)
        if backlog.count >= 10_000:
            watcher = kafka.CommitWatcher(setup.broker, backlog.topic, group, sorted(set(backlog.partitions)))
        with SessionSampler(store, application) as sessions:
            run = run_replay(env, group, timeout=120 + backlog.count / 100, extra_pids=setup.watched(sessions),
                             wrap=wrap, progress=(watcher, backlog.count) if watcher else None)
        if run.returncode != 0:
            tail = "\n".join(json.dumps(line) for line in run.log[-15:]) + "\n".join(run.stderr_other[-15:])
            raise BenchFailure(f"--replay with {workers} workers exited {run.returncode}:\n{tail}")
        summary = next((line for line in run.stdout.splitlines() if line.startswith("replay finished: ")), "")
        expected = f"messages {backlog.count}, stored {backlog.valid_count}, duplicates 0, rejected {backlog.count - backlog.valid_count}"
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
    events = f"{len(assigned)} assignment events" + (f", {failed_commits} failed offset commits" if failed_commits else "")
    supervisor_rss = run.sampler.peak_rss("supervisor").get(run.pid)
    return Result(
        label or f"this writer: --replay, {workers} worker{'s' if workers > 1 else ''}", "writer", backlog.count, rows,
        end - begin, backlog.count / (end - begin), total, backlog.count / total, streams=workers,
        cpu_us_per_message=cpu_per_message(run.sampler, begin, end, backlog.count),
        worker_rss_kib=sorted(run.sampler.peak_rss("workers").values()), supervisor_rss_kib=supervisor_rss,
        waits=sessions.summary(), note=events, prefilled=prefilled,
    )


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


# ---- latency ---------------------------------------------------------------------------------

_LATENCY_SQL = """
ALTER TABLE new_reports ADD COLUMN inserted_at timestamptz DEFAULT clock_timestamp();
CREATE UNLOGGED TABLE bench_commit_times (cluster character(36) NOT NULL, committed_at timestamptz NOT NULL);
CREATE FUNCTION bench_note_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO bench_commit_times VALUES (NEW.cluster, clock_timestamp()); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER bench_commit_time AFTER INSERT ON new_reports
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bench_note_commit();
"""


@dataclass
class Latency:
    rate: float
    seconds: float
    messages: int
    p50_commit: float
    p99_commit: float
    max_commit: float
    p50_copy: float
    p99_copy: float
    exit_status: int
    stop_seconds: float


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def measure_latency(setup: Setup, size: str, rate: float, seconds: float) -> Latency:
    """The service (not replay) with 2 workers; messages at ``rate``/s, LastChecked = produce time."""
    from confluent_kafka import Producer

    store = migrated_store(setup.target, "latency")
    topic = f"ccxw-bench.latency.{uuid.uuid4().hex[:8]}"
    setup.broker.create_topic(topic, setup.partitions)
    factory = MessageFactory(size)
    compression = "lz4" if setup.broker.given else "zstd"
    producer = Producer({**setup.broker.options, "compression.type": compression, "linger.ms": 5})
    delivered: dict[str, int] = {}
    failures = []

    def on_delivery(error, message):
        if error is not None:
            failures.append(error)
        else:
            delivered[sample_messages.cluster_id(int(message.key()))] = message.offset()

    def send(number: int) -> None:
        producer.produce(topic, key=b"%d" % number, on_delivery=on_delivery,
                         value=factory.encoded(number, datetime.datetime.now(datetime.timezone.utc)))

    first_number = 50_000_000
    send(first_number)  # the topic exists (created now, or by this produce) before the service subscribes
    producer.flush(10)
    process = None
    try:
        with psycopg.connect(store.conninfo(), autocommit=True) as connection:
            connection.execute(_LATENCY_SQL)
        env = writer_env(store, setup.broker, topic, 2, "ccxw-bench-latency", setup.extra_env)
        process = subprocess.Popen([CLI, "--group-id", f"ccxw-bench-{uuid.uuid4().hex[:10]}"], env=env, cwd="/tmp",
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
        reader.start()
        # Wait for the group to settle: both workers assigned (one if there is one partition), then no change for 2 s.
        members = min(2, setup.broker.partitions(topic))
        deadline = time.time() + 60
        while time.time() < deadline:
            assigned = [line for line in parse_log("\n".join(lines))[0] if line.get("message", "").startswith("partitions assigned")]
            if len({line["pid"] for line in assigned}) >= members and time.time() - log_time(assigned[-1]) > 2:
                break
            time.sleep(0.2)
        else:
            raise BenchFailure("the service's workers did not get partitions within 60 s")
        count = int(rate * seconds)
        started = time.time()
        for index in range(1, count + 1):
            delay = started + index / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            send(first_number + index)
            producer.poll(0)
        if producer.flush(30) or failures:
            raise BenchFailure(f"latency produce failed: {failures[:3]}")
        produced = count + 1
        with psycopg.connect(store.conninfo(), autocommit=True) as connection:
            deadline = time.time() + 60
            while connection.execute("SELECT count(*) FROM bench_commit_times").fetchone()[0] < produced:
                if time.time() > deadline:
                    raise BenchFailure("not every latency message was stored within 60 s")
                time.sleep(0.1)
            stop_started = time.time()
            process.send_signal(signal.SIGTERM)
            status = process.wait(60)
            stop_seconds = time.time() - stop_started
            measured = connection.execute(
                "SELECT extract(epoch FROM c.committed_at - (r.updated_at AT TIME ZONE 'UTC')),"
                "       extract(epoch FROM r.inserted_at - (r.updated_at AT TIME ZONE 'UTC'))"
                " FROM new_reports r JOIN bench_commit_times c USING (cluster)"
                " WHERE r.cluster <> %s",
                (sample_messages.cluster_id(first_number),),
            ).fetchall()
        if status != 0:
            raise BenchFailure(f"the service exited {status} after SIGTERM")
        report = digest(shrunk_report(size))
        verify(store, {(cluster, offset): report for cluster, offset in delivered.items()})
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        if not setup.keep:
            store.drop()
    commit = [float(c) for c, _ in measured]
    copy = [float(i) for _, i in measured]
    return Latency(rate, seconds, len(measured), statistics.median(commit), percentile(commit, 0.99), max(commit),
                   statistics.median(copy), percentile(copy, 0.99), status, stop_seconds)


# ---- output ----------------------------------------------------------------------------------

def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / MIB:.0f}"


def micros(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def main_table(results: list[Result]) -> list[str]:
    ceilings = {r.streams: r for r in results if r.kind == "ceiling"}
    baseline = next((r for r in results if r.kind == "baseline"), None)
    lines = [
        "| run | messages | seconds | messages/s | messages/s from process start | % of COPY ceiling (same streams) "
        "| x baseline | CPU µs/msg: workers | supervisor | PostgreSQL | broker | peak RSS MiB: largest worker "
        "| all workers | supervisor | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        percent = f"{100 * r.rate / ceilings[r.streams].rate:.0f}%" if r.kind == "writer" and r.streams in ceilings else "-"
        multiple = f"{r.rate / baseline.rate:.1f}x" if baseline and r.kind != "baseline" else "-"
        cpu = [micros(r.cpu_us_per_message.get(role)) for role in ROLES]
        rss = r.worker_rss_kib
        lines.append(
            f"| {r.name} | {r.messages:,} | {r.seconds:.1f} | {fmt_rate(r.rate)} | {fmt_rate(r.rate_total)} | {percent} | "
            f"{multiple} | {' | '.join(cpu)} | {mib(max(rss)) if rss else '-'} | {mib(sum(rss)) if rss else '-'} | "
            f"{mib(r.supervisor_rss_kib)} | {r.note} |"
        )
    return lines


def scaling_table(results: list[Result]) -> list[str]:
    lines = [
        "| backlog | rows already in new_reports | seconds | messages/s | microseconds per message | peak RSS per worker, MiB | notes |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(f"| {r.messages:,} | {r.prefilled:,} | {r.seconds:.1f} | {fmt_rate(r.rate)} | {1e6 / r.rate:.0f} | "
                     f"{', '.join(mib(k) for k in r.worker_rss_kib)} | {r.note} |")
    return lines


# ---- the command -----------------------------------------------------------------------------

def worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of worker counts: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be 1 or more: {text!r}")
    return list(dict.fromkeys(counts))


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n\n")[0])
    where = parser.add_argument_group("where to run (default: a Kafka mock it starts, the local PostgreSQL)")
    where.add_argument("--bootstrap-servers", metavar="HOST:PORT",
                       help="a Kafka cluster of yours; TLS/SASL come from the service's configuration "
                            "(CCX_NOTIFICATION_WRITER_CONFIG_FILE or config.toml, CCX_NOTIFICATION_WRITER__BROKER__*, ACG_CONFIG)")
    where.add_argument("--postgres", metavar="CONNINFO",
                       help="a PostgreSQL of yours (libpq conninfo or URI); PG* variables and ~/.pgpass apply")
    where.add_argument("--schema-only", action="store_true",
                       help="create a schema per run in the --postgres database instead of a database per run")
    where.add_argument("--partitions", type=int, default=4, help="partitions of the benchmark's topics (default 4)")
    parser.add_argument("--workers", type=worker_counts, default=[1, 2], metavar="N,N,...",
                        help="worker counts to sweep, each from the same backlog (default 1,2)")
    parser.add_argument("--messages", type=int, default=100_000, help="backlog size (default 100000)")
    parser.add_argument("--message-mix", choices=("uniform", "varied"),
                        help="uniform: one --size report every time; varied: production-like (distinct rules and "
                             "details). Default: varied with --bootstrap-servers, else uniform (the mock keeps ~5 MiB per partition)")
    parser.add_argument("--size", default="middle_size", choices=sample_messages.SIZES,
                        help="report size of uniform messages and of --latency (default middle_size)")
    parser.add_argument("--quick", action="store_true", help="CI mode: ~3000 messages, every section, small")
    parser.add_argument("--scaling", action="store_true", help="backlogs of 20k/100k/300k and 0 vs 1M rows in new_reports")
    parser.add_argument("--latency", action="store_true", help="p50/p99 produce -> commit at a quarter of the 2-worker rate")
    parser.add_argument("--output", help="also write the tables (markdown) to this file")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON to this file")
    parser.add_argument("--baseline-messages", type=int, help="messages for the baseline (default min(messages, 10000))")
    parser.add_argument("--invalid-every", type=int, default=1000, help="every N-th message is invalid (0: none; default 1000)")
    parser.add_argument("--batch-size", type=int, help="[processing] batch_size for the writer and the ceiling")
    parser.add_argument("--batch-timeout-ms", type=int, help="[processing] batch_timeout_ms for the writer")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--latency-rate", type=float, help="messages/s for --latency (default: a quarter of the 2-worker rate)")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: ceiling, baseline, writerN (e.g. writer1)")
    parser.add_argument("--profile", metavar="DIR", help="also run 2 workers under py-spy (not timed), output in DIR")
    parser.add_argument("--report-compression", choices=("pglz", "lz4"),
                        help="benchmark only: ALTER new_reports.report SET COMPRESSION in every database")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run ceiling, writer and baseline N times, interleaved, and keep each one's best (default 1)")
    parser.add_argument("--keep-databases", action="store_true", help="keep the databases (schemas) after the runs")
    args = parser.parse_args(argv)
    if args.schema_only and not args.postgres:
        parser.error("--schema-only needs --postgres (the database to create the schemas in)")
    if args.partitions < 1:
        parser.error("--partitions must be 1 or more")
    if args.quick:
        args.messages = min(args.messages, 3000)
        args.latency = args.scaling = True
        args.latency_seconds = min(args.latency_seconds, 6.0)
    if args.baseline_messages is None:
        args.baseline_messages = min(args.messages, 1000 if args.quick else 10_000)
    if args.message_mix is None:
        args.message_mix = "varied" if args.bootstrap_servers else "uniform"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (BenchFailure, TargetError, kafka.BrokerError) as failure:
        log(f"FAILED: {failure}")
        return 1
    except KafkaException as error:
        log(f"FAILED: Kafka: {error.args[0].str() if error.args else error}")
        return 1


def run(args) -> int:
    skip = set(filter(None, args.skip.split(",")))
    batch_size = args.batch_size or SCHEMA["processing"]["batch_size"]
    extra_env = {}
    if args.batch_size:
        extra_env["CCX_NOTIFICATION_WRITER__PROCESSING__BATCH_SIZE"] = str(args.batch_size)
    if args.batch_timeout_ms:
        extra_env["CCX_NOTIFICATION_WRITER__PROCESSING__BATCH_TIMEOUT_MS"] = str(args.batch_timeout_ms)
    # The mock's group coordinator ends a rebalance only when its timer (session timeout - 1 s)
    # fires, not when every member has rejoined; cooperative-sticky needs a second round when
    # partitions move between members. With the default 45 s session a late-joining worker
    # stalls a run for ~44 s (bench/README.md, "Known problems"). 6 s is also the smallest
    # session a Kafka broker accepts by default (group.min.session.timeout.ms), so it suits any broker.
    extra_env["CCX_NOTIFICATION_WRITER__BROKER__SESSION_TIMEOUT_MS"] = "6000"
    batch_timeout = args.batch_timeout_ms or SCHEMA["processing"]["batch_timeout_ms"]
    if args.report_compression:
        from bench import common

        common.EXTRA_SCHEMA_SQL.append(f"ALTER TABLE new_reports ALTER COLUMN report SET COMPRESSION {args.report_compression}")

    if args.postgres:
        target = PgTarget.from_conninfo(args.postgres, args.schema_only)
    else:
        target = PgTarget.local(tempfile.mkdtemp(prefix="ccxw-bench-"), args.schema_only)
    broker = None
    output: list[str] = []
    report: dict = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "arguments": {
        k: v for k, v in vars(args).items() if k not in ("postgres",)}}
    try:
        broker = kafka.Broker.given_by_user(args.bootstrap_servers) if args.bootstrap_servers else kafka.Broker.own_mock()
        brokers = broker.check()
        setup = Setup(target, broker, broker.local_pid(), args.keep_databases, extra_env, args.partitions)
        load_before = os.getloadavg()[0]
        log(f"PostgreSQL {target.version()} at {target.describe()}; Kafka {broker.label}, {brokers}")
        log(f"producing {args.messages:,} {args.message_mix} messages")
        backlog = produce_backlog(broker, f"ccxw-bench.main.{uuid.uuid4().hex[:8]}", args.messages, args.message_mix,
                                  args.size, args.invalid_every, args.partitions)
        ratio = backlog.produced.compression_ratio
        subset = None
        if "baseline" not in skip:
            log(f"producing {args.baseline_messages:,} messages for the baseline")
            subset = produce_backlog(broker, f"ccxw-bench.baseline.{uuid.uuid4().hex[:8]}", args.baseline_messages,
                                     args.message_mix, args.size, args.invalid_every, args.partitions)
            subset.prepare(batch_size, build_batches=False)
        log("building the expected rows" + (" and the ceiling's COPY data" if "ceiling" not in skip else ""))
        batches = backlog.prepare(batch_size, build_batches="ceiling" not in skip)
        header = (
            f"ccx-notification-writer end-to-end benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}: "
            f"{os.cpu_count()} cores (load average {load_before:.1f} at the start), Python {platform.python_version()}; "
            f"PostgreSQL {target.version()}, {target.describe()}; Kafka: {broker.label}, {brokers}; "
            f"topic {backlog.topic}: {backlog.partition_count} partitions, {backlog.topic_creation}; "
            f"{args.messages:,} {args.message_mix} messages"
            + (f" ({args.size})" if args.message_mix == "uniform" else " (production-like: distinct rules and details)")
            + f", every {args.invalid_every}th invalid, {backlog.produced.message_bytes / 2**20:,.0f} MiB produced with "
            f"{backlog.produced.compression}" + (" at librdkafka's default batch sizes" if broker.given else " in large batches")
            + (f", compression ratio {ratio:.1f}" if ratio else "")
            + f"; batch_size {batch_size}, batch_timeout_ms {batch_timeout}"
            + (f", report compression {args.report_compression} (benchmark ALTER)" if args.report_compression else "")
        )
        log(header)
        output += [header, ""]
        report.update(header=header, cores=os.cpu_count(), load_average_start=load_before,
                      postgres={"version": target.version(), "where": target.describe(), "local": target.local_host},
                      kafka={"broker": broker.label, "local_pid_seen": setup.broker_pid is not None},
                      backlog={"topic": backlog.topic, "partitions": backlog.partition_count, "topic_creation": backlog.topic_creation,
                               "messages": backlog.count, "valid": backlog.valid_count, "mix": args.message_mix,
                               "message_bytes": backlog.produced.message_bytes, "bytes_sent": backlog.produced.wire_bytes,
                               "compression": backlog.produced.compression, "compression_ratio": ratio})

        runs: dict[str, list[Result]] = {}
        for attempt in range(1, args.repeat + 1):
            if args.repeat > 1:
                log(f"round {attempt} of {args.repeat}")
            for workers in args.workers:
                if "ceiling" not in skip:
                    log(f"ceiling, {workers} stream(s)")
                    result = measure_ceiling(setup, backlog, workers, batches)
                    runs.setdefault(f"ceiling{workers}", []).append(result)
                    log(f"  {result.rate:,.0f} rows/s")
                if f"writer{workers}" not in skip and "writer" not in skip:
                    log(f"this writer, --replay, {workers} worker(s)")
                    result = measure_writer(setup, backlog, workers)
                    runs.setdefault(f"writer{workers}", []).append(result)
                    log(f"  {result.rate:,.0f} messages/s after the group join, {result.rate_total:,.0f} from start; {result.note}")
            if subset is not None:
                log(f"baseline on {args.baseline_messages:,} messages")
                result = measure_baseline(setup, subset)
                runs.setdefault("baseline", []).append(result)
                log(f"  {result.rate:,.0f} messages/s")
        del batches
        results: list[Result] = []
        for attempts in runs.values():
            best = max(attempts, key=lambda r: r.rate)
            if len(attempts) > 1:
                best.note = (best.note + "; " if best.note else "") + "best of " + "/".join(fmt_rate(r.rate) for r in attempts)
            results.append(best)
        order = {"ceiling": 0, "writer": 1, "baseline": 2}
        results.sort(key=lambda r: (r.kind == "baseline", r.streams, order[r.kind]))
        load_after = os.getloadavg()[0]
        output += main_table(results)
        output += [
            "",
            f"Load average (1 min) {load_before:.1f} before, {load_after:.1f} after. messages/s: this writer from its "
            "first partition assignment (log line 'partitions assigned') to the supervisor seeing every committed offset "
            "at the end offsets ('replay: caught up', polled every 0.2 s); the next column from the process start, so "
            "startup and the consumer-group join are included. Ceiling: rows/s from all streams connected to the last "
            f"commit. Baseline: from its first message, on the first {args.baseline_messages:,} messages. % of COPY "
            "ceiling and x baseline use the first messages/s column. CPU µs/msg: user + system CPU time of each class "
            "of processes over the same window as messages/s, divided by the messages (ceiling: rows), from /proc "
            "every 0.1 s; PostgreSQL = the run's own backends, broker = the process listening on the bootstrap port; "
            "'-' where /proc cannot see them (not on this host). Peak RSS: VmHWM of each process from /proc. Rows "
            "marked 'best of' ran --repeat times, interleaved; the best is shown.",
            "",
            "PostgreSQL sessions of each run (pg_stat_activity sampled every 50 ms; verb:wait_event_type:wait_event, CPU = no wait):",
            "",
        ]
        output += [f"- {r.name}: {r.waits}" for r in results if r.waits]
        report.update(runs=[dataclasses.asdict(r) for r in results], load_average_end=load_after)

        if args.profile:
            os.makedirs(args.profile, exist_ok=True)
            raw = os.path.join(os.path.abspath(args.profile), "writer-2-workers.txt")
            log(f"profiling 2 workers with py-spy into {raw}")
            spy = os.path.join(os.path.dirname(CLI), "py-spy")
            measure_writer(setup, backlog, 2,
                           wrap=[spy, "record", "--subprocesses", "--format", "raw", "--rate", "200", "-o", raw, "--"])
            from bench.profile_summary import summarize

            output += ["", f"py-spy profile (collapsed stacks) of a 2-worker replay (not timed): {raw}", "", "```",
                       summarize(raw, 16), "```"]

        if args.latency:
            two = next((r for r in results if r.kind == "writer" and r.streams == 2), None)
            rate = args.latency_rate or (two.rate / 4 if two else 400.0)
            log(f"latency at {rate:,.0f} messages/s for {args.latency_seconds:.0f} s")
            lat = measure_latency(setup, args.size, rate, args.latency_seconds)
            log(f"  p50 {lat.p50_commit * 1000:.0f} ms, p99 {lat.p99_commit * 1000:.0f} ms")
            report["latency"] = dataclasses.asdict(lat)
            output += [
                "",
                f"Latency: the service (not replay), 2 workers, {lat.messages:,} messages at {lat.rate:,.0f}/s "
                f"({'a quarter of the 2-worker rate above' if not args.latency_rate else 'as requested'}); from LastChecked "
                "= the produce time to the row's commit (a deferred trigger records clock_timestamp() at COMMIT) and to "
                "the row's COPY (column default clock_timestamp()).",
                "",
                "| produce -> | p50 ms | p99 ms | max ms |",
                "|---|---:|---:|---:|",
                f"| row committed | {lat.p50_commit * 1000:.0f} | {lat.p99_commit * 1000:.0f} | {lat.max_commit * 1000:.0f} |",
                f"| row written by COPY | {lat.p50_copy * 1000:.0f} | {lat.p99_copy * 1000:.0f} | - |",
                "",
                f"SIGTERM -> exit {lat.exit_status} in {lat.stop_seconds:.1f} s.",
            ]

        if args.scaling:
            sizes = (1000, 3000) if args.quick else (20_000, 100_000, 300_000)
            prefilled = 20_000 if args.quick else 1_000_000
            scaling: list[Result] = []
            for count, rows_before in [(count, 0) for count in sizes] + [(sizes[1], prefilled)]:
                log(f"scaling: backlog {count:,}, {rows_before:,} rows already in new_reports")
                big = produce_backlog(broker, f"ccxw-bench.scale.{uuid.uuid4().hex[:8]}", count, args.message_mix,
                                      args.size, args.invalid_every, args.partitions)
                big.prepare(batch_size, build_batches=False)
                result = measure_writer(setup, big, 2, prefilled=rows_before)
                scaling.append(result)
                log(f"  {result.rate:,.0f} messages/s, worker RSS {[mib(k) for k in result.worker_rss_kib]} MiB; {result.note}")
            report["scaling"] = [dataclasses.asdict(r) for r in scaling]
            output += ["", "Scaling: this writer, 2 workers, --replay (messages/s after the group join):", ""]
            output += scaling_table(scaling)
            rss = [max(r.worker_rss_kib) for r in scaling[:len(sizes)] if r.worker_rss_kib]
            if len(rss) >= 2:
                output += ["", f"worker peak RSS, largest vs smallest backlog: {100 * (rss[-1] / rss[0] - 1):+.1f}%"]
    finally:
        if broker is not None:
            broker.delete_created_topics(log)
            broker.stop()
        target.cleanup()
    text = "\n".join(output)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
