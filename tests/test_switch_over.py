"""Taking over from a running original: the same group's committed offsets are the hand-over point.

The original's consumer is stood in for by a librdkafka consumer configured as sarama behaves there:
the eager "range" assignor, each handled message's offset committed."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer

from tests.service import service_env
from writer import sample_messages
from writer.kafka_mock import produce

TOTAL, HANDLED_BY_ORIGINAL = 30, 12


def original_consumer(bootstrap: str, group: str, topic: str, handle: int) -> list[int]:
    """Consume and commit ``handle`` messages as the original does, then leave the group cleanly."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "partition.assignment.strategy": "range",
                         "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    handled = []
    deadline = time.monotonic() + 60
    while len(handled) < handle and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error() is not None:
            continue
        handled.append(message.offset())
        consumer.commit(message=message, asynchronous=False)
    consumer.close()
    assert len(handled) == handle
    return handled


def test_taking_over_the_original_group_loses_and_rereads_nothing(migrated_database, kafka_bootstrap, cli):
    topic = f"ccx.ocp.results.{uuid.uuid4().hex[:10]}"
    group = f"ccx_notification_app_{uuid.uuid4().hex[:6]}"
    produce(kafka_bootstrap, topic, [sample_messages.encoded(i) for i in range(TOTAL)], partition=0)
    handled = original_consumer(kafka_bootstrap, group, topic, HANDLED_BY_ORIGINAL)
    assert handled == list(range(HANDLED_BY_ORIGINAL))

    env = service_env(migrated_database, kafka_bootstrap, topic, BROKER__GROUP=group,
                      BROKER__PARTITION_ASSIGNMENT_STRATEGY="range", PROCESSING__WORKERS="1")
    result = cli("--replay", env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    rest = TOTAL - HANDLED_BY_ORIGINAL
    assert f"messages {rest}, stored {rest}, duplicates 0, rejected 0" in result.stdout, result.stdout
    with migrated_database.connect() as connection:
        offsets = [r[0] for r in connection.execute("SELECT kafka_offset FROM new_reports ORDER BY kafka_offset")]
    assert offsets == list(range(HANDLED_BY_ORIGINAL, TOTAL))
