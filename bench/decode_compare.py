"""The service's message decode (orjson) and the candidate (msgspec), side by side in one run, per message size.

    .venv/bin/python -m bench.decode_compare [--rounds 9] [--seconds 0.2]

For each report size of the shipped sample reports (writer/sample_reports, wrapped as writer.sample_messages
wraps them, with the ``info`` and ``pass`` lists the writer strips) and for the benchmark's production-like
varied messages: CPU microseconds per ``parse_message`` call, the service's (writer.message) and the
candidate's (bench/candidate_decode.py), and ``orjson.loads`` of the whole message alone. Each round times
every contender in turn, so all see the same machine load; the table shows the best round (the least
disturbed). Per message only: the end-to-end figure is ``bench.e2e --decoder candidate`` (README, "Why the
message decode stays orjson").
"""

from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Callable, Sequence

import orjson

from bench import candidate_decode
from bench import messages as varied_messages
from writer import message as service
from writer.sample_messages import SIZES, encoded

NOW = datetime.datetime(2030, 1, 1)


def cpu_us_per_call(function: Callable[[bytes], object], values: Sequence[bytes], seconds: float) -> float:
    """CPU time per call over the values, repeated for about ``seconds`` of CPU."""
    calls = 0
    start = time.process_time()
    elapsed = 0.0
    while elapsed < seconds:
        for value in values:
            function(value)
        calls += len(values)
        elapsed = time.process_time() - start
    return elapsed / calls * 1e6


def contenders() -> dict[str, Callable[[bytes], object]]:
    return {
        "service": lambda value: service.parse_message(value, 1, NOW),
        "candidate": lambda value: candidate_decode.parse_message(value, 1, NOW),
        "orjson.loads": orjson.loads,
    }


def workloads() -> dict[str, list[bytes]]:
    loads = {size: [encoded(number, size) for number in range(50)] for size in SIZES}
    loads["varied (bench --message-mix varied)"] = [varied_messages.varied(number) for number in range(200)]
    return loads


def check_same_rows(values: Sequence[bytes]) -> int:
    """Both decodes store the same bytes for these messages; the stored size."""
    stored = 0
    for value in values:
        landed, candidate = service.parse_message(value, 1, NOW), candidate_decode.parse_message(value, 1, NOW)
        assert isinstance(landed, service.Row) and landed == candidate, (landed, candidate)
        stored += len(landed.report)
    return stored // len(values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.2, help="CPU seconds per contender per round")
    args = parser.parse_args(argv)
    functions = contenders()
    print("| messages | bytes | stored bytes | service (orjson) µs | candidate (msgspec) µs | candidate / service "
          "| orjson.loads µs |")
    print("|---|---|---|---|---|---|---|")
    for name, values in workloads().items():
        stored = check_same_rows(values)
        best = dict.fromkeys(functions, float("inf"))
        for _ in range(args.rounds):
            for label, function in functions.items():
                best[label] = min(best[label], cpu_us_per_call(function, values, args.seconds))
        size = sum(map(len, values)) // len(values)
        print(f"| {name} | {size:,} | {stored:,} | {best['service']:.1f} | {best['candidate']:.1f} | "
              f"{best['candidate'] / best['service']:.2f} | {best['orjson.loads']:.1f} |")


if __name__ == "__main__":
    main()
