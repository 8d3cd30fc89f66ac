"""End-to-end benchmark of ccx-notification-writer: one command, one PostgreSQL server, the same messages.

    .venv/bin/python -m bench.e2e                       # 100k middle-size messages
    .venv/bin/python -m bench.e2e --quick               # CI: ~3000 messages, every section, small
    .venv/bin/python -m bench.e2e --latency --scaling --output bench/results.md

Side by side, in one run (see bench/README.md for what each figure means):

- ceiling: the writer's own COPY data (pre-built outside the timing) written straight into a
  fresh migrated new_reports, 1 and 2 streams, one transaction per batch of the writer's size;
- this writer: the backlog pre-produced to the Kafka mock (4 partitions, keyed), drained by
  ``ccx-notification-writer --replay`` with 1 and 2 workers, fresh database each time;
- baseline: the original algorithm (bench/baseline.py) on a subset of the same messages;
- --latency: produce -> committed row, p50/p99, at a quarter of the measured 2-worker rate;
- --scaling: 2 workers on backlogs of 20k/100k/300k messages, and on a table pre-filled with 1M rows.

Every run is verified (row count = valid messages, nothing stored twice, the stored
(cluster, kafka_offset) set = the produced one, reports intact); a wrong result exits 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
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

from bench import ceiling
from bench.common import (
    CLI, BenchFailure, MessageFactory, WaitSampler, fmt_rate, log_time, migrated_database,
    parse_log, prebuilt_batches, prefill, produce_backlog, run_replay, server_version, shrunk_report, verify,
    writer_env,
)
from writer import sample_messages
from writer.config import SCHEMA
from writer.kafka_mock import MockKafka

MIB = 1024


@dataclass
class Result:
    name: str
    messages: int
    rows: int
    seconds: float  # the figure the rate is computed from
    rate: float  # messages (ceiling: rows) per second
    seconds_total: float | None = None  # writer: process start -> caught up (group join included)
    rate_total: float | None = None
    streams: int = 1
    worker_rss_kib: list[int] = field(default_factory=list)
    supervisor_rss_kib: int | None = None
    waits: str = ""
    note: str = ""
    prefilled: str = "0"


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ---- the measurements ------------------------------------------------------------------------

def measure_ceiling(server, backlog, batch_size: int, streams: int, batches: list[bytes], keep: bool) -> Result:
    database = migrated_database(server, f"ceiling{streams}")
    try:
        with WaitSampler(database) as waits:
            seconds = ceiling.run(database.conninfo, batches, streams)
        rows = verify(database, backlog.expected_rows(), shrunk_report(backlog.size))
    finally:
        if not keep:
            database.drop()
    return Result(f"ceiling: COPY, {streams} stream{'s' if streams > 1 else ''}", rows, rows, seconds,
                  rows / seconds, streams=streams, waits=waits.summary())


def measure_writer(server, bootstrap, backlog, workers: int, extra_env: dict, keep: bool, label: str = "",
                   prefilled: int = 0, wrap: list[str] | None = None) -> Result:
    database = migrated_database(server, f"writer{workers}")
    try:
        if prefilled:
            log(f"pre-filling new_reports with {prefilled:,} rows")
            log(f"  done in {prefill(database, prefilled, backlog.size):.0f} s")
        env = writer_env(database, bootstrap, backlog.topic, workers, extra_env)
        with WaitSampler(database) as waits:
            run = run_replay(env, f"bench-{uuid.uuid4().hex[:10]}", timeout=120 + backlog.count / 100, wrap=wrap)
        if run.returncode != 0:
            tail = "\n".join(json.dumps(line) for line in run.log[-15:]) + "\n".join(run.stderr_other[-15:])
            raise BenchFailure(f"--replay with {workers} workers exited {run.returncode}:\n{tail}")
        summary = next((line for line in run.stdout.splitlines() if line.startswith("replay finished: ")), "")
        expected = f"messages {backlog.count}, stored {backlog.valid_count}, duplicates 0, rejected {backlog.count - backlog.valid_count}"
        if not summary.startswith("replay finished: " + expected):
            raise BenchFailure(f"unexpected replay summary {summary!r}, expected {expected!r}")
        rows = verify(database, backlog.expected_rows(), shrunk_report(backlog.size), prefilled)
    finally:
        if not keep:
            database.drop()
    caught_up = run.first("replay: caught up")
    assigned = run.all("partitions assigned")
    if caught_up is None or not assigned:
        raise BenchFailure("the writer's log lacks the assignment or caught-up lines")
    end = log_time(caught_up)
    after_join = end - min(log_time(line) for line in assigned)
    total = end - run.started
    supervisor_rss, workers_rss = run.peak_rss()
    failed_commits = len(run.all("offset commit failed"))
    events = f"{len(assigned)} assignment events" + (f", {failed_commits} failed offset commits" if failed_commits else "")
    return Result(
        label or f"this writer: --replay, {workers} worker{'s' if workers > 1 else ''}", backlog.count, rows,
        after_join, backlog.count / after_join, total, backlog.count / total, streams=workers,
        worker_rss_kib=workers_rss, supervisor_rss_kib=supervisor_rss, waits=waits.summary(),
        note=events,
    )


def measure_baseline(server, bootstrap, backlog, keep: bool) -> Result:
    database = migrated_database(server, "baseline")
    try:
        started = time.time()
        result = subprocess.run(
            [sys.executable, "-m", "bench.baseline", "--bootstrap", bootstrap, "--topic", backlog.topic,
             "--conninfo", database.conninfo, "--count", str(backlog.count)],
            capture_output=True, text=True, timeout=3600, cwd=os.path.dirname(os.path.dirname(__file__)),
        )
        if result.returncode != 0:
            raise BenchFailure(f"baseline failed: {result.stdout} {result.stderr[-2000:]}")
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        if figures["messages"] != backlog.count or figures["stored"] != backlog.valid_count:
            raise BenchFailure(f"baseline consumed/stored {figures}, expected {backlog.count}/{backlog.valid_count}")
        rows = verify(database, backlog.expected_rows(), shrunk_report(backlog.size))
    finally:
        if not keep:
            database.drop()
    seconds = figures["seconds_after_first"]
    return Result("baseline: original algorithm, 1 process", backlog.count, rows, seconds, backlog.count / seconds,
                  figures["seconds_total"], backlog.count / figures["seconds_total"], worker_rss_kib=[figures["peak_rss_kib"]],
                  note=f"{time.time() - started:.0f} s wall")


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


def measure_latency(server, bootstrap, size: str, rate: float, seconds: float, keep: bool, extra_env: dict) -> Latency:
    """The service (not replay) with 2 workers; messages at ``rate``/s, LastChecked = produce time."""
    from confluent_kafka import Producer

    database = migrated_database(server, "latency")
    topic = f"bench.latency.{uuid.uuid4().hex[:8]}"
    factory = MessageFactory(size)
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": "zstd", "linger.ms": 5})
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
    send(first_number)  # creates the topic before the service subscribes
    producer.flush(10)
    process = None
    try:
        with psycopg.connect(database.conninfo, autocommit=True) as connection:
            connection.execute(_LATENCY_SQL)
        env = writer_env(database, bootstrap, topic, 2, extra_env)
        process = subprocess.Popen([CLI, "--group-id", f"bench-{uuid.uuid4().hex[:10]}"], env=env, cwd="/tmp",
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
        reader.start()
        # Wait for the group to settle: both workers assigned, then no change for 2 s.
        deadline = time.time() + 60
        while time.time() < deadline:
            assigned = [line for line in parse_log("\n".join(lines))[0] if line.get("message", "").startswith("partitions assigned")]
            if len({line["pid"] for line in assigned}) >= 2 and time.time() - log_time(assigned[-1]) > 2:
                break
            time.sleep(0.2)
        else:
            raise BenchFailure("the service's workers did not both get partitions within 60 s")
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
        with psycopg.connect(database.conninfo, autocommit=True) as connection:
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
        verify(database, set(delivered.items()), shrunk_report(size))
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        if not keep:
            database.drop()
    commit = [float(c) for c, _ in measured]
    copy = [float(i) for _, i in measured]
    return Latency(rate, seconds, len(measured), statistics.median(commit), percentile(commit, 0.99), max(commit),
                   statistics.median(copy), percentile(copy, 0.99), status, stop_seconds)


# ---- output ----------------------------------------------------------------------------------

def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / MIB:.0f}"


def main_table(results: list[Result]) -> list[str]:
    ceilings = {r.streams: r for r in results if r.name.startswith("ceiling")}
    baseline = next((r for r in results if r.name.startswith("baseline")), None)
    lines = [
        "| run | messages | seconds | messages/s | messages/s incl. startup + group join | % of ceiling (same streams) | x baseline | peak RSS per worker, MiB | supervisor RSS, MiB | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        writer = r.name.startswith("this writer")
        percent = f"{100 * r.rate / ceilings[r.streams].rate:.0f}%" if writer and r.streams in ceilings else "-"
        multiple = f"{r.rate / baseline.rate:.1f}x" if baseline and not r.name.startswith("baseline") else "-"
        lines.append(
            f"| {r.name} | {r.messages:,} | {r.seconds:.1f} | {fmt_rate(r.rate)} | {fmt_rate(r.rate_total)} | {percent} | "
            f"{multiple} | {', '.join(mib(k) for k in r.worker_rss_kib) or '-'} | {mib(r.supervisor_rss_kib)} | {r.note} |"
        )
    return lines


def scaling_table(results: list[Result]) -> list[str]:
    lines = [
        "| backlog | rows already in new_reports | seconds | messages/s | microseconds per message | peak RSS per worker, MiB | notes |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(f"| {r.messages:,} | {r.prefilled} | {r.seconds:.1f} | {fmt_rate(r.rate)} | {1e6 / r.rate:.0f} | "
                     f"{', '.join(mib(k) for k in r.worker_rss_kib)} | {r.note} |")
    return lines


# ---- the command -----------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="backlog size (default 100000)")
    parser.add_argument("--size", default="middle_size", choices=sample_messages.SIZES, help="report size (default middle_size)")
    parser.add_argument("--quick", action="store_true", help="CI mode: ~3000 messages, every section, small")
    parser.add_argument("--scaling", action="store_true", help="backlogs of 20k/100k/300k and 0 vs 1M rows in new_reports")
    parser.add_argument("--latency", action="store_true", help="p50/p99 produce -> commit at a quarter of the 2-worker rate")
    parser.add_argument("--output", help="also write the tables (markdown) to this file")
    parser.add_argument("--baseline-messages", type=int, help="messages for the baseline (default min(messages, 10000))")
    parser.add_argument("--invalid-every", type=int, default=1000, help="every N-th message is invalid (0: none; default 1000)")
    parser.add_argument("--batch-size", type=int, help="[processing] batch_size for the writer and the ceiling")
    parser.add_argument("--batch-timeout-ms", type=int, help="[processing] batch_timeout_ms for the writer")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--latency-rate", type=float, help="messages/s for --latency (default: a quarter of the 2-worker rate)")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: ceiling,writer1,writer2,baseline")
    parser.add_argument("--profile", metavar="DIR", help="also run 2 workers under py-spy (not timed), output in DIR")
    parser.add_argument("--report-compression", choices=("pglz", "lz4"),
                        help="benchmark only: ALTER new_reports.report SET COMPRESSION in every database")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run ceiling, writer and baseline N times, interleaved, and keep each one's best (default 1)")
    parser.add_argument("--keep-databases", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages = min(args.messages, 3000)
        args.latency = args.scaling = True
        args.latency_seconds = min(args.latency_seconds, 6.0)
    if args.baseline_messages is None:
        args.baseline_messages = min(args.messages, 1000 if args.quick else 10_000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BenchFailure as failure:
        log(f"FAILED: {failure}")
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
    # stalls a run for ~44 s (bench/README.md, "Known problems"); a real broker has no such wait.
    extra_env["CCX_NOTIFICATION_WRITER__BROKER__SESSION_TIMEOUT_MS"] = "6000"
    batch_timeout = args.batch_timeout_ms or SCHEMA["processing"]["batch_timeout_ms"]
    if args.report_compression:
        from bench import common

        common.EXTRA_SCHEMA_SQL.append(f"ALTER TABLE new_reports ALTER COLUMN report SET COMPRESSION {args.report_compression}")
    workdir = tempfile.mkdtemp(prefix="ccxw-bench-")
    from bench.common import find_server

    server, embedded = find_server(workdir)
    output: list[str] = []
    try:
        with MockKafka() as kafka:
            bootstrap = kafka.bootstrap_servers
            header = (
                f"ccx-notification-writer end-to-end benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}: "
                f"{os.cpu_count()} cores, PostgreSQL {server_version(server)} on {server.host}:{server.port}, "
                f"Kafka: librdkafka mock (4 partitions); {args.messages:,} {args.size} messages "
                f"(every {args.invalid_every}th invalid), batch_size {batch_size}, batch_timeout_ms {batch_timeout}"
                + (f", report compression {args.report_compression} (benchmark ALTER)" if args.report_compression else "")
            )
            log(header)
            output += [header, ""]
            log(f"producing {args.messages:,} messages")
            backlog = produce_backlog(bootstrap, f"bench.main.{uuid.uuid4().hex[:8]}", args.messages, args.size, args.invalid_every)
            subset = None
            if "baseline" not in skip:
                subset = produce_backlog(bootstrap, f"bench.baseline.{uuid.uuid4().hex[:8]}", args.baseline_messages,
                                         args.size, args.invalid_every)
            batches = prebuilt_batches(backlog, batch_size) if "ceiling" not in skip else []
            runs: dict[str, list[Result]] = {}
            for attempt in range(1, args.repeat + 1):
                if args.repeat > 1:
                    log(f"round {attempt} of {args.repeat}")
                if "ceiling" not in skip:
                    for streams in (1, 2):
                        log(f"ceiling, {streams} stream(s)")
                        result = measure_ceiling(server, backlog, batch_size, streams, batches, args.keep_databases)
                        runs.setdefault(f"ceiling{streams}", []).append(result)
                        log(f"  {result.rate:,.0f} rows/s")
                for workers in (1, 2):
                    if f"writer{workers}" in skip:
                        continue
                    log(f"this writer, --replay, {workers} worker(s)")
                    result = measure_writer(server, bootstrap, backlog, workers, extra_env, args.keep_databases)
                    runs.setdefault(f"writer{workers}", []).append(result)
                    log(f"  {result.rate:,.0f} messages/s after the group join, {result.rate_total:,.0f} from start; {result.note}")
                if subset is not None:
                    log(f"baseline on {args.baseline_messages:,} messages")
                    result = measure_baseline(server, bootstrap, subset, args.keep_databases)
                    runs.setdefault("baseline", []).append(result)
                    log(f"  {result.rate:,.0f} messages/s")
            del batches
            results: list[Result] = []
            for attempts in runs.values():
                best = max(attempts, key=lambda r: r.rate)
                if len(attempts) > 1:
                    best.note = (best.note + "; " if best.note else "") + "best of " + "/".join(fmt_rate(r.rate) for r in attempts)
                results.append(best)
            output += main_table(results)
            output += [
                "",
                "messages/s: this writer from its first partition assignment (log line 'partitions assigned') to the "
                "supervisor seeing every committed offset at the end offsets ('replay: caught up', polled every 0.2 s); "
                "the next column from the process start, so startup and the ~3 s consumer-group join on the mock are "
                "included. Ceiling: rows/s from all streams connected to the last commit. Baseline: from its first "
                f"message, on the first {args.baseline_messages:,} messages. % of ceiling and x baseline use the first "
                "messages/s column. Peak RSS: VmHWM of each process, sampled every 0.1 s from /proc (not ru_maxrss, "
                "which a process started from the large benchmark process inherits across exec). Rows marked 'best of' "
                "ran --repeat times, interleaved; the best is shown.",
                "",
                "PostgreSQL sessions of each run (pg_stat_activity sampled every 50 ms; verb:wait_event_type:wait_event, CPU = no wait):",
                "",
            ]
            output += [f"- {r.name}: {r.waits}" for r in results if r.waits]

            if args.profile:
                os.makedirs(args.profile, exist_ok=True)
                raw = os.path.join(os.path.abspath(args.profile), "writer-2-workers.txt")
                log(f"profiling 2 workers with py-spy into {raw}")
                spy = os.path.join(os.path.dirname(CLI), "py-spy")
                measure_writer(server, bootstrap, backlog, 2, extra_env, args.keep_databases,
                               wrap=[spy, "record", "--subprocesses", "--format", "raw", "--rate", "200", "-o", raw, "--"])
                from bench.profile_summary import summarize

                output += ["", f"py-spy profile (collapsed stacks) of a 2-worker replay (not timed): {raw}", "", "```",
                           summarize(raw, 16), "```"]

            if args.latency:
                two = next((r for r in results if r.name.startswith("this writer") and r.streams == 2), None)
                rate = args.latency_rate or (two.rate / 4 if two else 400.0)
                log(f"latency at {rate:,.0f} messages/s for {args.latency_seconds:.0f} s")
                lat = measure_latency(server, bootstrap, args.size, rate, args.latency_seconds, args.keep_databases, extra_env)
                log(f"  p50 {lat.p50_commit * 1000:.0f} ms, p99 {lat.p99_commit * 1000:.0f} ms")
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
                for count in sizes:
                    log(f"scaling: backlog {count:,}")
                    big = produce_backlog(bootstrap, f"bench.scale.{uuid.uuid4().hex[:8]}", count, args.size, args.invalid_every)
                    result = measure_writer(server, bootstrap, big, 2, extra_env, args.keep_databases)
                    scaling.append(result)
                    log(f"  {result.rate:,.0f} messages/s, worker RSS {[mib(k) for k in result.worker_rss_kib]} MiB; {result.note}")
                middle = sizes[1]
                log(f"scaling: backlog {middle:,} into new_reports holding {prefilled:,} rows")
                big = produce_backlog(bootstrap, f"bench.scale.{uuid.uuid4().hex[:8]}", middle, args.size, args.invalid_every)
                result = measure_writer(server, bootstrap, big, 2, extra_env, args.keep_databases, prefilled=prefilled)
                result.prefilled = f"{prefilled:,}"
                scaling.append(result)
                log(f"  {result.rate:,.0f} messages/s")
                output += ["", "Scaling: this writer, 2 workers, --replay (messages/s after the group join):", ""]
                output += scaling_table(scaling)
                rss = [max(r.worker_rss_kib) for r in scaling[:len(sizes)] if r.worker_rss_kib]
                if len(rss) >= 2:
                    output += ["", f"worker peak RSS, largest vs smallest backlog: {100 * (rss[-1] / rss[0] - 1):+.1f}%"]
    finally:
        if embedded is not None:
            embedded.cleanup()
    text = "\n".join(output)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
