"""The throughput, CPU, latency and memory targets, each verdict computed from the figures of one benchmark run
(pure functions)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.measure import Result

MIB = 1024  # KiB

PIPELINE_SHARE = 0.90  # 2 workers end to end / pipeline ceiling with 2 processes
COPY_SHARE = 0.50  # 2 workers end to end / COPY ceiling with 2 streams
WORKER_CPU_US = 30.0  # workers' CPU per message
IDLE_SHARE = 0.15  # each worker's idle share of the replay window (shown, not a target any more)
LATENCY_P99_S = 0.250  # produce -> committed row at a quarter of the 2-worker rate
RSS_GROWTH = 0.10  # worker peak RSS, largest backlog vs smallest
RSS_MAX_KIB = 170 * MIB


@dataclass
class Verdict:
    target: str
    result: str
    met: bool | None  # None: not measured in this run

    @property
    def answer(self) -> str:
        return {True: "**yes**", False: "**no**", None: "not measured"}[self.met]


def default_run(results: list[Result], kind: str, streams: int) -> Result | None:
    """The run of ``kind`` with ``streams`` workers/streams/processes at the writer's own consumer settings."""
    return next((r for r in results if r.kind == kind and r.streams == streams and not r.consumer_options), None)


def evaluate(results: list[Result], latency_p99_s: float | None, rss_runs: list[Result]) -> list[Verdict]:
    """``latency_p99_s``: p99 produce -> committed row measured at a quarter of the 2-worker rate (None: not
    measured); ``rss_runs``: 2-worker runs on backlogs of different sizes, smallest first."""
    writer = default_run(results, "writer", 2)
    pipeline = default_run(results, "pipeline", 2)
    copy = default_run(results, "ceiling", 2)
    verdicts = [
        _share(f"2 workers >= {100 * PIPELINE_SHARE:.0f}% of the pipeline ceiling (2 processes)", writer, pipeline,
               PIPELINE_SHARE),
        _share(f"2 workers >= {100 * COPY_SHARE:.0f}% of the COPY ceiling (2 streams)", writer, copy, COPY_SHARE),
    ]
    cpu = writer.cpu_us_per_message.get("workers") if writer else None
    verdicts.append(Verdict(
        f"workers' CPU <= {WORKER_CPU_US:.0f} µs per message (2 workers)",
        "-" if cpu is None else f"{cpu:,.0f} µs", None if cpu is None else cpu <= WORKER_CPU_US))
    idle = writer.idle_share if writer else []
    verdicts.append(Verdict(
        f"each worker idle <= {100 * IDLE_SHARE:.0f}% of the replay (2 workers)",
        ", ".join(f"{100 * share:.0f}%" for share in idle) or "-", max(idle) <= IDLE_SHARE if idle else None))
    verdicts.append(Verdict(
        f"p99 produce -> committed row <= {1000 * LATENCY_P99_S:.0f} ms at a quarter of the 2-worker rate",
        "-" if latency_p99_s is None else f"{1000 * latency_p99_s:.0f} ms",
        None if latency_p99_s is None else latency_p99_s <= LATENCY_P99_S))
    verdicts.append(_rss(rss_runs))
    return verdicts


def _share(target: str, writer: Result | None, ceiling: Result | None, needed: float) -> Verdict:
    if writer is None or ceiling is None:
        return Verdict(target, "-", None)
    share = writer.rate / ceiling.rate
    return Verdict(target, f"{100 * share:.0f}% ({writer.rate:,.0f} vs {ceiling.rate:,.0f}/s)", share >= needed)


def _rss(runs: list[Result]) -> Verdict:
    target = (f"worker peak RSS flat within {100 * RSS_GROWTH:.0f}% from the smallest to the largest backlog, "
              f"and <= {RSS_MAX_KIB // MIB} MiB")
    peaks = [(r.messages, max(r.worker_rss_kib)) for r in runs if r.worker_rss_kib]
    if len(peaks) < 2:
        return Verdict(target, "-", None)
    (small, first), (large, last) = peaks[0], peaks[-1]
    growth = last / first - 1
    highest = max(peak for _, peak in peaks)
    result = (f"{growth:+.1%} ({first / MIB:.0f} MiB at {small:,} -> {last / MIB:.0f} MiB at {large:,} messages); "
              f"highest {highest / MIB:.0f} MiB")
    return Verdict(target, result, abs(growth) <= RSS_GROWTH and highest <= RSS_MAX_KIB)


def table(verdicts: list[Verdict]) -> list[str]:
    lines = ["| target | this run | met? |", "|---|---|---|"]
    lines += [f"| {v.target} | {v.result} | {v.answer} |" for v in verdicts]
    return lines
