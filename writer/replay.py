"""What a replay covers: each partition's start and end offsets, read from Kafka at start, and when it is done.

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

import logging
import uuid
from dataclasses import dataclass, field

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


def messages_done(plan: "ReplayPlan") -> int:
    """Offsets of the replay a worker has finished with: a finished partition counts whole (``end - start``)."""
    done = 0
    for partition, end in plan.ends.items():
        start = plan.starts[partition]
        if plan.finished[partition]:
            done += end - start
        else:
            done += max(0, min(plan.positions[partition], end) - start)
    return done


def partition_done(plan: "ReplayPlan", partition: int) -> bool:
    return bool(plan.finished[partition]) or plan.positions[partition] >= plan.ends[partition]


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

    def remaining_partitions(self) -> int:
        """Partitions the workers have not finished, from the positions they publish (never from a group's
        committed offsets: a group committed at its end would end a --since replay before it began)."""
        return sum(1 for p in self.plan.ends if not partition_done(self.plan, p))

    def messages_done(self) -> int:
        return messages_done(self.plan)

    def close(self) -> None:
        self._consumer.close()
