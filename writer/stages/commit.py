"""Commit stage: a stored batch's offsets committed to Kafka, asynchronously, with a bounded wait for the answer.

What ``OffsetCommitter.commit`` guarantees:

- it is called only once the batch's rows are stored (and its dead letters
  acknowledged), batch after batch in order, so an offset is never committed
  before the database commit of the batch it belongs to;
- only owned partitions are committed, merged with earlier offsets whose
  commit failed (``partitions.PartitionBook``);
- the answer (``on_commit``) is waited for at most ``COMMIT_WAIT_S``, after
  SIGTERM at most until the stop deadline; an unanswered or refused commit
  is counted (``offset_commit_failures``), logged (while idle: once per
  ``_COMMIT_WARNING_INTERVAL_S``) and its offsets kept for the next commit:
  the rows are stored, a re-read only finds duplicates;
- a fatal error (the consumer is unusable) is raised, never retried.

A synchronous commit has no bound, hence the asynchronous one; its answer is
recognised by its partitions and offsets (``CommitAnswers``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from writer.metrics import Metrics
from writer.partitions import Partition, PartitionBook
from writer.stages.poll import Poller
from writer.stages.stop import StopRequest

log = logging.getLogger("writer.worker")

# While offset commits keep failing between batches, at most one warning per this many seconds.
_COMMIT_WARNING_INTERVAL_S = 30.0
# How long an offset commit's answer is waited for (after SIGTERM: at most until the stop deadline).
# Unanswered, the commit counts as failed and is retried: the rows are stored, a re-read only finds duplicates.
COMMIT_WAIT_S = 10.0
# The commit's answer queues behind the messages fetched before it, so the wait polls them into carry_over. Pausing
# throws librdkafka's prefetched messages away (fetched again on resume, ~0.5 s a batch on a backlog), so fetching
# pauses only once the answer is late (broker trouble) with a batch carried, or the carried messages reach the limit.
COMMIT_PAUSE_AFTER_S = 0.5
CARRY_OVER_LIMIT = 1000
_WAIT_STEP_S = 0.05  # each poll of the wait: it returns on a message, not on the answer
_PAUSE_REASON = "offset commit late"


class CommitAnswers:
    """The consumer's ``on_commit`` callback (runs inside poll, in the consumer's thread): which commit answered how.

    Made before the consumer (its configuration names the callback), read by the ``OffsetCommitter``. An answer
    names the partitions and offsets committed: it is the waited commit's when they match (a missing or extra
    answer shifts nothing). Without them, order decides: librdkafka answers commits in the order they were sent."""

    def __init__(self) -> None:
        self.sent = 0
        self.answered = 0
        self.answer: KafkaError | None = None  # of the commit waited for, once answered
        self._waited_for = 0
        self._waited_offsets: dict[tuple[str, int], int] = {}
        self._waited_answered = True
        self._unwaited: list[dict[tuple[str, int], int]] = []  # commits sent without waiting (a revocation's)

    def expect(self, offsets: list[TopicPartition], wait: bool = True) -> int:
        """A commit of ``offsets`` is sent; returns its number. ``wait``: its answer is the one waited for."""
        self.sent += 1
        if wait:
            self._waited_for = self.sent
            self._waited_offsets = _named(offsets)
            self._waited_answered = False
            self.answer = None
        else:
            self._unwaited.append(_named(offsets))
        return self.sent

    def waiting(self, number: int) -> bool:
        return number == self._waited_for and not self._waited_answered

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition] | None) -> None:
        self.answered += 1
        if self.answered > self.sent:
            log.warning("more offset commit answers than commits sent; counting again from here")
            self.answered = self.sent
        problem = error or next((tp.error for tp in partitions or [] if tp.error is not None), None)
        named = _named(partitions or [])
        waited = named == self._waited_offsets if named else self.answered == self._waited_for
        if waited and not self._waited_answered:
            self._waited_answered = True
            self.answer = problem
            self.answered = max(self.answered, self._waited_for)
        elif named in self._unwaited:
            self._unwaited.remove(named)
            if problem is not None:
                log.info("offset commit of revoked partitions failed (%s); their next owner reads those messages "
                         "again and skips them as duplicates", problem.str())
        # Else a late answer to a commit given up on: its offsets were kept for the next commit, nothing to do.


def _named(partitions: list[TopicPartition]) -> dict[tuple[str, int], int]:
    return {(tp.topic, tp.partition): tp.offset for tp in partitions}


class OffsetCommitter:
    def __init__(self, consumer: Any, answers: CommitAnswers, book: PartitionBook, poller: Poller, stop: StopRequest,
                 metrics: Metrics, batch_size: int, waiting_for_kafka: Callable[[], AbstractContextManager[object]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.consumer = consumer
        self._book = book
        self._poller = poller
        self._stop = stop
        self._metrics = metrics
        self._batch_size = batch_size
        self._waiting_for_kafka = waiting_for_kafka  # heartbeat: blocked on the broker, not hung
        self._clock = clock
        self._last_warning = -_COMMIT_WARNING_INTERVAL_S
        self._answers = answers
        self._failing = False  # the last waited commit failed: the next success is a recovery worth a log line

    def commit(self, next_offsets: Mapping[Partition, int], retry: bool = False, until: float = float("inf")) -> None:
        """Commit ``next_offsets`` with the offsets of earlier failed commits; see the module docstring.

        ``retry``: no new batch, only failed offsets again (while idle, or closing)."""
        # Offsets whose commit failed (e.g. "rebalance in progress") are committed with the next batch, or
        # on their own while no message comes: else the end of a stream would stay uncommitted for ever.
        offsets = self._book.offsets_to_commit(next_offsets)
        if not offsets:
            return
        try:
            with self._waiting_for_kafka():
                failure = self._commit_waiting(offsets, min(until, self._clock() + self._stop.time_left(COMMIT_WAIT_S)))
        finally:
            self._book.commit_ended()
        if failure is not None:
            # The rows are stored; whoever consumes these messages again skips them as duplicates. A partition
            # revoked during the wait is not kept: its next owner commits it.
            self._book.keep_uncommitted(offsets)
            self._metrics.commit_failures.inc()
            self._failing = True
            now = self._clock()
            if not retry or now - self._last_warning >= _COMMIT_WARNING_INTERVAL_S:
                self._last_warning = now
                log.warning("offset commit failed (%s); retrying with the next batch or poll%s", failure,
                            " (while idle)" if retry else "")
            return
        # Offsets merely deferred (a revocation's batch commits the other partitions later) were never failed.
        if self._failing:
            log.info("offset commit retried successfully: %s", describe(offsets))
            self._failing = False
        self._metrics.last_commit.set(time.time())

    def commit_without_waiting(self, next_offsets: Mapping[Partition, int]) -> None:
        """Send the commit of ``next_offsets`` (owned partitions only), without waiting for its answer.

        Inside a rebalance callback, which cannot poll: for partitions about to be revoked, whose offsets would
        otherwise be left to their next owner. A failure is logged, not retried (the partitions are gone)."""
        offsets = {partition: offset for partition, offset in next_offsets.items() if self._book.owns(partition)}
        if not offsets:
            return
        partitions = [TopicPartition(p.topic, p.number, o) for p, o in offsets.items()]
        try:
            self.consumer.commit(offsets=partitions, asynchronous=True)
        except KafkaException as error:
            if error.args[0].fatal():
                raise
            log.info("offset commit of revoked partitions failed (%s); their next owner reads those messages "
                     "again and skips them as duplicates", error.args[0].str())
            return
        self._answers.expect(partitions, wait=False)  # last_commit: only a commit known to have succeeded

    def _commit_waiting(self, offsets: Mapping[Partition, int], deadline: float) -> str | None:
        """Commit ``offsets`` and poll until the answer or ``deadline``; returns why it failed, None if not.

        Messages polled meanwhile are handled in the next batches (carried over); fetching pauses until the
        answer once it is late with a batch carried (by count or bytes), or ``CARRY_OVER_LIMIT`` messages are
        carried."""
        partitions = [TopicPartition(p.topic, p.number, o) for p, o in offsets.items()]
        # Only the commit call's own refusal is a failed commit. What the polls below raise comes from callbacks
        # (a revocation finishing a batch whose dead letters fail, say) and must reach the main loop as it is:
        # read as a failed commit, it left the worker running on with every later batch unfinished.
        try:
            self.consumer.commit(offsets=partitions, asynchronous=True)
        except KafkaException as refused:
            if refused.args[0].fatal():  # the consumer is unusable: retrying would run on with a dead consumer
                raise
            return str(refused.args[0].str())
        number = self._answers.expect(partitions)
        late = self._clock() + COMMIT_PAUSE_AFTER_S
        carry_limit = max(self._batch_size, CARRY_OVER_LIMIT)
        try:
            while self._answers.waiting(number):
                if self._stop.requested:  # SIGTERM during the wait: the stop bound wins
                    deadline = min(deadline, self._stop.deadline - 1)
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return f"no answer within {COMMIT_WAIT_S:g} s" if not self._stop.requested \
                        else "no answer before stopping"
                self._poller.poll(min(remaining, _WAIT_STEP_S))
                # Late, a batch by bytes counts too: a few large reports would otherwise pile up to the count.
                if len(self._poller.carry_over) >= carry_limit or (
                        self._clock() >= late and self._poller.carries_a_batch(self._batch_size)):
                    self._poller.pause(_PAUSE_REASON)
        finally:
            self._poller.resume(_PAUSE_REASON)
        error = self._answers.answer
        if error is None:
            return None
        if error.fatal():  # the consumer is unusable: retrying would run on with a dead consumer
            raise KafkaException(error)
        return str(error.str())


def describe(partitions: Any) -> str:
    """``topic[index], ...`` of TopicPartitions or Partitions."""
    return ", ".join(f"{p.topic}[{p.partition if isinstance(p, TopicPartition) else p.number}]"
                     for p in partitions) or "none"
