"""Revocations with fakes of the consumer and the database: a revoked partition's stored offsets are committed in
the callback, whether their commit was refused before or is still awaited; a write that does not end in time is
not waited for beyond ``REVOKE_WAIT_S``, and nothing of its batch is committed in the callback."""

from __future__ import annotations

import threading
import time

from confluent_kafka import KafkaError

from tests.unit.test_batch_stages import valid
from tests.unit.test_worker_pipeline import WAIT_S, FakeConsumer, GatedWriter, Running, build, wait_until
from writer import exit_codes
from writer.partitions import Partition
from writer.storage import TransientDatabaseError

REFUSED = KafkaError(KafkaError.REBALANCE_IN_PROGRESS)


def revoke_at_the_next_consume_after_the_first_commit(consumer: FakeConsumer, numbers: list[int]) -> None:
    real_commit = consumer.commit

    def commit(offsets, asynchronous):
        if not consumer.commits:
            consumer.revoke_on_consume = numbers
        real_commit(offsets, asynchronous)

    consumer.commit = commit


def test_a_revocation_commits_the_stored_offsets_whose_commit_was_refused():
    """A rolling restart: the commit is refused (the group is rebalancing), then that rebalance revokes the
    partition. Dropped, those offsets made the next owner read the last batches again."""
    worker, consumer, _ = build([[valid(0, 0), valid(1, 0)]], GatedWriter())
    consumer.commit_errors = [REFUSED]
    revoke_at_the_next_consume_after_the_first_commit(consumer, [1])
    running = Running(worker)
    assert consumer.revoked.wait(WAIT_S)
    wait_until(lambda: len(consumer.commits) == 3, "t[0]'s offset committed while idle")
    assert running.stop() == exit_codes.OK
    # The batch's commit (refused), t[1]'s inside the callback (not waited for), t[0]'s retried while idle.
    assert consumer.commits == [{0: 1, 1: 1}, {1: 1}, {0: 1}]


def test_a_revocation_inside_the_wait_for_a_commit_commits_its_offsets_of_the_revoked_partitions():
    """The answer is still to be read when the revocation comes: were it a refusal, nothing would commit them."""
    worker, consumer, _ = build([[valid(0, 0), valid(1, 0)]], GatedWriter())
    consumer.commit_errors = [REFUSED]
    consumer.revoke_on_poll = [1]  # the poll that brings the refusal also revokes t[1]
    running = Running(worker)
    assert consumer.revoked.wait(WAIT_S)
    wait_until(lambda: len(consumer.commits) == 3, "t[0]'s offset committed while idle")
    assert running.stop() == exit_codes.OK
    assert consumer.commits == [{0: 1, 1: 1}, {1: 1}, {0: 1}]


def test_a_revocation_commits_nothing_of_a_batch_being_retried():
    """Only offsets whose rows are durable are committed: a batch still retried has none."""
    release = threading.Event()
    writer = GatedWriter(script={0: TransientDatabaseError("down")})
    writer.gates = {1: release}
    worker, consumer, _ = build([[valid(0, 0), valid(1, 0)], [valid(0, 1)]], writer)
    consumer.revoke_on_poll = [1]
    running = Running(worker)
    assert consumer.revoked.wait(WAIT_S), "no poll during the retry"
    assert consumer.commits == []
    release.set()
    wait_until(lambda: len(consumer.commits) == 2, "both batches committed")
    assert running.stop() == exit_codes.OK
    assert consumer.commits == [{0: 1}, {0: 2}]


class RevocationClock:
    """time.monotonic, except that inside the revocation callback every reading is a second later than the one
    before: the callback's wait for the write runs out after about REVOKE_WAIT_S readings, not seconds."""

    def __init__(self) -> None:
        self.consumer: FakeConsumer | None = None
        self.skew = 0.0

    def __call__(self) -> float:
        consumer = self.consumer
        if consumer is not None and consumer.revoking.is_set() and not consumer.revoked.is_set():
            self.skew += 1.0
        return time.monotonic() + self.skew


def test_a_revocation_waits_for_a_slow_write_at_most_revoke_wait_s():
    """A revocation holds up the whole group: a write that does not end in time is left running, and its batch's
    offsets of the revoked partition to their next owner (its rows are stored once it ends, found as duplicates)."""
    writer = GatedWriter()
    writer.gates = {0: threading.Event()}
    clock = RevocationClock()
    worker, consumer, _ = build([[valid(0, 0), valid(1, 0)]], writer, clock=clock)
    clock.consumer = consumer
    running = Running(worker)
    wait_until(lambda: len(writer.calls) == 1, "the write")
    consumer.revoke_on_consume = [1]
    # The write never ends by itself (its gate gives up after WAIT_S): only the callback's own bound lets it return.
    assert consumer.revoked.wait(WAIT_S / 2), "the revocation waited for the write beyond REVOKE_WAIT_S"
    assert clock.skew >= 1  # it did wait
    assert consumer.commits == []  # nothing of a batch not written
    writer.gates[0].set()
    wait_until(lambda: consumer.commits, "the batch committed once written")
    assert running.stop() == exit_codes.OK
    assert consumer.commits == [{0: 1}]  # t[1]'s offset is its next owner's business


def test_closing_commits_from_a_revocation_while_it_serves_the_group_but_not_from_the_consumers_close():
    """``_close`` serves the group while its last commit is refused: a revocation meanwhile commits (the broker is
    answering). Closing the consumer revokes too, then waits for every commit sent: one to a broker that does not
    answer held it for minutes (mock cluster stopped), so that revocation sends none."""
    worker, consumer, _ = build([], GatedWriter(), shutdown_timeout_s=2.5)  # the loop serves the group about 1.5 s
    consumer.subscribe(["t"], on_assign=worker._on_assign, on_revoke=worker._on_revoke, on_lost=worker._on_lost)
    consumer.poll(0)  # assigned
    worker.book.keep_uncommitted({Partition("t", 0): 4, Partition("t", 1): 2})  # stored, their commit refused
    consumer.commit_errors = [REFUSED] * 1000
    consumer.revoke_on_poll = [1]  # the first poll of the close's loop
    sent: list = []  # (inside consumer.close(), offsets)
    real_commit = consumer.commit
    consumer.commit = lambda offsets, asynchronous: (sent.append((worker.closing_consumer, {
        tp.partition: tp.offset for tp in offsets})), real_commit(offsets, asynchronous))
    worker.stop.request()
    worker.halted = True
    worker._close()
    assert consumer.closed and sent
    assert sent[0] == (False, {1: 2})  # from the revocation inside the loop's first poll
    assert sent[1:] == [(False, {0: 4})] * (len(sent) - 1)  # the loop's commits, refused; none from close()
