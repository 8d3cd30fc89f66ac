"""Where ``parse_message``'s CPU goes, per message kind, its parts timed side by side in one run.

    .venv/bin/python -m bench.decode_compare [--rounds 9] [--seconds 0.2]

For each report size of the shipped sample reports (wrapped as writer.sample_messages wraps them, with the
``info`` and ``pass`` lists the writer strips), the benchmark's varied messages, and the same varied messages
as the pipeline writes them (json.dumps: spaces after separators, ASCII escapes, ``Metadata``, a newline):
CPU microseconds per call of ``parse_message``, of its decode alone (msgspec, the whole message), of writing
the stored report alone (``report_bytes``), of ``parse_timestamp``, and of ``orjson.loads`` of the whole
message (what the decode cost when every value was built). Each round times every contender in turn, so all
see the same machine load; the table shows the best round.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from collections.abc import Callable, Sequence

import orjson

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


def contenders(values: Sequence[bytes]) -> dict[str, tuple[Callable[[bytes], object], Sequence]]:
    decoded = {value: service._USUAL_DECODER.decode(value) for value in values}
    reports = [decoded[value].report for value in values]
    stamps = [decoded[value].last_checked for value in values]
    return {
        "parse_message": (lambda value: service.parse_message(value, 1, NOW), values),
        "decode": (service._USUAL_DECODER.decode, values),
        "report_bytes": (service.report_bytes, reports),
        "parse_timestamp": (service.parse_timestamp, stamps),
        "orjson.loads": (orjson.loads, values),
    }


def as_the_pipeline_writes(value: bytes) -> bytes:
    body = orjson.loads(value) | {"Metadata": {"gathering_time": "2026-01-01T10:00:00Z"}}
    return (json.dumps(body) + "\n").encode()


def workloads() -> dict[str, list[bytes]]:
    loads = {size: [encoded(number, size) for number in range(50)] for size in SIZES}
    varied = [varied_messages.varied(number) for number in range(200)]
    loads["varied (bench --message-mix varied)"] = varied
    loads["varied, as the pipeline writes it"] = [as_the_pipeline_writes(value) for value in varied]
    return loads


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.2, help="CPU seconds per contender per round")
    args = parser.parse_args(argv)
    names = ["parse_message", "decode", "report_bytes", "parse_timestamp", "orjson.loads"]
    print("| messages | bytes | stored bytes | " + " | ".join(f"{name} µs" for name in names) + " |")
    print("|---|---:|---:|" + "---:|" * len(names))
    for label, values in workloads().items():
        functions = contenders(values)
        stored = sum(len(service.parse_message(value, 1, NOW).report) for value in values) // len(values)
        best = dict.fromkeys(functions, float("inf"))
        for _ in range(args.rounds):
            for name, (function, inputs) in functions.items():
                best[name] = min(best[name], cpu_us_per_call(function, inputs, args.seconds))
        size = sum(map(len, values)) // len(values)
        print(f"| {label} | {size:,} | {stored:,} | " + " | ".join(f"{best[name]:.1f}" for name in names) + " |")


if __name__ == "__main__":
    main()
