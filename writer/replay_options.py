"""The operator's replay flags, checked: times (RFC 3339 or a duration back from now), partitions, the window.

Pure: no Kafka, no database. ``writer/replay.py`` turns the options into a plan.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
from dataclasses import dataclass

_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
PROGRESS_MODES = ("auto", "bar", "log", "off")


class ReplayRequestError(Exception):
    """The replay asked for cannot be done as asked (bad time, unknown partition, ...); one line for the operator."""


def parse_time(text: str, now: datetime.datetime) -> datetime.datetime:
    """An RFC 3339 time with its offset (``2026-11-29T04:00:00Z``), or a duration back from ``now`` (``6h``, ``2d``,
    ``1d12h``; units s, m, h, d, w)."""
    value = text.strip()
    if _DURATION.fullmatch(value):
        seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(value))
        return now - datetime.timedelta(seconds=seconds)
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ReplayRequestError(
            f"{text!r} is neither an RFC 3339 time (2026-11-29T04:00:00Z) nor a duration back from now (6h, 2d)"
        ) from None
    if moment.tzinfo is None:
        raise ReplayRequestError(f"{text!r} has no time zone: add Z or an offset such as +01:00")
    return moment


_PARTITIONS_EXPECTED = "expected partition numbers separated by commas, e.g. 0,3"


def parse_partitions(text: str) -> tuple[int, ...]:
    """``0,3`` -> (0, 3): sorted, without repeats."""
    try:
        numbers = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise ReplayRequestError(f"--partitions {text!r}: {_PARTITIONS_EXPECTED}") from None
    if not numbers or min(numbers) < 0:
        raise ReplayRequestError(f"--partitions {text!r}: {_PARTITIONS_EXPECTED}")
    return tuple(sorted(numbers))


@dataclass(frozen=True)
class Window:
    """``[since_ms, until_ms)`` in Kafka timestamp milliseconds; None is open."""

    since_ms: int | None = None
    until_ms: int | None = None

    @property
    def bounded(self) -> bool:
        return self.since_ms is not None or self.until_ms is not None

    def place(self, timestamp_ms: int | None) -> int:
        """-1 before the window, 0 inside, 1 at or after its end. A message without a timestamp is outside (-1)
        whenever the window has a bound: it cannot be placed."""
        if not self.bounded:
            return 0
        if timestamp_ms is None or timestamp_ms < 0:
            return -1
        if self.since_ms is not None and timestamp_ms < self.since_ms:
            return -1
        if self.until_ms is not None and timestamp_ms >= self.until_ms:
            return 1
        return 0


def _ms(moment: datetime.datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class ReplayOptions:
    """The operator's replay flags, checked."""

    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    partitions: tuple[int, ...] | None = None
    dry_run: bool = False
    summary_json: str | None = None
    progress: str = "off"
    progress_interval: float = 10.0

    @property
    def window(self) -> Window:
        return Window(_ms(self.since) if self.since else None, _ms(self.until) if self.until else None)

    @property
    def self_assigned(self) -> bool:
        """Partitions chosen by the operator, or a dry run: assigned by the replay itself, no group membership."""
        return self.partitions is not None or self.dry_run


def check_group(options: ReplayOptions | None, group_id: str | None, live_group: str) -> None:
    """A windowed replay in a group commits the window's offsets there: never in the live service's group.

    Raises ReplayRequestError unless the replay assigns its partitions itself (--partitions, --dry-run) or
    --group-id names a group other than ``live_group`` ([broker] group).
    """
    if options is None or not options.window.bounded or options.self_assigned:
        return
    if group_id is None or group_id == live_group:
        raise ReplayRequestError(
            f"--since/--until in a consumer group would move the running service's group ({live_group}): "
            "name a replay group of its own with --group-id, or use --partitions or --dry-run")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("replay (with --replay)")
    group.add_argument("-since", "--since", metavar="TIME",
                       help="replay messages whose Kafka timestamp is at or after TIME "
                       "(RFC 3339, or 6h, 2d back from now)")
    group.add_argument("-until", "--until", metavar="TIME",
                       help="replay messages whose Kafka timestamp is before TIME; "
                       "each partition ends at the first later one")
    group.add_argument("-partitions", "--partitions", metavar="LIST",
                       help="replay only these partitions (e.g. 0,3), assigned directly: "
                       "no group membership, no commits")
    group.add_argument("-dry-run", "--dry-run", action="store_true",
                       help="parse and validate, check what is already stored, write nothing, commit nothing")
    group.add_argument("-summary-json", "--summary-json", metavar="FILE", help="also write the summary to FILE as JSON")
    group.add_argument("-progress", "--progress", choices=PROGRESS_MODES, default="auto",
                       help="auto (default): a bar on a terminal, else log lines; bar; log; off")
    group.add_argument("-progress-interval", "--progress-interval", metavar="SECONDS", type=float, default=10.0,
                       help="seconds between progress log lines (default 10)")


def options_from_args(args: argparse.Namespace, now: datetime.datetime,
                      stderr_is_terminal: bool) -> ReplayOptions | None:
    """The checked replay options, None without --replay; ReplayRequestError when the flags do not fit together."""
    flags = (("--since", args.since), ("--until", args.until), ("--partitions", args.partitions),
             ("--dry-run", args.dry_run), ("--summary-json", args.summary_json))
    given = [flag for flag, value in flags if value]
    if not args.replay:
        if given:
            raise ReplayRequestError(f"{', '.join(given)} only apply with --replay")
        return None
    since = parse_time(args.since, now) if args.since else None
    until = parse_time(args.until, now) if args.until else None
    if since is not None and until is not None and since >= until:
        raise ReplayRequestError(f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})")
    if not args.progress_interval > 0:
        raise ReplayRequestError("--progress-interval must be a positive number of seconds")
    if args.summary_json and not os.path.isdir(os.path.dirname(os.path.abspath(args.summary_json))):
        raise ReplayRequestError(f"--summary-json {args.summary_json!r}: its directory does not exist")
    progress = args.progress
    if progress == "auto":
        progress = "bar" if stderr_is_terminal else "log"
    return ReplayOptions(
        since=since, until=until, partitions=parse_partitions(args.partitions) if args.partitions else None,
        dry_run=args.dry_run, summary_json=args.summary_json, progress=progress,
        progress_interval=args.progress_interval,
    )
