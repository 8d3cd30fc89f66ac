"""Replay progress, reported by the supervisor from the counters the workers publish (multiprocess metrics).

Figures: messages done out of the total seen at start, both in offsets: the
offsets behind the workers' published positions, a finished partition (end
of the window, end of the partition) counting whole, the rate over the last ``RATE_WINDOW_S`` seconds, the
ETA at that rate, and the rejections so far. Shown as a live bar (tqdm, on
stderr) on a terminal, as one structured log line every ``interval``
seconds otherwise, and always as gauges on /metrics.
"""

from __future__ import annotations

import collections
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from prometheus_client import Gauge

log = logging.getLogger("writer.progress")

RATE_WINDOW_S = 30.0
SAMPLE_INTERVAL_S = 1.0  # how often the bar and the gauges are refreshed


@dataclass(frozen=True)
class Figures:
    done: int
    total: int
    rate: float  # messages per second, recent
    eta_s: float | None  # None while no rate is known
    rejected: int
    stored: int
    duplicates: int
    skipped: int
    elapsed_s: float

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0


def figures(totals: dict[str, float], done: int, total: int, rate: float, elapsed_s: float) -> Figures:
    """Figures from counter totals (``metrics.totals`` names), the offsets done and a rate; pure."""
    skipped = int(totals.get("replay_skipped_outside_window", 0))
    rejected = int(sum(v for k, v in totals.items() if k.startswith("messages_rejected{")))
    eta = (total - done) / rate if rate > 0 else (0.0 if done >= total else None)
    return Figures(done, total, rate, eta, rejected, int(totals.get("stored_messages", 0)),
                   int(totals.get("duplicates_skipped", 0)), skipped, elapsed_s)


class RateMeter:
    """Messages per second over the last ``window`` seconds of samples."""

    def __init__(self, window: float = RATE_WINDOW_S) -> None:
        self.window = window
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, now: float, done: int) -> float:
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        first_time, first_done = self._samples[0]
        return (done - first_done) / (now - first_time) if now > first_time else 0.0


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def describe(f: Figures) -> str:
    return (f"{f.done:,}/{f.total:,} messages ({f.percent:.1f}%), {f.rate:,.0f} messages/s, "
            f"ETA {format_duration(f.eta_s)}, rejected {f.rejected:,}")


def log_fields(f: Figures) -> dict:
    return {"done": f.done, "total": f.total, "percent": round(f.percent, 1), "rate_per_s": round(f.rate, 1),
            "eta_s": None if f.eta_s is None else round(f.eta_s, 1), "rejected": f.rejected, "stored": f.stored,
            "duplicates": f.duplicates, "skipped_outside_window": f.skipped, "elapsed_s": round(f.elapsed_s, 1)}


class ReplayGauges:
    """Replay progress on /metrics; set by the supervisor only."""

    def __init__(self, namespace: str, registry=None) -> None:
        n = lambda name: f"{namespace}_{name}" if namespace else name  # noqa: E731
        mode: Final = "mostrecent"
        self.total = Gauge(n("replay_messages_planned"), "Messages in the replay, seen at start",
                           multiprocess_mode=mode, registry=registry)
        self.done = Gauge(n("replay_messages_done"),
                          "Offsets of the replay done so far (a finished partition counts whole)",
                          multiprocess_mode=mode, registry=registry)
        self.rate = Gauge(n("replay_rate_messages_per_second"), "Replay rate over the last 30 s",
                          multiprocess_mode=mode, registry=registry)
        self.eta = Gauge(n("replay_eta_seconds"), "Estimated seconds left in the replay (-1: not known yet)",
                         multiprocess_mode=mode, registry=registry)
        self.partitions_left = Gauge(n("replay_partitions_remaining"), "Partitions the replay has not finished",
                                     multiprocess_mode=mode, registry=registry)

    def set(self, f: Figures, partitions_left: int | None) -> None:
        self.total.set(f.total)
        self.done.set(f.done)
        self.rate.set(f.rate)
        self.eta.set(-1 if f.eta_s is None else f.eta_s)
        if partitions_left is not None:
            self.partitions_left.set(partitions_left)


class _Bar:
    """tqdm on stderr, driven with our own figures (tqdm's own rate would only see our refreshes)."""

    def __init__(self, total: int, stream) -> None:
        from tqdm import tqdm

        # {desc} after the bar carries our figures: a raw string (tqdm's postfix would add ", ").
        self._bar = tqdm(total=total, file=stream, unit="msg", dynamic_ncols=True, leave=True, mininterval=0,
                         bar_format="replay {percentage:3.0f}%|{bar}| {desc}")

    def show(self, f: Figures) -> None:
        self._bar.n = f.done
        self._bar.set_description_str(describe(f), refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class ProgressReporter:
    """Called by the supervisor's loop (``tick``); samples at most every ``SAMPLE_INTERVAL_S``.

    ``mode``: "bar" (tqdm on ``stream``), "log" (a line every ``interval`` s) or "off" (gauges only).
    """

    def __init__(self, mode: str, interval: float, total: int, read_totals: Callable[[], dict[str, float]],
                 read_done: Callable[[], int], gauges: ReplayGauges | None,
                 clock: Callable[[], float] = time.monotonic, stream=None) -> None:
        self.mode = mode
        self.interval = interval
        self.total = total
        self._read_totals = read_totals
        self._read_done = read_done
        self._gauges = gauges
        self._clock = clock
        self._started = clock()
        self._meter = RateMeter()
        self._next_sample = self._started
        self._next_line = self._started + interval
        self._bar = _Bar(total, stream or sys.stderr) if mode == "bar" else None
        self.last: Figures | None = None
        self._logged: tuple[int, int] | None = None  # (done, rejected) of the last line: the final one is not repeated

    def tick(self, partitions_left: int | None = None, force: bool = False) -> Figures | None:
        now = self._clock()
        if self.mode == "off" and self._gauges is None:
            return None
        if not force and now < self._next_sample:
            return None
        self._next_sample = now + min(SAMPLE_INTERVAL_S, self.interval)
        done = self._read_done()
        current = figures(self._read_totals(), done, self.total, self._meter.add(now, done), now - self._started)
        self.last = current
        if self._gauges is not None:
            self._gauges.set(current, partitions_left)
        changed = self._logged != (current.done, current.rejected)
        if self._bar is not None:
            self._bar.show(current)
        elif self.mode == "log" and (now >= self._next_line or (force and changed)):
            self._next_line = now + self.interval
            self._logged = (current.done, current.rejected)
            log.info("replay progress: %s", describe(current), extra=log_fields(current))
        return current

    def close(self) -> None:
        """Show the final figures (the bar stays on screen) before the workers' last log lines."""
        self.tick(partitions_left=None, force=True)
        if self._bar is not None:
            self._bar.close()
