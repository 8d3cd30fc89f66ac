"""A revocation commits what its worker stored, on the Kafka mock (with fault injection) and a real PostgreSQL.

A rolling restart: a commit is refused ("rebalance in progress"), then a revocation takes the partitions away. The
offsets the refused commit carried must reach the broker from the revocation callback, or the next owner reads those
batches again.

The revocation here is the worker's own (it unsubscribes): with a second member, the mock's coordinator refuses every
offset commit from the moment a member joins until the group is synced again (state "joining"), where Kafka accepts a
commit of the current generation while it prepares a rebalance. The unit tests hold the revocations of a rebalance
(tests/unit/test_worker_revocation.py)."""

from __future__ import annotations

import time

import pytest

from tests.harness.kafka import committed_offsets, end_offsets, produce_raw
from tests.harness.mock_cluster import OFFSET_COMMIT, REBALANCE_IN_PROGRESS
from tests.harness.worker import make_worker
from writer.partitions import Partition
from writer.sample_messages import encoded

PARTITIONS = 2
WAIT_S = 60  # bound of each wait (a failing test fails, it does not hang)


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_a_revocation_commits_the_offsets_a_refused_commit_carried(migrated_database, kafka, topic, group, strategy):
    kafka.create_topic(topic, PARTITIONS)
    produce_raw(kafka.bootstrap_servers, topic,
                [{"value": encoded(n), "partition": n % PARTITIONS} for n in range(10)])
    worker, _ = make_worker(migrated_database, kafka.bootstrap_servers, topic, broker__group=group,
                            broker__partition_assignment_strategy=strategy)
    consumer = worker.consumer
    try:
        consumer.subscribe([topic], on_assign=worker._on_assign, on_revoke=worker._on_revoke,
                           on_lost=worker._on_lost)
        messages: list = []
        deadline = time.monotonic() + WAIT_S
        while len(messages) < 10 and time.monotonic() < deadline:
            messages += [m for m in consumer.consume(10, 0.2) if m.error() is None]
        assert len(messages) == 10 and len(worker.book.assigned) == PARTITIONS
        kafka.push_request_errors(OFFSET_COMMIT, REBALANCE_IN_PROGRESS)  # the batch's commit
        worker.handle_batch(messages)
        assert worker.book.uncommitted == {Partition(topic, p): 5 for p in range(PARTITIONS)}  # stored, refused
        consumer.unsubscribe()  # revokes every partition
        deadline = time.monotonic() + WAIT_S
        while worker.book.assigned:
            assert time.monotonic() < deadline, "never revoked"
            consumer.poll(0.1)
        deadline = time.monotonic() + 10
        while committed_offsets(kafka.bootstrap_servers, topic, group, range(PARTITIONS)) != {0: 5, 1: 5}:
            assert time.monotonic() < deadline, "the offsets were not committed"
            consumer.poll(0.1)
    finally:
        consumer.close()
        worker.writes.writer.close()
    assert end_offsets(kafka.bootstrap_servers, topic) == {0: 5, 1: 5}
