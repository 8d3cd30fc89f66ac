"""Kafka in tests: offsets of a topic and of a group, reading a whole topic, producing records.

Works against the mock cluster and against a real broker (KAFKA_BOOTSTRAP_SERVERS)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from writer.produce import produce_when_room

PARTITIONS = 4  # the mock cluster's default for a topic created by producing to it


def _client(bootstrap: str, group: str | None = None) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"probe-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})


def watermarks(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    """(low, high) watermark of every partition of ``topic``."""
    consumer = _client(bootstrap)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    return {p: high for p, (_, high) in watermarks(bootstrap, topic).items()}


def committed_offsets(bootstrap: str, topic: str, group: str, partitions: Iterable[int] = range(PARTITIONS),
                      ) -> dict[int, int]:
    """The group's committed offset per partition; a negative offset (OFFSET_INVALID) where it committed none."""
    consumer = _client(bootstrap, group)
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in committed}


def committed_to_end(bootstrap: str, topic: str, group: str) -> bool:
    """The group's committed offset is at the end offset of every partition that holds messages."""
    ends = end_offsets(bootstrap, topic)
    committed = committed_offsets(bootstrap, topic, group, ends)
    return all(committed[p] >= end for p, end in ends.items() if end > 0)


def nothing_committed(offsets: dict[int, int]) -> bool:
    """No partition committed past its first message."""
    return all(offset <= 0 for offset in offsets.values())


def read_topic(bootstrap: str, topic: str, timeout: float = 60) -> list[Message]:
    """Every message of ``topic`` (all partitions, from the beginning to the end offsets seen now), without a
    consumer group; an assertion error if the end is not reached within ``timeout``."""
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "fetch.max.bytes": 60_000_000,
                         "receive.message.max.bytes": 100_000_000})
    messages = []
    try:
        pending = {p for p, high in ends.items() if high > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, 1.0):
                if message.error() is not None:
                    continue
                messages.append(message)
                if message.offset() + 1 >= ends[message.partition()]:
                    pending.discard(message.partition())
        assert not pending, f"could not read {topic} to its end offsets {ends}"
    finally:
        consumer.close()
    return messages


def header(message: Message, name: str) -> bytes | None:
    """The last header ``name`` of a message (ours come after the original ones)."""
    values = [v for k, v in (message.headers() or []) if k == name]
    return values[-1] if values else None


def produce_raw(bootstrap: str, topic: str, records: list[dict]) -> list[tuple[int, int]]:
    """Produce records {value, key, headers, partition}; returns their (partition, offset) in order."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "zstd",
                         "message.max.bytes": 20_000_000, "max.in.flight.requests.per.connection": 1})
    positions: list = [None] * len(records)
    failures = []

    def delivered(index):
        def callback(error, message):
            if error is not None:
                failures.append(error)
            else:
                positions[index] = (message.partition(), message.offset())
        return callback

    for index, record in enumerate(records):
        produce_when_room(producer, topic, value=record.get("value"), key=record.get("key"),
                          headers=record.get("headers"), partition=record.get("partition", index % PARTITIONS),
                          on_delivery=delivered(index))
    remaining = producer.flush(60)
    assert not remaining and not failures, (remaining, failures[:3])
    return positions
