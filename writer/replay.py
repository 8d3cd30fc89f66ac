"""What a replay covers: each partition's start and end offsets, read from Kafka at start, and when it is done.

A replay covers, for each partition, the offsets ``[start, end)``:

- ``end`` is the high watermark seen at start: messages produced later are
  not part of the replay;
- ``start`` is the first offset at or after ``--since`` (Kafka's
  ``offsets_for_times``) when given, or the end when the broker answers that
  no message is that recent (checked against the partition's last message:
  librdkafka's mock answers -1 for every time). Where the broker does not
  answer usefully (an error, an offset outside the partition) the replay
  starts at the earliest offset and the window filter skips what is too
  old. Without ``--since`` it is the group's committed offset, or
  ``[broker] auto_offset_reset`` without one.

The window ``[since, until)`` applies to the Kafka message timestamp (not to
``LastChecked``). A partition is finished at its end offset, at the end of
the partition as the consumer sees it (an end-of-partition event at or past
the end offset: the last offsets may be transaction markers or aborted
messages, which no consumer receives), or at the first message whose
timestamp is at or after ``--until``.

Timestamps need not grow with offsets (producers set CreateTime): a message
before ``--since`` found after the start is skipped, and ``--until`` ends a
partition at its first message at or after it, so a later message that is
older than ``--until`` is not replayed. ``offsets_for_times`` answers the
first offset whose timestamp is at or after ``--since``; older messages after
it are skipped.

Workers and supervisor share two arrays indexed by partition number:
``positions`` (the offset after the last message a worker finished with) and
``finished`` (1 once a message past ``--until`` was seen). Workers write
them after each batch; the supervisor reads only them to know when the
replay is done and how far it is, in every mode.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from writer.config import Config
from writer.replay_options import ReplayOptions, ReplayRequestError, Window

log = logging.getLogger("writer.replay")


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
    positions: Any = field(repr=False, default=None)  # Array('q') by partition number (shared ctypes: untyped)
    finished: Any = field(repr=False, default=None)  # Array('b') by partition number

    @property
    def planned(self) -> int:
        return sum(self.ends[p] - self.starts[p] for p in self.ends)


def starts_from_answers(answers: dict[int, int | None] | None, lows: dict[int, int], ends: dict[int, int],
                        since_ms: int, last_timestamps: dict[int, int | None]) -> tuple[dict[int, int], list[int]]:
    """Start offsets from the broker's ``offsets_for_times`` answers (partition -> offset; -1: no message at or
    after ``since_ms``; None: an error for that partition; ``answers`` None: the whole call failed).

    - an answer inside ``[low, end]`` is used;
    - -1 from a real broker means the partition has nothing that recent: it starts at its end. librdkafka's
      mock answers -1 for every time, so -1 is believed only when the partition's last message (its timestamp
      in ``last_timestamps``, None when unknown) is older than ``since_ms``;
    - anything else (an error, an offset outside the partition, a -1 not confirmed) starts at the earliest
      offset: the window filter skips what is older, so a wrong answer costs time, never messages.

    Returns the starts and the partitions that start at the earliest offset for want of a usable answer.
    """
    starts, unanswered = {}, []
    for partition, low in lows.items():
        offset = answers.get(partition) if answers is not None else None
        last = last_timestamps.get(partition)
        if offset is not None and low <= offset <= ends[partition]:
            starts[partition] = offset
        elif offset == -1 and last is not None and 0 <= last < since_ms:
            starts[partition] = ends[partition]
        else:
            starts[partition] = low
            unanswered.append(partition)
    return starts, unanswered


def messages_done(plan: ReplayPlan) -> int:
    """Offsets of the replay a worker has finished with: a finished partition counts whole (``end - start``)."""
    done = 0
    for partition, end in plan.ends.items():
        start = plan.starts[partition]
        if plan.finished[partition]:
            done += end - start
        else:
            done += max(0, min(plan.positions[partition], end) - start)
    return done


def partition_done(plan: ReplayPlan, partition: int) -> bool:
    return bool(plan.finished[partition]) or plan.positions[partition] >= plan.ends[partition]


class ReplayTarget:
    """Reads the topic at start (partitions, watermarks, start offsets) and tells when the replay is done."""

    def __init__(self, config: Config, group_id: str | None, options: ReplayOptions, context,
                 timeout: float = 10.0) -> None:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        from writer.kafka_options import consumer_options, silent_logger

        options_ = consumer_options(config, group_id)
        options_.pop("statistics.interval.ms", None)
        # End-of-partition events let the last-timestamp look-up stop at a transaction marker. librdkafka's own
        # lines are silenced (as in --check-kafka): every failure here surfaces as one error line from the caller.
        self._consumer = Consumer({**options_, "logger": silent_logger(), "enable.partition.eof": True})
        self._reset = config.broker.auto_offset_reset
        topic = config.broker.topic
        self.topic = topic
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
        from confluent_kafka import KafkaException, TopicPartition

        try:
            answered = self._consumer.offsets_for_times(
                [TopicPartition(self.topic, p, since_ms) for p in partitions], timeout=timeout)
            answers = {a.partition: (a.offset if a.error is None else None) for a in answered}
        except KafkaException as error:
            log.warning("replay: offsets_for_times failed (%s); every partition starts at the earliest offset "
                        "and skips older messages", error.args[0].str())
            answers = None
        unconfirmed = [p for p in partitions if answers is not None and answers.get(p) == -1 and ends[p] > lows[p]]
        last_timestamps = self._last_timestamps(unconfirmed, ends, timeout) if unconfirmed else {}
        starts, unanswered = starts_from_answers(answers, lows, ends, since_ms, last_timestamps)
        if unanswered:
            log.info("replay: the broker gave no usable offset for --since on partitions %s; "
                     "those start at the earliest offset and skip older messages",
                     ",".join(map(str, unanswered)))
        return starts

    def _last_timestamps(self, partitions, ends, timeout: float) -> dict[int, int | None]:
        """The Kafka timestamp of each partition's message at ``end - 1``; missing where there is none (a
        transaction marker there) or it did not come in time."""
        from confluent_kafka import KafkaError, TopicPartition

        found: dict[int, int | None] = {}
        self._consumer.assign([TopicPartition(self.topic, p, ends[p] - 1) for p in partitions])
        deadline = time.monotonic() + timeout
        try:
            while len(found) < len(partitions) and (left := deadline - time.monotonic()) > 0:
                for message in self._consumer.consume(num_messages=len(partitions), timeout=min(left, 0.5)):
                    partition = message.partition()
                    if partition in found:
                        continue
                    error = message.error()
                    if partition is None:
                        continue  # a client-level event, not about a partition
                    if error is None:
                        last = message.offset() == ends[partition] - 1
                        found[partition] = message.timestamp()[1] if last else None
                    elif error.code() == KafkaError._PARTITION_EOF:
                        found[partition] = None
        finally:
            self._consumer.unassign()
        return found

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

    def remaining_partitions(self) -> int:
        """Partitions the workers have not finished, from the positions they publish (never from a group's
        committed offsets: a group committed at its end would end a --since replay before it began)."""
        return sum(1 for p in self.plan.ends if not partition_done(self.plan, p))

    def messages_done(self) -> int:
        return messages_done(self.plan)

    def close(self) -> None:
        self._consumer.close()
