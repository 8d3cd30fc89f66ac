"""``[processing] max_batch_bytes`` in a worker built from the configuration, on the mock cluster: its batches
close at the byte bound, and every message still comes, once and in order (the bound itself:
tests/unit/test_batch_stages.py)."""

from __future__ import annotations

import time

from confluent_kafka import TopicPartition

from tests.harness.kafka import produce_raw
from writer.sample_messages import encoded

MESSAGES = 30
WAIT_S = 60


def test_a_worker_closes_its_batches_at_max_batch_bytes(worker_factory, kafka_bootstrap, topic):
    values = [encoded(n, "large_size") for n in range(MESSAGES)]
    produce_raw(kafka_bootstrap, topic, [{"value": value, "partition": 0} for value in values])
    bound = 3 * max(len(value) for value in values)  # at most three messages a batch, never less than two
    worker, _ = worker_factory(processing__max_batch_bytes=bound)
    worker.consumer.assign([TopicPartition(topic, 0, 0)])
    batches = []
    deadline = time.monotonic() + WAIT_S
    while sum(map(len, batches)) < MESSAGES:
        assert time.monotonic() < deadline, f"{sum(map(len, batches))} of {MESSAGES} messages polled"
        batch = [m for m in worker.poller.gather(1000, 0.5) if m.error() is None]
        if batch:
            batches.append(batch)
    assert all(sum(len(m.value()) for m in batch) <= bound for batch in batches)
    assert [m.offset() for batch in batches for m in batch] == list(range(MESSAGES))
    assert len(batches) >= MESSAGES // 3
