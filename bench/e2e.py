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

``--decoder candidate`` runs every writer process with the candidate message decode
(bench/candidate_decode.py, through bench/candidate_writer.py) instead of the service's: run it and a
plain run one after the other to compare the workers' CPU per message (README, "Why the message decode
stays orjson").

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
from bench.common import CANDIDATE_WRITER_COMMAND, CANDIDATE_WRITER_ENV, CLI, BenchFailure, fmt_rate, produce_backlog
from bench.latency import measure_latency
from bench.measure import ROLES, Result, Setup, log, measure_baseline, measure_ceiling, measure_writer
from bench.pg import PgTarget, TargetError
from writer import sample_messages
from writer.config import SCHEMA

MIB = 1024


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
        against_ceiling = r.kind == "writer" and r.streams in ceilings
        percent = f"{100 * r.rate / ceilings[r.streams].rate:.0f}%" if against_ceiling else "-"
        multiple = f"{r.rate / baseline.rate:.1f}x" if baseline and r.kind != "baseline" else "-"
        cpu = [micros(r.cpu_us_per_message.get(role)) for role in ROLES]
        rss = r.worker_rss_kib
        lines.append(
            f"| {r.name} | {r.messages:,} | {r.seconds:.1f} | {fmt_rate(r.rate)} | {fmt_rate(r.rate_total)} | "
            f"{percent} | {multiple} | {' | '.join(cpu)} | "
            f"{mib(max(rss)) if rss else '-'} | {mib(sum(rss)) if rss else '-'} | "
            f"{mib(r.supervisor_rss_kib)} | {r.note} |"
        )
    return lines


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
    parser.add_argument("--message-mix", choices=("uniform", "varied"),
                        help="uniform: one --size report every time; varied: production-like (distinct rules and "
                             "details). Default: varied with --bootstrap-servers, else uniform (the mock keeps ~5 MiB "
                             "per partition)")
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
                        help="comma-separated sections to skip: ceiling, baseline, writerN (e.g. writer1)")
    parser.add_argument("--profile", metavar="DIR", help="also run 2 workers under py-spy (not timed), output in DIR")
    parser.add_argument("--report-compression", choices=("pglz", "lz4"),
                        help="benchmark only: ALTER new_reports.report SET COMPRESSION in every database")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run ceiling, writer and baseline N times, interleaved, and keep each one's best "
                             "(default 1)")
    parser.add_argument("--decoder", choices=("service", "candidate"), default="service",
                        help="the writer's message decode: the service's (writer.message), or the measured candidate "
                             "(bench/candidate_decode.py)")
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
    # The mock's group coordinator ends a rebalance only when its timer (session timeout - 1 s)
    # fires, not when every member has rejoined; cooperative-sticky needs a second round when
    # partitions move between members. With the default 45 s session a late-joining worker
    # stalls a run for ~44 s (bench/README.md, "Known problems"). 6 s is also the smallest
    # session a Kafka broker accepts by default (group.min.session.timeout.ms), so it suits any broker.
    extra_env["CCX_NOTIFICATION_WRITER__BROKER__SESSION_TIMEOUT_MS"] = "6000"
    writer_command = (CLI,)
    if args.decoder == "candidate":
        extra_env |= CANDIDATE_WRITER_ENV
        writer_command = CANDIDATE_WRITER_COMMAND
    batch_timeout = args.batch_timeout_ms or SCHEMA["processing"]["batch_timeout_ms"]
    if args.report_compression:
        from bench import common

        common.EXTRA_SCHEMA_SQL.append(
            f"ALTER TABLE new_reports ALTER COLUMN report SET COMPRESSION {args.report_compression}")

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
            f"{os.cpu_count()} cores (load average {load_before:.1f} at the start), "
            f"Python {platform.python_version()}; "
            f"PostgreSQL {target.version()}, {target.describe()}; Kafka: {broker.label}, {brokers}; "
            f"topic {backlog.topic}: {backlog.partition_count} partitions, {backlog.topic_creation}; "
            f"{args.messages:,} {args.message_mix} messages"
            + (f" ({args.size})" if args.message_mix == "uniform" else " (production-like: distinct rules and details)")
            + f", every {args.invalid_every}th invalid, {backlog.produced.message_bytes / 2**20:,.0f} MiB produced "
            f"with {backlog.produced.compression}"
            + (" at librdkafka's default batch sizes" if broker.given else " in large batches")
            + (f", compression ratio {ratio:.1f}" if ratio else "")
            + f"; batch_size {batch_size}, batch_timeout_ms {batch_timeout}"
            + (f", report compression {args.report_compression} (benchmark ALTER)" if args.report_compression else "")
            + (", the writer with the candidate message decode (--decoder candidate)" if args.decoder == "candidate"
               else "")
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
                    log(f"ceiling, {workers} stream(s)")
                    result = measure_ceiling(setup, backlog, workers, batches)
                    runs.setdefault(f"ceiling{workers}", []).append(result)
                    log(f"  {result.rate:,.0f} rows/s")
                if f"writer{workers}" not in skip and "writer" not in skip:
                    log(f"this writer, --replay, {workers} worker(s)")
                    result = measure_writer(setup, backlog, workers)
                    runs.setdefault(f"writer{workers}", []).append(result)
                    log(f"  {result.rate:,.0f} messages/s after the group join, {result.rate_total:,.0f} from start; "
                        f"{result.note}")
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
                rates = "/".join(fmt_rate(r.rate) for r in attempts)
                best.note = (best.note + "; " if best.note else "") + "best of " + rates
            results.append(best)
        order = {"ceiling": 0, "writer": 1, "baseline": 2}
        results.sort(key=lambda r: (r.kind == "baseline", r.streams, order[r.kind]))
        load_after = os.getloadavg()[0]
        output += main_table(results)
        output += [
            "",
            f"Load average (1 min) {load_before:.1f} before, {load_after:.1f} after. messages/s: this writer from its "
            "first partition assignment (log line 'partitions assigned') to the supervisor seeing every committed "
            "offset at the end offsets ('replay: caught up', polled every 0.2 s); the next column from the process "
            "start, so "
            "startup and the consumer-group join are included. Ceiling: rows/s from all streams connected to the last "
            f"commit. Baseline: from its first message, on the first {args.baseline_messages:,} messages. % of COPY "
            "ceiling and x baseline use the first messages/s column. CPU µs/msg: user + system CPU time of each class "
            "of processes over the same window as messages/s, divided by the messages (ceiling: rows), from /proc "
            "(writer: sampled every 0.1 s, interpolated, '-' for a window under 2 s; ceiling: read at its start and "
            "end); PostgreSQL = the run's own backends, broker = the process listening on the bootstrap port, "
            "unless it is a port forwarder such as docker-proxy; '-' where /proc cannot see them (not on this host). "
            "Peak RSS: VmHWM of each process from /proc. Rows "
            "marked 'best of' ran --repeat times, interleaved; the best is shown.",
            "",
            "PostgreSQL sessions of each run (pg_stat_activity sampled every 50 ms; verb:wait_event_type:wait_event, "
            "CPU = no wait):",
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
                f"({'a quarter of the 2-worker rate above' if not args.latency_rate else 'as requested'}); from "
                "LastChecked = the produce time to the row's commit (a deferred trigger records clock_timestamp() at "
                "COMMIT) and to the row's COPY (column default clock_timestamp()).",
                "",
                "| produce -> | p50 ms | p99 ms | max ms |",
                "|---|---:|---:|---:|",
                f"| row committed | {lat.p50_commit * 1000:.0f} | {lat.p99_commit * 1000:.0f} | "
                f"{lat.max_commit * 1000:.0f} |",
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
                try:
                    big.prepare(batch_size, build_batches=False)
                    result = measure_writer(setup, big, 2, prefilled=rows_before)
                finally:
                    broker.delete_topics([big.topic], log)
                scaling.append(result)
                worker_rss = [mib(k) for k in result.worker_rss_kib]
                log(f"  {result.rate:,.0f} messages/s, worker RSS {worker_rss} MiB; {result.note}")
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
