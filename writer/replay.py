"""What a replay covers: its flags, its time window, and each partition's start and end offsets.

A replay covers, for each partition, the offsets ``[start, end)``:

- ``end`` is the high watermark seen at start: messages produced later are
  not part of the replay;
- ``start`` is the first offset at or after ``--since`` (Kafka's
  ``offsets_for_times``) when given; where the broker does not answer it
  usefully (librdkafka's mock answers -1 for every time, and some brokers
  answer outside the partition) the replay starts at the earliest offset and
  the window filter skips what is too old. Without ``--since`` it is the
  group's committed offset, or ``[broker] auto_offset_reset`` without one.

The window ``[since, until)`` applies to the Kafka message timestamp (not to
``LastChecked``). A partition is finished at its end offset, or at the first
message whose timestamp is at or after ``--until``.

Workers and supervisor share two arrays indexed by partition number:
``positions`` (the offset after the last message a worker finished with) and
``finished`` (1 once a message past ``--until`` was seen). Workers write
them after each batch; the supervisor reads them to know when the replay is
done.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import re
import uuid
from dataclasses import dataclass, field

from writer.config import Config

log = logging.getLogger("writer.replay")

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


def parse_partitions(text: str) -> tuple[int, ...]:
    """``0,3`` -> (0, 3): sorted, without repeats."""
    try:
        numbers = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise ReplayRequestError(f"--partitions {text!r}: expected partition numbers separated by commas, e.g. 0,3") from None
    if not numbers or min(numbers) < 0:
        raise ReplayRequestError(f"--partitions {text!r}: expected partition numbers separated by commas, e.g. 0,3")
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("replay (with --replay)")
    group.add_argument("-since", "--since", metavar="TIME",
                       help="replay messages whose Kafka timestamp is at or after TIME (RFC 3339, or 6h, 2d back from now)")
    group.add_argument("-until", "--until", metavar="TIME",
                       help="replay messages whose Kafka timestamp is before TIME; each partition ends at the first later one")
    group.add_argument("-partitions", "--partitions", metavar="LIST",
                       help="replay only these partitions (e.g. 0,3), assigned directly: no group membership, no commits")
    group.add_argument("-dry-run", "--dry-run", action="store_true",
                       help="parse and validate, check what is already stored, write nothing, commit nothing")
    group.add_argument("-summary-json", "--summary-json", metavar="FILE", help="also write the summary to FILE as JSON")
    group.add_argument("-progress", "--progress", choices=PROGRESS_MODES, default="auto",
                       help="auto (default): a bar on a terminal, else log lines; bar; log; off")
    group.add_argument("-progress-interval", "--progress-interval", metavar="SECONDS", type=float, default=10.0,
                       help="seconds between progress log lines (default 10)")


def options_from_args(args: argparse.Namespace, now: datetime.datetime, stderr_is_terminal: bool) -> ReplayOptions | None:
    """The checked replay options, None without --replay; ReplayRequestError when the flags do not fit together."""
    given = [flag for flag, value in (("--since", args.since), ("--until", args.until), ("--partitions", args.partitions),
                                      ("--dry-run", args.dry_run), ("--summary-json", args.summary_json)) if value]
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


@dataclass
class ReplayPlan:
    """What every worker needs to take part in the replay; picklable (shared arrays travel with the process)."""

    topic: str
    starts: dict[int, int]
    ends: dict[int, int]
    window: Window
    self_assigned: bool
    dry_run: bool
    assign_explicitly: bool  # start at ``positions`` instead of the group's committed offsets
    private_group: str | None  # group.id of a self-assigned consumer: never the live group
    positions: object = field(repr=False, default=None)  # Array('q') by partition number
    finished: object = field(repr=False, default=None)  # Array('b') by partition number

    @property
    def planned(self) -> int:
        return sum(self.ends[p] - self.starts[p] for p in self.ends)


def starts_from_answers(answers: dict[int, int], lows: dict[int, int],
                        ends: dict[int, int]) -> tuple[dict[int, int], list[int]]:
    """Start offsets from the broker's ``offsets_for_times`` answers (partition -> offset, -1: none).

    An answer inside ``[low, end]`` is used; any other (-1, an error, an offset outside the partition) means
    "from the earliest offset": the window filter then skips what is older, so a wrong answer costs time,
    never messages. Returns the starts and the partitions whose answer was not used.
    """
    starts, unanswered = {}, []
    for partition, low in lows.items():
        offset = answers.get(partition, -1)
        if low <= offset <= ends[partition]:
            starts[partition] = offset
        else:
            starts[partition] = low
            unanswered.append(partition)
    return starts, unanswered


class ReplayTarget:
    """Reads the topic at start (partitions, watermarks, start offsets) and tells when the replay is done."""

    def __init__(self, config: Config, group_id: str | None, options: ReplayOptions, context,
                 timeout: float = 10.0) -> None:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        from writer.kafka_options import consumer_options

        options_ = consumer_options(config, group_id)
        options_.pop("statistics.interval.ms", None)
        self._consumer = Consumer({**options_, "logger": log})
        self._reset = config["broker"]["auto_offset_reset"]
        topic = config["broker"]["topic"]
        self.topic = topic
        self.committing = not options.self_assigned and not options.dry_run
        try:
            metadata = self._consumer.list_topics(topic, timeout=timeout)
            described = metadata.topics.get(topic)
            existing = sorted(described.partitions) if described is not None and described.error is None else []
            partitions = self._choose(existing, options.partitions)
            ends, lows = {}, {}
            for partition in partitions:
                lows[partition], ends[partition] = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout)
            window = options.window
            if window.since_ms is not None:
                starts = self._starts_at_time(partitions, window.since_ms, lows, ends, timeout)
            else:
                starts = self._starts_at_committed(partitions, lows, ends, timeout)
        except KafkaException as error:
            self._consumer.close()
            raise ConnectionError(f"cannot read the partitions and offsets of {topic}: {error.args[0].str()}") from None
        except ReplayRequestError:
            self._consumer.close()
            raise
        self._tps = [TopicPartition(topic, p) for p in partitions]
        size = (max(partitions) + 1) if partitions else 1
        positions = context.Array("q", size, lock=False)
        finished = context.Array("b", size, lock=False)
        for partition, start in starts.items():
            positions[partition] = start
        self.plan = ReplayPlan(
            topic=topic, starts=starts, ends=ends, window=window, self_assigned=options.self_assigned,
            dry_run=options.dry_run, assign_explicitly=options.self_assigned or window.since_ms is not None,
            private_group=f"ccx-notification-writer-replay-{uuid.uuid4().hex[:12]}" if options.self_assigned else None,
            positions=positions, finished=finished,
        )

    @staticmethod
    def _choose(existing: list[int], wanted: tuple[int, ...] | None) -> list[int]:
        if wanted is None:
            return existing
        missing = [p for p in wanted if p not in existing]
        if missing:
            raise ReplayRequestError(
                f"--partitions: the topic has no partition {', '.join(map(str, missing))} "
                f"(it has {', '.join(map(str, existing)) or 'none'})"
            )
        return list(wanted)

    def _starts_at_time(self, partitions, since_ms: int, lows, ends, timeout: float) -> dict[int, int]:
        from confluent_kafka import TopicPartition

        answers = self._consumer.offsets_for_times(
            [TopicPartition(self.topic, p, since_ms) for p in partitions], timeout=timeout)
        starts, unanswered = starts_from_answers(
            {a.partition: (a.offset if a.error is None else -1) for a in answers}, lows, ends)
        if unanswered:
            log.info("replay: the broker gave no usable offset for --since on partitions %s; "
                     "those start at the earliest offset and skip older messages",
                     ",".join(map(str, unanswered)))
        return starts

    def _starts_at_committed(self, partitions, lows, ends, timeout: float) -> dict[int, int]:
        from confluent_kafka import TopicPartition

        committed = self._consumer.committed([TopicPartition(self.topic, p) for p in partitions], timeout=timeout)
        starts = {}
        for tp in committed:
            p = tp.partition
            if tp.offset >= 0:
                starts[p] = min(max(tp.offset, lows[p]), ends[p])
            else:
                starts[p] = ends[p] if self._reset == "latest" else lows[p]
        return starts

    def partition_done(self, partition: int, committed: dict[int, int] | None) -> bool:
        plan = self.plan
        if plan.finished[partition]:
            return True
        progress = committed[partition] if committed is not None else plan.positions[partition]
        return progress >= plan.ends[partition]

    def remaining_partitions(self) -> int | None:
        """Partitions not yet finished; None when the group's committed offsets could not be read."""
        from confluent_kafka import KafkaException

        pending = [tp for tp in self._tps if self.plan.ends[tp.partition] > self.plan.starts[tp.partition]]
        committed = None
        if self.committing and pending:
            try:
                committed = {tp.partition: tp.offset for tp in self._consumer.committed(pending, timeout=5)}
            except KafkaException:
                return None
        return sum(1 for tp in pending if not self.partition_done(tp.partition, committed))

    def reached(self) -> bool:
        return self.remaining_partitions() == 0

    def close(self) -> None:
        self._consumer.close()
