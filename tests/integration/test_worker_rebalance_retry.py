"""Rebalances that arrive while a database retry holds the batch (issue 9, review items 1, 2, 7): the
eager strategies (range, roundrobin) need assign(), a replay joining a group assigns once from its own
starting offsets, and splitting a timed-out batch keeps polling under one give-up deadline. One Worker in
this process against the Kafka mock and a real PostgreSQL."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from confluent_kafka import TopicPartition

from tests.harness.storage import make_rows
from tests.harness.worker import fetched, make_worker, rebalance_assign
from writer.kafka_mock import MockKafka, produce
from writer.partitions import Partition
from writer.replay_worker import ReplayScope
from writer.sample_messages import encoded
from writer.stages.parse import ParsedBatch
from writer.worker import PAUSE_FOR_RETRY as RETRY_PAUSE


def _join(worker, topic: str, seconds: float = 20) -> tuple[list, int]:
    """Subscribe with the worker's callbacks and poll until the group assigned something; returns the
    assignment and how many messages those polls fetched."""
    worker.consumer.subscribe([topic], on_assign=worker._on_assign, on_revoke=worker._on_revoke,
                              on_lost=worker._on_revoke)
    deadline, polled = time.monotonic() + seconds, 0
    while not worker.book.assigned and time.monotonic() < deadline:
        message = worker.consumer.poll(0.2)  # a callback's exception is raised here
        polled += message is not None and message.error() is None
    return worker.consumer.assignment(), polled


def _join_paused(worker, topic: str, seconds: float = 20) -> list:
    """Subscribe with the worker's callbacks and serve the group as the worker does while a retry holds the batch
    (``Poller.poll``: a message is carried over) until the group assigned something; returns the assignment."""
    worker.consumer.subscribe([topic], on_assign=worker._on_assign, on_revoke=worker._on_revoke,
                              on_lost=worker._on_revoke)
    deadline = time.monotonic() + seconds
    while not worker.book.assigned and time.monotonic() < deadline:
        worker.poller.poll(0.2)  # a callback's exception is raised here
    return worker.consumer.assignment()


def _serve_paused(worker, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        worker.poller.poll(0.1)


def _offsets(messages) -> list[int]:
    return sorted(m.offset() for m in messages if m.error() is None)


def _consumed_offsets(consumer, seconds: float) -> list[int]:
    deadline, offsets = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        offsets += _offsets(consumer.consume(100, 0.2))
    return sorted(offsets)


def test_an_eager_assignment_during_a_retry_is_taken_and_paused(worker_factory, kafka_bootstrap, topic):
    produce(kafka_bootstrap, topic, [encoded(n) for n in range(20)], partition=0)
    worker, _ = worker_factory(broker__partition_assignment_strategy="range")
    worker.poller.pause(RETRY_PAUSE)  # the rebalance comes while the batch is being retried
    assignment = _join_paused(worker, topic)
    assert {(tp.topic, tp.partition) for tp in assignment} == worker.book.assigned != set()
    _serve_paused(worker, 1.5)  # the retry holds the batch
    # librdkafka can drop the callback's pause (see writer/stages/poll.py): then the first message fetched pauses
    # its partition again, and is carried over to the next batch. Never more than that one.
    carried = _offsets(worker.poller.carry_over)
    assert carried in ([], [0]), carried
    worker.poller.resume(RETRY_PAUSE)
    assert carried + _consumed_offsets(worker.consumer, 3) == list(range(20))  # each message exactly once


def test_a_pause_librdkafka_dropped_lets_at_most_one_message_through(worker_factory, kafka_bootstrap, topic):
    produce(kafka_bootstrap, topic, [encoded(n) for n in range(20)], partition=0)
    worker, _ = worker_factory()
    worker.poller.pause(RETRY_PAUSE)
    assert _join_paused(worker, topic)
    worker.consumer.resume(worker.consumer.assignment())  # what a dropped pause amounts to: fetched all the same
    deadline = time.monotonic() + 30
    while not worker.poller.carry_over:
        assert time.monotonic() < deadline, "the resumed partition was never fetched"
        worker.poller.poll(0.1)
    _serve_paused(worker, 1.5)
    carried = _offsets(worker.poller.carry_over)
    assert carried == [0]  # not the whole backlog: the first message paused its partition again
    worker.poller.resume(RETRY_PAUSE)
    assert carried + _consumed_offsets(worker.consumer, 3) == list(range(20))


def _replay_scope(topic: str, start: int) -> ReplayScope:
    plan = SimpleNamespace(topic=topic, ends={0: 20}, positions=[start], finished=[0], assign_explicitly=True,
                           private_group=None, self_assigned=False, dry_run=False)
    return ReplayScope(plan, 0, 1, "")  # type: ignore[arg-type]


def test_a_replay_member_assigned_during_a_retry_assigns_once_from_its_start(worker_factory, kafka_bootstrap,
                                                                              topic):
    produce(kafka_bootstrap, topic, [encoded(n) for n in range(20)], partition=0)
    worker, _ = worker_factory()
    worker.replay = _replay_scope(topic, 15)  # --since: the window starts at offset 15
    worker.poller.pause(RETRY_PAUSE)
    rebalance_assign(worker, [TopicPartition(topic, 0)])
    assert fetched(worker.consumer, 1.5) == 0
    worker.poller.resume(RETRY_PAUSE)
    assert fetched(worker.consumer, 3) == 5  # offsets 15..19 only


def test_an_eager_replay_member_assigns_from_its_start(worker_factory, kafka_bootstrap, topic):
    produce(kafka_bootstrap, topic, [encoded(n) for n in range(20)], partition=0)
    worker, _ = worker_factory(broker__partition_assignment_strategy="roundrobin")
    worker.replay = _replay_scope(topic, 12)
    assignment, polled = _join(worker, topic)
    assert assignment
    assert polled + fetched(worker.consumer, 3) == 8  # offsets 12..19 only


# --- item 4: an offset commit to a broker that stopped answering ends --------------------------------------------


def test_a_commit_to_a_stopped_broker_counts_as_failed_and_is_kept(migrated_database, topic):
    with MockKafka() as kafka:
        produce(kafka.bootstrap_servers, topic, [encoded(n) for n in range(5)], partition=0)
        # A session longer than the stop below: at the default 10 s the consumer's own session timer would give
        # the partition up (lost) as the commit's answer wait ends, and there would be nothing left to keep.
        worker, _ = make_worker(migrated_database, kafka.bootstrap_servers, topic, broker__session_timeout_ms=45000)
        try:
            _, polled = _join(worker, topic)
            assert polled + fetched(worker.consumer, 2) == 5
            worker.committer.commit({Partition(topic, 0): 5})  # answered: committed (or refused while settling)
            for _ in range(10):
                if not worker.book.uncommitted:
                    break
                worker.consumer.poll(0.5)
                worker.committer.commit({}, retry=True)
            assert worker.book.uncommitted == {}
            kafka.pause()  # SIGSTOP: connections stay open, nothing answers
            failures = worker.metrics.commit_failures._value.get()
            committing = threading.Thread(target=worker.committer.commit, args=({Partition(topic, 0): 6},),
                                          daemon=True)
            committing.start()
            committing.join(40)  # a synchronous commit waits for minutes here
            assert not committing.is_alive(), "the commit waited for the stopped broker"
            assert worker.book.uncommitted == {(topic, 0): 6}  # retried later
            assert worker.metrics.commit_failures._value.get() == failures + 1
        finally:
            kafka.resume()
            worker.consumer.close()
            worker.writes.writer.close()


# --- item 7: splitting a timed-out batch polls between halves, under one give-up deadline ---------------------------


class _RecordingConsumer:
    """The worker's consumer, every poll recorded in ``events``."""

    def __init__(self, consumer, events: list) -> None:
        self._consumer, self._events = consumer, events

    def poll(self, timeout=None):
        self._events.append(("poll", time.monotonic()))
        return self._consumer.poll(timeout)

    def __getattr__(self, name):
        return getattr(self._consumer, name)


def test_a_split_batch_polls_between_halves_and_gives_up_once(worker_factory, migrated_database, monkeypatch):
    from writer.storage import WriteTimedOut

    worker, _ = worker_factory(storage__write_timeout_s=1, storage__retry_max_seconds=3)
    events: list = []
    monkeypatch.setattr(worker.poller, "consumer", _RecordingConsumer(worker.consumer, events))
    writer = worker.writes.writer
    real_write = writer.write
    monkeypatch.setattr(writer, "write", lambda rows: (events.append(("write", time.monotonic())),
                                                       real_write(rows))[1])
    with migrated_database.connect() as holder:
        holder.execute("BEGIN; LOCK TABLE new_reports IN ACCESS EXCLUSIVE MODE")  # every write times out
        started = time.monotonic()
        job = worker.write_thread.submit(ParsedBatch(rows=make_rows(range(4)), origins=[None] * 4))
        worker._wait_for(job)  # the main thread, while the write thread splits and retries
        try:
            job.result()
        except WriteTimedOut:
            pass
        else:
            raise AssertionError("a write behind the lock succeeded")
        holder.execute("ROLLBACK")
    kinds = [kind for kind, _ in events]
    writes = [i for i, kind in enumerate(kinds) if kind == "write"]
    assert len(writes) >= 3, kinds  # the batch, its first half, that half's first row...
    # The consumer is polled while the halves are written (it used to wait write_timeout_s per timed-out write).
    assert "poll" in kinds[writes[0]:writes[1]] or "poll" in kinds[writes[1]:writes[2]], kinds
    last_attempt = max(at for kind, at in events if kind == "write")
    # One deadline: no attempt starts after retry_max_seconds (+ one write_timeout for a split at its edge);
    # with a deadline per half, the first row alone retried for 3 s after the two timed-out splits.
    assert last_attempt - started < 3 + 1
