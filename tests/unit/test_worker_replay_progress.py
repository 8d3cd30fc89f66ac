"""A replay's progress, published by the worker (fakes of the consumer and the database): only for offsets whose
commit succeeded, never for a partition revoked before that, and every skipped message counted once."""

from __future__ import annotations

import threading

from confluent_kafka import KafkaError

from tests.unit.test_batch_stages import FakeMessage, valid
from tests.unit.test_worker_pipeline import WAIT_S, GatedWriter, Running, build, replay_scope, wait_until
from writer import exit_codes
from writer.replay_options import Window
from writer.storage import TransientDatabaseError

REFUSED = KafkaError(KafkaError.REBALANCE_IN_PROGRESS)


class Stamped(FakeMessage):
    """A message with a Kafka timestamp (milliseconds)."""

    def __init__(self, message: FakeMessage, timestamp_ms: int) -> None:
        super().__init__(message.partition(), message.offset(), message.value())
        self._timestamp_ms = timestamp_ms

    def timestamp(self):
        return (1, self._timestamp_ms)


def test_a_partition_revoked_while_its_refused_commit_is_awaited_has_no_progress_published():
    plan, scope = replay_scope()
    worker, consumer, _ = build([[valid(0, 0), valid(1, 0)]], GatedWriter(), replay=scope)
    consumer.commit_errors = [REFUSED]  # the batch's commit; t[0]'s offset goes through with the next one
    consumer.revoke_on_poll = [1]  # the poll that brings the refusal also revokes t[1]
    running = Running(worker)
    wait_until(lambda: plan.positions[0] == 1, "t[0]'s progress, once its commit succeeded")
    assert running.stop() == exit_codes.OK
    assert plan.positions[1] == 0  # its only commit was refused: the next owner reads and publishes it


def test_a_partition_revoked_while_its_batch_is_retried_has_no_progress_published_when_the_write_ends():
    plan, scope = replay_scope()
    release = threading.Event()
    writer = GatedWriter(script={0: TransientDatabaseError("down")})
    writer.gates = {1: release}
    worker, consumer, _ = build([[valid(0, 0), valid(1, 0)], [valid(0, 1)]], writer, replay=scope)
    consumer.revoke_on_poll = [1]  # the first poll() serves the group during the retry
    running = Running(worker)
    assert consumer.revoked.wait(WAIT_S), "no poll during the retry"
    release.set()
    wait_until(lambda: plan.positions[0] == 2, "t[0]'s progress")
    assert running.stop() == exit_codes.OK
    assert all(1 not in commit for commit in consumer.commits)  # the retried batch's t[1] offset: dropped
    assert plan.positions[1] == 0  # and so is its progress


def test_skipped_messages_of_a_batch_dropped_on_revocation_are_not_counted():
    """Their next owner reads them again and counts them: counted here too, they would count twice."""
    plan, scope = replay_scope()
    plan.window = Window(since_ms=1000)
    release = threading.Event()
    writer = GatedWriter(script={0: TransientDatabaseError("down")})
    writer.gates = {1: release}
    old = [Stamped(FakeMessage(1, 0), 10), Stamped(FakeMessage(1, 1), 20)]  # before --since: skipped
    worker, consumer, _ = build([[Stamped(valid(0, 0), 2000)], old], writer, replay=scope)
    consumer.revoke_on_poll = [1]  # during the retry of the first batch, while the second waits for it
    running = Running(worker)
    assert consumer.revoked.wait(WAIT_S), "no poll during the retry"
    release.set()
    wait_until(lambda: plan.positions[0] == 1, "t[0]'s progress")
    assert running.stop() == exit_codes.OK
    assert scope.skipped._value.get() == 0
    assert plan.positions[1] == 0


def test_skipped_messages_are_counted_once_their_offsets_are_committed():
    plan, scope = replay_scope()
    plan.window = Window(since_ms=1000)
    worker, consumer, _ = build([[Stamped(FakeMessage(0, 0), 10), Stamped(valid(0, 1), 2000)]], GatedWriter(),
                                replay=scope)
    consumer.commit_errors = [REFUSED]
    running = Running(worker)
    wait_until(lambda: len(consumer.commits) >= 1, "the batch's commit, refused")
    wait_until(lambda: plan.positions[0] == 2, "the progress, once the retried commit succeeded")
    assert scope.skipped._value.get() == 1
    assert running.stop() == exit_codes.OK
