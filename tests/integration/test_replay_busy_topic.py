"""A replay's partition on a busy topic finishes at its end offset, though the message at ``end - 1`` never comes and
no end-of-partition event does either. One Worker in this process against the Kafka mock and a real PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from types import SimpleNamespace

from confluent_kafka import Producer

from tests.harness.database import row_count
from tests.harness.kafka import committed_offsets, end_offsets
from tests.harness.worker import make_worker
from writer.kafka_mock import produce
from writer.replay_options import Window
from writer.replay_worker import ReplayScope
from writer.sample_messages import encoded

WAIT_S = 60


def produce_in_a_transaction(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """The commit marker takes the offset after the last message: no consumer ever receives it."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for value in values:
        producer.produce(topic, value, partition=0)
    producer.commit_transaction(30)


def test_a_partition_whose_last_offset_is_a_transaction_marker_finishes_on_a_busy_topic(
        migrated_database, kafka_bootstrap, topic, group):
    produce_in_a_transaction(kafka_bootstrap, topic, [encoded(n) for n in range(20)])
    end = end_offsets(kafka_bootstrap, topic)[0]
    assert end == 21  # 20 messages and the marker
    # The topic is busy: messages keep coming after the replay's end offset was read.
    produce(kafka_bootstrap, topic, [encoded(n) for n in range(20, 2020)], partition=0)
    worker, _ = make_worker(migrated_database, kafka_bootstrap, topic, broker__group=group,
                            processing__batch_size=100)
    plan = SimpleNamespace(topic=topic, starts={0: 0}, ends={0: end}, positions=[0], finished=[0], window=Window(),
                           assign_explicitly=False, private_group=None, self_assigned=False, dry_run=False)
    worker.replay = ReplayScope(plan, 0, 1, "")  # type: ignore[arg-type]
    # Built without the replay's enable.partition.eof: no end-of-partition event, as on a topic that never rests.
    running = threading.Thread(target=worker.run, daemon=True)
    running.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while plan.positions[0] < end:
            assert time.monotonic() < deadline, f"the partition never finished (position {plan.positions[0]})"
            time.sleep(0.05)
    finally:
        worker.request_stop()
        running.join(WAIT_S)
    assert not running.is_alive()
    assert row_count(migrated_database) == 20  # the replay's messages only
    assert committed_offsets(kafka_bootstrap, topic, group, [0]) == {0: end}  # the end seen at start, no further
