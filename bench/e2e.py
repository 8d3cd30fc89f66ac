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
import sys
import uuid

from confluent_kafka import KafkaException

from bench import kafka
from bench.common import (
    CLI,
    Backlog,
    BenchFailure,
    fmt_rate,
    produce_backlog,
)
from bench.latency import measure_latency
from bench.measure import (
    ROLES,
    Result,
    Setup,
    log,
    measure_baseline,
    measure_ceiling,
    measure_pipeline,
    measure_writer,
    measure_writer_unstalled,
)
from bench.pg import PgTarget, TargetError
from bench.targets import default_run, evaluate
from bench.targets import table as targets_table
from writer import sample_messages
from writer.config import SCHEMA
from writer.kafka_options import CONSUMER_OPTIONS_VARIABLE

MIB = 1024


# ---- output ----------------------------------------------------------------------------------

def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / MIB:.0f}"


def micros(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def main_table(results: list[Result]) -> list[str]:
    ceilings = {r.streams: r for r in results if r.kind == "ceiling"}
    pipelines = {r.streams: r for r in results if r.kind == "pipeline"}
    baseline = next((r for r in results if r.kind == "baseline"), None)
    lines = [
        "| run | messages | seconds | messages/s | messages/s from process start | % of pipeline ceiling "
        "(same processes) | % of COPY ceiling (same streams) | x baseline | CPU µs/msg: workers | supervisor "
        "| PostgreSQL | broker | idle %: each worker | peak RSS MiB: largest worker | all workers | supervisor "
        "| notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]

    def share(r: Result, ceiling: Result | None) -> str:
        return f"{100 * r.rate / ceiling.rate:.0f}%" if r.kind == "writer" and ceiling else "-"

    for r in results:
        multiple = f"{r.rate / baseline.rate:.1f}x" if baseline and r.kind != "baseline" else "-"
        cpu = [micros(r.cpu_us_per_message.get(role)) for role in ROLES]
        rss = r.worker_rss_kib
        idle = ", ".join(f"{100 * value:.0f}" for value in r.idle_share) or "-"
        lines.append(
            f"| {r.name} | {r.messages:,} | {r.seconds:.1f} | {fmt_rate(r.rate)} | {fmt_rate(r.rate_total)} | "
            f"{share(r, pipelines.get(r.streams))} | {share(r, ceilings.get(r.streams))} | {multiple} | "
            f"{' | '.join(cpu)} | {idle} | "
            f"{mib(max(rss)) if rss else '-'} | {mib(sum(rss)) if rss else '-'} | "
            f"{mib(r.supervisor_rss_kib)} | {r.note} |"
        )
    return lines


TABLE_NOTES = (
    "Load average (1 min) {load_before:.1f} before, {load_after:.1f} after. messages/s: this writer from its "
    "first partition assignment (log line 'partitions assigned') to the supervisor seeing every committed offset at "
    "the end offsets ('replay: caught up', polled every 0.2 s); the next column from the process start, so startup "
    "and the consumer-group join are included. COPY ceiling: rows/s of the writer's COPY data, built beforehand, "
    "from all streams connected to the last commit. Pipeline ceiling: messages/s through the worker's own parse "
    "and write stages (stages.parse.parse_batch, stages.write.RetryingWrite over BatchWriter) from message bytes "
    "in memory, no Kafka, from all processes connected to the last commit. Baseline: from its first message, on "
    "the first {baseline:,} messages. "
    "% of ceilings and x baseline use the first messages/s column. CPU µs/msg: user + system CPU time of each class "
    "of processes (all their threads, librdkafka's included) over the same window as messages/s, divided by the "
    "messages (COPY ceiling: rows), from /proc (writer: sampled every 0.1 s, interpolated, '-' for a window under "
    "2 s; ceilings: read at their start and end); PostgreSQL = the run's own backends, broker = the process "
    "listening on the bootstrap port, unless it is a port forwarder such as docker-proxy; '-' where /proc cannot "
    "see them (not on this host). Idle %: the share of the same window each worker's main thread (poll, parse, "
    "write, commit) was neither on a CPU nor waiting for one (run time and run-queue wait from "
    "/proc/PID/schedstat). Peak RSS: VmHWM of each process from /proc. Rows marked 'best of' ran --repeat times, "
    "interleaved; the best is shown; rows with [KEY=VALUE] ran with that librdkafka consumer option "
    "(--consumer-sweep)."
)


def scaling_table(results: list[Result]) -> list[str]:
    lines = [
        "| backlog | rows already in new_reports | seconds | messages/s | microseconds per message | peak RSS per "
        "worker, MiB | notes |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(f"| {r.messages:,} | {r.prefilled:,} | {r.seconds:.1f} | {fmt_rate(r.rate)} | "
                     f"{1e6 / r.rate:.0f} | {', '.join(mib(k) for k in r.worker_rss_kib)} | {r.note} |")
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


def backlog_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of backlog sizes: {text!r}") from None
    if len(sizes) < 2 or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"two or more backlog sizes of 1 or more: {text!r}")
    return sizes


def consumer_option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"not KEY=VALUE: {text!r}")
    return key.strip(), value.strip()


def consumer_sweep(text: str) -> tuple[str, list[str]]:
    key, value = consumer_option(text)
    values = [part.strip() for part in value.split(",") if part.strip()]
    return key, list(dict.fromkeys(values))


def consumer_variants(sweeps: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
    """The consumer options each writer run sets over the writer's own (and --consumer-option's): none, then
    one swept option at each of its values."""
    variants: list[dict[str, str]] = [{}]
    for key, values in sweeps:
        variants += [{key: value} for value in values if {key: value} not in variants]
    return variants


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n\n")[0])
    where = parser.add_argument_group("where to run (default: a Kafka mock it starts, the local PostgreSQL)")
    where.add_argument("--bootstrap-servers", metavar="HOST:PORT",
                       help="a Kafka cluster of yours; TLS/SASL come from the service's configuration "
                            "(CCX_NOTIFICATION_WRITER_CONFIG_FILE or config.toml, CCX_NOTIFICATION_WRITER__BROKER__*, "
                            "ACG_CONFIG)")
    where.add_argument("--postgres", metavar="CONNINFO",
                       help="a PostgreSQL of yours (libpq conninfo or URI); PG* variables and ~/.pgpass apply")
    where.add_argument("--schema-only", action="store_true",
                       help="create a schema per run in the --postgres database instead of a database per run")
    where.add_argument("--partitions", type=int, default=4, help="partitions of the benchmark's topics (default 4)")
    parser.add_argument("--workers", type=worker_counts, default=[1, 2], metavar="N,N,...",
                        help="worker counts to sweep, each from the same backlog (default 1,2)")
    parser.add_argument("--messages", type=int, default=100_000, help="backlog size (default 100000)")
    parser.add_argument("--message-mix", choices=("uniform", "varied"), default="varied",
                        help="varied: production-like, distinct rules and details (default); uniform: one --size "
                             "report every time")
    parser.add_argument("--compression", choices=("none", "gzip", "snappy", "lz4", "zstd"),
                        help="the producer's compression.type for the backlogs (default: none, as the real producer, "
                             "on --bootstrap-servers; zstd in large batches on the benchmark's own mock)")
    parser.add_argument("--consumer-option", action="append", default=[], type=consumer_option, metavar="KEY=VALUE",
                        help="a librdkafka consumer option for every writer run (repeatable)")
    parser.add_argument("--consumer-sweep", action="append", default=[], type=consumer_sweep,
                        metavar="KEY=VALUE[,VALUE...]",
                        help="also run the writer with each of these values of one librdkafka consumer option, "
                             "side by side with its own settings, same backlog (repeatable: one option at a time)")
    parser.add_argument("--rss-backlogs", type=backlog_sizes, metavar="N,N,...",
                        help="2 workers on backlogs of these sizes, for the peak-RSS target (e.g. 20000,300000)")
    parser.add_argument("--size", default="middle_size", choices=sample_messages.SIZES,
                        help="report size of uniform messages and of --latency (default middle_size)")
    parser.add_argument("--quick", action="store_true", help="CI mode: ~3000 messages, every section, small")
    parser.add_argument("--scaling", action="store_true",
                        help="backlogs of 20k/100k/300k and 0 vs 1M rows in new_reports")
    parser.add_argument("--latency", action="store_true",
                        help="p50/p99 produce -> commit at a quarter of the 2-worker rate")
    parser.add_argument("--output", help="also write the tables (markdown) to this file")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON to this file")
    parser.add_argument("--baseline-messages", type=int,
                        help="messages for the baseline (default min(messages, 10000))")
    parser.add_argument("--invalid-every", type=int, default=1000,
                        help="every N-th message is invalid (0: none; default 1000)")
    parser.add_argument("--batch-size", type=int, help="[processing] batch_size for the writer and the ceiling")
    parser.add_argument("--batch-timeout-ms", type=int, help="[processing] batch_timeout_ms for the writer")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--latency-rate", type=float,
                        help="messages/s for --latency (default: a quarter of the 2-worker rate)")
    parser.add_argument("--skip", default="",
                        help="comma-separated sections to skip: ceiling, pipeline, baseline, writerN (e.g. writer1)")
    parser.add_argument("--profile", metavar="DIR", help="also run 2 workers under py-spy (not timed), output in DIR")
    parser.add_argument("--report-compression", choices=("pglz", "lz4"),
                        help="benchmark only: ALTER new_reports.report SET COMPRESSION in every database")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run ceiling, writer and baseline N times, interleaved, and keep each one's best "
                             "(default 1)")
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
    return args


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, through every cleanup: the writer's processes, the topics, the
    # databases (schemas) and the mock.
    signal.signal(signal.SIGTERM, _terminated)
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
    # librdkafka's mock coordinator refuses a follower's SyncGroup that comes after the leader's, and
    # makes the rejoin (as any join to a formed group) wait session timeout - 1 s: a worker then has no
    # partition that long (bench/README.md, "Known problems"); measure_writer_unstalled runs such a
    # start again. 6 s bounds the wait, and is the smallest session a Kafka broker accepts by default
    # (group.min.session.timeout.ms), so it suits any broker.
    extra_env["CCX_NOTIFICATION_WRITER__BROKER__SESSION_TIMEOUT_MS"] = "6000"
    writer_command = (CLI,)
    batch_timeout = args.batch_timeout_ms or SCHEMA["processing"]["batch_timeout_ms"]
    if args.report_compression:
        from bench import common

        common.EXTRA_SCHEMA_SQL.append(
            f"ALTER TABLE new_reports ALTER COLUMN report SET COMPRESSION {args.report_compression}")
    if args.consumer_option:
        extra_env[CONSUMER_OPTIONS_VARIABLE] = json.dumps(dict(args.consumer_option))
    variants = consumer_variants(args.consumer_sweep)

    if args.postgres:
        target = PgTarget.from_conninfo(args.postgres, args.schema_only)
    else:
        target = PgTarget.local(args.schema_only)
    broker = None
    output: list[str] = []
    report: dict = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "arguments": {
        k: v for k, v in vars(args).items() if k not in ("postgres",)}}
    try:
        broker = (kafka.Broker.given_by_user(args.bootstrap_servers) if args.bootstrap_servers
                  else kafka.Broker.own_mock())
        brokers = broker.check()
        setup = Setup(target, broker, broker.local_pid(), args.keep_databases, extra_env, args.partitions,
                      writer_command)
        load_before = os.getloadavg()[0]
        log(f"PostgreSQL {target.version()} at {target.describe()}; Kafka {broker.label}, {brokers}")

        def backlog_of(kind: str, count: int, partitions_for: int | None = None) -> Backlog:
            """``partitions_for``: size the topic for a backlog this large (one partition count for a sweep)."""
            partitions = broker.partitions_for(partitions_for or count, args.message_mix, args.partitions)
            log(f"producing {count:,} {args.message_mix} messages ({kind}, {partitions} partitions)")
            return produce_backlog(broker, f"ccxw-bench.{kind}.{uuid.uuid4().hex[:8]}", count, args.message_mix,
                                   args.size, args.invalid_every, partitions, args.compression)

        backlog = backlog_of("main", args.messages)
        ratio = backlog.produced.compression_ratio
        subset = None
        if "baseline" not in skip:
            subset = backlog_of("baseline", args.baseline_messages)
            subset.prepare(batch_size, build_batches=False)
        log("building the expected rows" + (" and the ceilings' inputs" if not {"ceiling", "pipeline"} >= skip
                                            else ""))
        prepared = backlog.prepare(batch_size, build_batches="ceiling" not in skip,
                                   keep_messages="pipeline" not in skip)
        header = (
            f"ccx-notification-writer end-to-end benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}: "
            f"{os.cpu_count()} cores (load average {load_before:.1f} at the start), "
            f"Python {platform.python_version()}; "
            f"PostgreSQL {target.version()}, {target.describe()}; Kafka: {broker.label}, {brokers}; "
            f"topic {backlog.topic}: {backlog.partition_count} partitions, {backlog.topic_creation}; "
            f"{args.messages:,} {args.message_mix} messages"
            + (f" ({args.size})" if args.message_mix == "uniform" else " (production-like: distinct rules and details)")
            + f", every {args.invalid_every}th invalid, {backlog.produced.message_bytes / 2**20:,.0f} MiB produced "
            f"with compression {backlog.produced.compression}"
            + (" at librdkafka's default batch sizes" if broker.given else " in large batches")
            + (f", compression ratio {ratio:.1f}" if ratio else "")
            + f"; batch_size {batch_size}, batch_timeout_ms {batch_timeout}"
            + (f", report compression {args.report_compression} (benchmark ALTER)" if args.report_compression else "")
            + (f"; consumer options {dict(args.consumer_option)}" if args.consumer_option else "")
        )
        log(header)
        output += [header, ""]
        report.update(header=header, cores=os.cpu_count(), load_average_start=load_before,
                      postgres={"version": target.version(), "where": target.describe(), "local": target.local_host},
                      kafka={"broker": broker.label, "local_pid_seen": setup.broker_pid is not None},
                      backlog={"topic": backlog.topic, "partitions": backlog.partition_count,
                               "topic_creation": backlog.topic_creation,
                               "messages": backlog.count, "valid": backlog.valid_count, "mix": args.message_mix,
                               "message_bytes": backlog.produced.message_bytes,
                               "bytes_sent": backlog.produced.wire_bytes,
                               "compression": backlog.produced.compression, "compression_ratio": ratio})

        runs: dict[str, list[Result]] = {}
        for attempt in range(1, args.repeat + 1):
            if args.repeat > 1:
                log(f"round {attempt} of {args.repeat}")
            for workers in args.workers:
                if "ceiling" not in skip:
                    log(f"COPY ceiling, {workers} stream(s)")
                    result = measure_ceiling(setup, backlog, workers, prepared.batches)
                    runs.setdefault(f"ceiling{workers}", []).append(result)
                    log(f"  {result.rate:,.0f} rows/s")
                if "pipeline" not in skip:
                    log(f"pipeline ceiling, {workers} process(es)")
                    result = measure_pipeline(setup, backlog, workers, prepared.messages, batch_size)
                    runs.setdefault(f"pipeline{workers}", []).append(result)
                    log(f"  {result.rate:,.0f} messages/s")
                if f"writer{workers}" not in skip and "writer" not in skip:
                    for number, options in enumerate(variants):
                        log(f"this writer, --replay, {workers} worker(s)" + (f", {options}" if options else ""))
                        result = measure_writer_unstalled(setup, backlog, workers, consumer_options=options)
                        runs.setdefault(f"writer{workers}-{number}", []).append(result)
                        log(f"  {result.rate:,.0f} messages/s after the group join, {result.rate_total:,.0f} from "
                            f"start; {result.note}")
            if subset is not None:
                log(f"baseline on {args.baseline_messages:,} messages")
                result = measure_baseline(setup, subset)
                runs.setdefault("baseline", []).append(result)
                log(f"  {result.rate:,.0f} messages/s")
        del prepared
        results: list[Result] = []
        for attempts in runs.values():
            best = max(attempts, key=lambda r: r.rate)
            if len(attempts) > 1:
                rates = "/".join(fmt_rate(r.rate) for r in attempts)
                best.note = (best.note + "; " if best.note else "") + "best of " + rates
            results.append(best)
        order = {"ceiling": 0, "pipeline": 1, "writer": 2, "baseline": 3}
        results.sort(key=lambda r: (r.kind == "baseline", r.streams, order[r.kind], bool(r.consumer_options)))
        load_after = os.getloadavg()[0]
        output += main_table(results)
        output += ["", *TABLE_NOTES.format(baseline=args.baseline_messages, load_before=load_before,
                                          load_after=load_after).split("\n")]
        output += ["", "Where the workers' CPU goes, by thread (µs per message): " + (", ".join(
            f"{r.name}: " + ", ".join(f"{kind} {value:,.0f}" for kind, value in r.thread_cpu_us_per_message.items())
            for r in results if r.thread_cpu_us_per_message) or "- (windows under 2 s)") + "."]
        output += ["", "PostgreSQL sessions of each run (pg_stat_activity sampled every 50 ms; "
                   "verb:wait_event_type:wait_event, CPU = no wait):", ""]
        output += [f"- {r.name}: {r.waits}" for r in results if r.waits]
        report.update(runs=[dataclasses.asdict(r) for r in results], load_average_end=load_after)

        if args.profile:
            os.makedirs(args.profile, exist_ok=True)
            raw = os.path.join(os.path.abspath(args.profile), "writer-2-workers.txt")
            log(f"profiling 2 workers with py-spy into {raw}")
            spy = os.path.join(os.path.dirname(CLI), "py-spy")
            measure_writer(setup, backlog, 2,
                           wrap=[spy, "record", "--subprocesses", "--idle", "--threads", "--format", "raw", "--rate",
                                 "200", "-o", raw, "--"])
            from bench.profile_summary import summarize

            output += ["", f"py-spy profile (collapsed stacks, idle samples included: wall time, per thread) of a "
                       f"2-worker replay (not timed): {raw}", "", "```",
                       summarize(raw, 16), "```"]

        latency_p99 = None
        if args.latency:
            two = default_run(results, "writer", 2)
            rate = args.latency_rate or (two.rate / 4 if two else 400.0)
            log(f"latency at {rate:,.0f} messages/s for {args.latency_seconds:.0f} s")
            lat = measure_latency(setup, args.message_mix, args.size, rate, args.latency_seconds, args.compression)
            log(f"  p50 {lat.p50_commit * 1000:.0f} ms, p99 {lat.p99_commit * 1000:.0f} ms")
            if two is not None and not args.latency_rate:
                latency_p99 = lat.p99_commit
            report["latency"] = dataclasses.asdict(lat)
            output += [
                "",
                f"Latency: the service (not replay), 2 workers, {lat.messages:,} {args.message_mix} messages at "
                f"{lat.rate:,.0f}/s ({'as requested' if args.latency_rate else 'a quarter of the 2-worker rate above'}"
                "); from LastChecked = the produce time to the row's commit (a deferred trigger records "
                "clock_timestamp() at COMMIT) and to the row's COPY (column default clock_timestamp()).",
                "",
                "| produce -> | p50 ms | p99 ms | max ms |",
                "|---|---:|---:|---:|",
                f"| row committed | {lat.p50_commit * 1000:.0f} | {lat.p99_commit * 1000:.0f} | "
                f"{lat.max_commit * 1000:.0f} |",
                f"| row written by COPY | {lat.p50_copy * 1000:.0f} | {lat.p99_copy * 1000:.0f} | - |",
                "",
                f"SIGTERM -> exit {lat.exit_status} in {lat.stop_seconds:.1f} s.",
            ]

        rss_runs: list[Result] = []
        if args.scaling:
            sizes = [1000, 3000] if args.quick else [20_000, 100_000, 300_000]
            prefilled = 20_000 if args.quick else 1_000_000
            scaling = [measure_backlog(setup, backlog_of, batch_size, count, max(sizes), rows_before)
                       for count, rows_before in [(count, 0) for count in sizes] + [(sizes[1], prefilled)]]
            report["scaling"] = [dataclasses.asdict(r) for r in scaling]
            output += ["", "Scaling: this writer, 2 workers, --replay (messages/s after the group join):", ""]
            output += scaling_table(scaling)
            rss_runs = scaling[:len(sizes)]
        if args.rss_backlogs:
            rss_runs = [measure_backlog(setup, backlog_of, batch_size, count, max(args.rss_backlogs))
                        for count in args.rss_backlogs]
            report["rss_backlogs"] = [dataclasses.asdict(r) for r in rss_runs]
            output += ["", "Peak RSS: this writer, 2 workers, --replay on backlogs of different sizes (one partition "
                       "count for all):", ""]
            output += scaling_table(rss_runs)

        verdicts = evaluate(results, latency_p99, rss_runs)
        report["targets"] = [dataclasses.asdict(v) for v in verdicts]
        output += ["", "Targets, each computed from this run; 'not measured' where the run lacked the "
                   "figure (--latency, --scaling or --rss-backlogs, or a window under 2 s):", ""]
        output += targets_table(verdicts)
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


def measure_backlog(setup: Setup, backlog_of, batch_size: int, count: int, largest: int, prefilled: int = 0) -> Result:
    """2 workers on a backlog of ``count`` messages in a topic sized for ``largest`` (one partition count for a
    sweep), its topic deleted right after."""
    log(f"backlog {count:,}, {prefilled:,} rows already in new_reports")
    backlog = backlog_of("scale", count, largest)
    try:
        backlog.prepare(batch_size, build_batches=False)
        result = measure_writer_unstalled(setup, backlog, 2, prefilled=prefilled)
    finally:
        setup.broker.delete_topics([backlog.topic], log)
    log(f"  {result.rate:,.0f} messages/s, worker RSS {[mib(k) for k in result.worker_rss_kib]} MiB; {result.note}")
    return result


if __name__ == "__main__":
    sys.exit(main())
