"""Parse stage: a polled batch of Kafka messages -> rows to write, rejections, and the offsets the batch completes.

No I/O: messages in, a ``ParsedBatch`` out (consumer error events are logged).
What happens to one message, in order:

1. an error event: a fatal one (the consumer is unusable) raises
   ``KafkaException``, so nothing of the batch is committed; the end of a
   partition is no error (in a replay it may finish the partition); any other
   is counted and logged;
2. in a replay, a message outside its range or time window is left out
   (``replay_worker.ReplayScope.admits``);
3. the message's offset completes its partition: the offset after it is
   committed once the batch is stored;
4. ``parse_message`` makes it a row or a rejection; ``origins`` keeps the
   message of each row, position for position, so a row the database refuses
   is dead-lettered with its own message.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException

from writer.message import Rejection, Row, parse_message
from writer.partitions import NextOffsets, Partition, without
from writer.replay_worker import ReplayProgress, ReplayScope

log = logging.getLogger("writer.worker")

# A confluent_kafka.Message, or any object with its accessors (topic(), partition(), offset(), value(), ...).
Message = Any


@dataclass
class ParsedBatch:
    rows: list[Row] = field(default_factory=list)
    origins: list[Message] = field(default_factory=list)  # origins[i]: the message rows[i] was parsed from
    rejections: list[tuple[Message, Rejection]] = field(default_factory=list)
    next_offsets: NextOffsets = field(default_factory=dict)  # committed once the batch is stored
    consumer_errors: int = 0  # error events other than the end of a partition
    replay: ReplayProgress | None = None

    @property
    def consumed(self) -> int:
        """Messages of the batch handled (each became a row or a rejection)."""
        return len(self.rows) + len(self.rejections)

    def drop(self, partitions: set[Partition]) -> None:
        """Forget everything of ``partitions`` (revoked before the batch was written): uncommitted, read again by
        their next owner."""
        keep = [i for i, message in enumerate(self.origins) if _partition(message) not in partitions]
        self.rows = [self.rows[i] for i in keep]
        self.origins = [self.origins[i] for i in keep]
        self.rejections = [(m, r) for m, r in self.rejections if _partition(m) not in partitions]
        self.next_offsets = without(self.next_offsets, partitions)


def _partition(message: Message) -> Partition:
    return Partition(message.topic(), message.partition())


def parse_batch(messages: list[Message], now: datetime.datetime, replay: ReplayScope | None = None) -> ParsedBatch:
    """Parse every message of a polled batch; ``now`` is naive UTC. See the module docstring."""
    progress = replay.new_progress() if replay is not None else None
    batch = ParsedBatch(replay=progress)
    rows, origins, rejections, next_offsets = batch.rows, batch.origins, batch.rejections, batch.next_offsets
    debug = log.isEnabledFor(logging.DEBUG)
    partition = Partition("", -1)  # of the message before: a batch comes in runs of one partition
    for message in messages:
        error = message.error()
        if error is not None:
            # librdkafka reports an unusable consumer as _FATAL: stop (exit 2), nothing of this batch committed.
            if error.fatal() or error.code() == KafkaError._FATAL:
                raise KafkaException(error)
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error.str(),
                            extra={"topic": message.topic(), "partition": message.partition()})
                batch.consumer_errors += 1
            elif replay is not None and progress is not None:
                replay.reached_end(message, next_offsets, progress)
            continue
        if replay is not None and progress is not None and not replay.admits(message, next_offsets, progress):
            continue
        offset = message.offset()
        if message.partition() != partition.number or message.topic() != partition.topic:
            partition = Partition(message.topic(), message.partition())
        # Within a partition messages come in offset order: the last one's offset wins.
        next_offsets[partition] = offset + 1
        result = parse_message(message.value(), offset, now)
        if type(result) is Row:
            rows.append(result)
            origins.append(message)
            if debug:
                log.debug("message parsed", extra=where(message, result.org_id, result.cluster))
        else:
            rejections.append((message, cast(Rejection, result)))
    return batch


def where(message: Message, org_id: int | None = None, cluster: str | None = None) -> dict[str, Any]:
    """A message's place, for log records."""
    place: dict[str, Any] = {"topic": message.topic(), "partition": message.partition(), "offset": message.offset()}
    if org_id is not None:
        place["org_id"] = org_id
    if cluster is not None:
        place["cluster"] = cluster
    return place
