"""N starts in a row of the writer (``--replay``, a fresh group and database each) on one backlog: time to drain each.

    .venv/bin/python -m bench.starts --starts 20                        # 2 workers, 60,000 messages, 4 partitions
    .venv/bin/python -m bench.starts --starts 10 --session-timeout-ms 45000

Per start: seconds from the process start until every offset is committed, messages/s over that time,
and how long after the first worker's partitions the last worker got its first ones (a group-join stall,
bench/README.md "Known problems"). Without --session-timeout-ms the service's default applies.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import uuid

from bench import kafka
from bench.common import BenchFailure, produce_backlog
from bench.measure import Setup, join_stalled, log, measure_writer
from bench.pg import PgTarget
from writer.config import SCHEMA


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.starts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--message-mix", choices=("uniform", "varied"), default="uniform",
                        help="uniform (default): one report size, 4 partitions hold the backlog on the mock")
    parser.add_argument("--session-timeout-ms", type=int, help="[broker] session_timeout_ms (default: the service's)")
    args = parser.parse_args(argv)
    extra_env = {}
    if args.session_timeout_ms:
        extra_env["CCX_NOTIFICATION_WRITER__BROKER__SESSION_TIMEOUT_MS"] = str(args.session_timeout_ms)
    session = args.session_timeout_ms or SCHEMA["broker"]["session_timeout_ms"]
    target = PgTarget.local(schema_only=False)
    broker = None
    totals, stalls = [], 0
    try:
        broker = kafka.Broker.own_mock()
        broker.check()
        setup = Setup(target, broker, broker.local_pid(), False, extra_env, 4)
        partitions = broker.partitions_for(args.messages, args.message_mix, 4)
        backlog = produce_backlog(broker, f"ccxw-starts.{uuid.uuid4().hex[:8]}", args.messages, args.message_mix,
                                  "middle_size", 1000, partitions)
        backlog.prepare(SCHEMA["processing"]["batch_size"], build_batches=False)
        log(f"{args.starts} starts of {args.workers} workers on {args.messages:,} {args.message_mix} messages, "
            f"{backlog.partition_count} partitions, session_timeout_ms {session}")
        for number in range(1, args.starts + 1):
            result = measure_writer(setup, backlog, args.workers)
            stalled = join_stalled(result)
            stalls += stalled
            totals.append(result.seconds_total or 0.0)
            spread = "never" if result.join_spread is None else f"{result.join_spread:.1f} s"
            print(f"start {number:2d}: drained in {result.seconds_total:.1f} s ({result.rate_total:,.0f} msg/s from "
                  f"process start); last worker's first partitions after {spread}{'  STALL' if stalled else ''}; "
                  f"{result.note}", flush=True)
    except BenchFailure as failure:
        log(f"FAILED: {failure}")
        return 1
    finally:
        if broker is not None:
            broker.delete_created_topics(log)
            broker.stop()
        target.cleanup()
    print(f"{stalls} of {len(totals)} starts stalled; drain seconds: median {statistics.median(totals):.1f}, "
          f"max {max(totals):.1f} (session_timeout_ms {session})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
