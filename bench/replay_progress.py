"""Replay throughput with and without progress reporting, side by side in one run, with the benchmark's own code.

    .venv/bin/python -m bench.replay_progress --messages 100000 --rounds 3

Each round replays the same pre-produced backlog (bench.common.produce_backlog) into a fresh database with
2 workers, once per progress mode, in turn (bench.measure.measure_writer: verified rows, rate from the first
partition assignment to "replay: caught up"). The benchmark runs --replay without a terminal, so the flags
are appended through its ``wrap`` hook. Prints a markdown table: best and median per mode.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid

MODES = {
    "off": ["--progress", "off"],
    "log every 10 s (default without a terminal)": ["--progress", "log"],
    "log every 1 s": ["--progress", "log", "--progress-interval", "1"],
    "bar (refreshed every 1 s)": ["--progress", "bar"],
}


def _wrap(flags: list[str]) -> list[str]:
    # sh -c 'exec "$0" "$@" FLAGS' CLI --replay --group-id G: the writer itself, with FLAGS appended.
    return ["sh", "-c", 'exec "$0" "$@" ' + " ".join(flags)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    from bench import kafka
    from bench.common import produce_backlog
    from bench.measure import Setup, measure_writer
    from bench.pg import PgTarget

    # The mock ends rebalances on its session timer; 6 s is also the smallest session brokers accept.
    extra_env = {"CCX_NOTIFICATION_WRITER__BROKER__SESSION_TIMEOUT_MS": "6000"}
    target = PgTarget.local(False)
    broker = kafka.Broker.own_mock()
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        broker.check()
        setup = Setup(target, broker, broker.local_pid(), False, extra_env, partitions=4)
        print(f"producing {args.messages:,} messages", file=sys.stderr, flush=True)
        backlog = produce_backlog(broker, f"ccxw-bench.progress.{uuid.uuid4().hex[:8]}", args.messages,
                                  "uniform", "middle_size", 1000, 4)
        backlog.prepare(1000, build_batches=False)
        for round_number in range(1, args.rounds + 1):
            for mode, flags in MODES.items():
                started = time.monotonic()
                result = measure_writer(setup, backlog, args.workers, wrap=_wrap(flags))
                rates[mode].append(result.rate)
                print(f"round {round_number}, progress {mode}: {result.rate:,.0f} messages/s "
                      f"({time.monotonic() - started:.0f} s wall)", file=sys.stderr, flush=True)
    finally:
        broker.stop()
        target.cleanup()
    baseline = statistics.median(rates["off"])
    print(f"| progress | messages/s, best | median | median vs off | rounds ({args.messages:,} messages, "
          f"{args.workers} workers) |")
    print("|---|---:|---:|---:|---|")
    for mode, values in rates.items():
        median = statistics.median(values)
        print(f"| {mode} | {max(values):,.0f} | {median:,.0f} | {100 * (median / baseline - 1):+.1f}% | "
              f"{' / '.join(f'{v:,.0f}' for v in values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
