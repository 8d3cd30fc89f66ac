"""Worker process: one member of the consumer group, storing batches of messages.

The batch path, composed here from the stages in ``writer.stages`` (built
from the configuration by ``writer.worker_factory``):

    poll -> parse -> write (own thread) -> dead-letter -> count -> commit -> track

What a batch guarantees, in order:

1. every message is parsed (``stages.parse``): a valid one becomes a row, an
   invalid one a rejection (counted, logged with topic/partition/offset and
   reason); in a replay, messages outside its range or time window are first
   left out (``replay_worker.ReplayScope.admits``);
2. the rows are written in one transaction (``stages.write``); while a
   transient database error lasts, the same rows are retried with exponential
   backoff and jitter, the partitions are paused and the consumer keeps
   polling so the worker keeps its group membership; rows the database
   refuses become rejections;
3. rejections go to the dead-letter topic (when configured) and are
   acknowledged (``stages.dead_letter``);
4. only then the offsets are committed (``stages.commit``): for each
   partition still assigned, the offset after the last message of the batch;
5. payload-tracker updates are queued on the tracker's own producer (best
   effort: never waited for, see ``writer.tracker``).

A crash anywhere before step 4 leaves the offsets where they were: the batch
is consumed again and the idempotent write skips what was already stored.

Pipelining: batch N is written in the write thread while this thread polls
and parses batch N+1 (psycopg releases the GIL while the server works). At
most one write is in flight and one parsed batch waits for it; N+1's write
starts as soon as N's ends, then N's steps 3-5 run. Batches are finished in
the order they were polled, so offsets are committed in batch order, each
after the database commit of its own batch. The consumer (polls, callbacks,
offset commits) and the producers are used by this thread only. Memory: at
most the batch written, the batch waiting (or the one being finished), the
carry-over (up to ``max(batch_size, CARRY_OVER_LIMIT)`` messages) and
librdkafka's prefetch; while a write is retried, the partitions are paused
only once the next batch is parsed and waits for it.

Revocation (``_on_revoke``, inside a poll of this thread), before the
callback returns: the write in flight ends (at most ``REVOKE_WAIT_S``, or
the stop bound) and its batch is finished there (its dead letters within the
rest of ``REVOKE_BUDGET_S``); then every stored offset of the revoked
partitions (that batch's, and those of earlier batches whose commit was
refused, e.g. by the rebalance itself, or whose answer is still awaited) is
committed without waiting for the answer (a rebalance callback cannot poll;
a refusal is logged when it comes). Not in the revocation of
closing the consumer: that commit would hold the close as long as the
broker does not answer, and ``_close`` has committed what it could before. The other partitions'
offsets are committed with the next batch. A write being retried is not
waited for: its rows are still written, but its offsets (and replay
progress) of the revoked partitions are dropped, as is everything of them
polled but not written (carried over, gathered, or parsed and waiting for
the write thread): their next owner reads those messages again (and skips
what is stored as duplicates). Once a batch failed (``halted``), a
revocation, closing included, finishes nothing: no offset past the failed
batch is committed (``_close`` commits the stored offsets of the batches
before it). Lost partitions (``_on_lost``: the group went on without this member)
are dropped the same way, without waiting and without any commit.

Stop time: a worker exits within ``shutdown_timeout_s`` (default 20 s) of
SIGTERM in every state (``stages.stop``). The retry sleep ends at once and no
further attempt is made; a write in progress is cut short after half that time
(the watchdog shuts its socket down), and a write thread still busy after that
is left behind; closing (last commit, leaving the group, the producers'
flushes) gets the rest. What was not committed is consumed again later.

Three words for three things: the ``heartbeat`` (``status.WorkerStatus``:
what /health and /ready see), the process's ``exit_code``, and the payload
tracker's ``updates`` (received, processed, success or error).
"""

from __future__ import annotations

import datetime
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException

from writer import exit_codes
from writer.config import Config
from writer.dead_letters import DeadLetterError, DeadLetters
from writer.memory import peak_rss_kib
from writer.message import REFUSED_BY_DATABASE, Rejection
from writer.metrics import NO_LONGER_OWNED, Metrics
from writer.partitions import NextOffsets, Partition, PartitionBook, merged, without
from writer.replay_worker import ReplayProgress, ReplayScope
from writer.stages.commit import OffsetCommitter, describe
from writer.stages.count import count_batch
from writer.stages.dead_letter import DEAD_LETTER_FLUSH_S, dead_letter
from writer.stages.parse import Message, ParsedBatch, parse_batch
from writer.stages.poll import Poller
from writer.stages.stop import StopRequest
from writer.stages.track import track
from writer.stages.write import RetryingWrite, WriteOutcome
from writer.stages.write_thread import InFlight, WriteThread
from writer.status import WorkerStatus
from writer.storage import FatalDatabaseError, TransientDatabaseError
from writer.tracker import PayloadTracker

log = logging.getLogger("writer.worker")

Job = InFlight[ParsedBatch, WriteOutcome]

# While a write is in flight and not retried, how often this thread looks up from waiting for it.
_WRITE_WAIT_STEP_S = 0.1
# While a write is retried, each poll serving the group (partitions paused) lasts at most this long.
_RETRY_POLL_S = 0.1
PAUSE_FOR_RETRY = "database write retried"
# After a stop request, the watchdog cuts a write at half the shutdown timeout; a write thread still busy this
# long after that is left behind (its batch uncommitted), so closing keeps its time.
_WATCHDOG_GRACE_S = 1.0
# A revocation holds up the whole group (eager: every member waits in JoinGroup), so its callback has one budget:
# at most REVOKE_WAIT_S for the write in flight (a healthy batch takes well under a second; a longer write goes on,
# but its offsets of the revoked partitions are left to their next owner), then the rest of REVOKE_BUDGET_S (at
# least 2 s) for the dead letters of its batch (not acknowledged by then: the worker stops, nothing committed).
REVOKE_WAIT_S = 8.0
REVOKE_BUDGET_S = 10.0
# Closing: at most this long serving a rebalance so the last offsets get through, then for the producers' flushes.
CLOSE_COMMIT_S = 5.0
CLOSE_DEAD_LETTERS_FLUSH_S = 5.0
CLOSE_TRACKER_FLUSH_S = 2.0


class Worker:
    def __init__(
        self, *, consumer: Any, poller: Poller, committer: OffsetCommitter, book: PartitionBook,
        writes: RetryingWrite, dead_letters: DeadLetters | None, dead_letter_producer: Any,
        tracker: PayloadTracker | None, metrics: Metrics, heartbeat: WorkerStatus, stop: StopRequest, topic: str,
        batch_size: int, batch_timeout_s: float, eager_rebalancing: bool, replay: ReplayScope | None = None,
        parent_pid: int | None = None, utc_now: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self.consumer = consumer
        self.poller = poller
        self.committer = committer
        self.book = book
        self.writes = writes
        self.dead_letters = dead_letters
        self.dead_letter_producer = dead_letter_producer
        self.tracker = tracker
        self.metrics = metrics
        self.heartbeat = heartbeat
        self.stop = stop
        self.topic = topic
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout_s
        self.eager_rebalancing = eager_rebalancing  # range/roundrobin: assign(); cooperative-sticky: incremental
        self.replay = replay  # a replay_worker.ReplayScope in replay mode
        self.parent_pid = parent_pid if parent_pid is not None else os.getppid()  # gone: this worker stops
        self._utc_now = utc_now or (lambda: datetime.datetime.now(datetime.UTC).replace(tzinfo=None))
        self.write_thread: WriteThread[ParsedBatch, WriteOutcome] = WriteThread(self._write)
        self.in_flight: Job | None = None  # handed to the write thread, not finished yet
        self.waiting: ParsedBatch | None = None  # parsed, waiting for the write in flight to end
        # A replay's progress of batches finished, held until a commit of their partitions' offsets succeeded.
        self.unpublished = ReplayProgress()
        # A batch failed (write, dead letters...), or the worker is closing: no batch is finished any more, so no
        # offset past a failed batch is committed (closing the consumer revokes: that callback finishes nothing).
        self.halted = False
        self.closing_consumer = False  # inside consumer.close(): its revocation sends no commit

    # ---- lifecycle -------------------------------------------------------

    def request_stop(self, *_signal_args: object) -> None:
        """SIGTERM: see "Stop time" in the module docstring. Runs in a signal handler: assignments only."""
        if self.stop.request():
            self.writes.writer.watchdog.abort_by(time.monotonic() + self.stop.shutdown_timeout / 2)

    def _stop_if_orphaned(self) -> None:
        """A worker whose supervisor died (SIGKILL, OOM) stops like on SIGTERM instead of running on unsupervised."""
        if not self.stop.requested and os.getppid() != self.parent_pid:
            log.warning("the supervisor (pid %d) is gone: stopping", self.parent_pid)
            self.request_stop()

    def run(self) -> int:
        if self.replay is not None and self.replay.self_assigned:
            # No group join and nothing in book.assigned: the commit stage commits nothing.
            self.heartbeat.assigned(self.replay.assign(self.consumer))
        else:
            self.consumer.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        exit_code = exit_codes.OK
        try:
            while not self.stop.requested:
                self._turn()
                self._stop_if_orphaned()
            self._finish_in_flight()
        except TransientDatabaseError as error:
            if self.stop.requested:
                log.warning("stopping while the database is unavailable (%s); the batch was not committed "
                            "and will be consumed again", error)
            else:
                log.error("database still unavailable after retrying for retry_max_seconds (%s); the batch was "
                          "not committed and will be consumed again", error)
                exit_code = exit_codes.STORAGE_ERROR
        except FatalDatabaseError as error:
            log.error("database error that retrying cannot fix: %s", error)
            exit_code = exit_codes.STORAGE_ERROR
        except DeadLetterError as error:
            if self.stop.requested:
                log.warning("stopping before the dead letters were acknowledged (%s); the batch was not "
                            "committed and will be consumed again", error)
            else:
                log.error("dead letters not delivered, offsets not committed: %s", error)
                exit_code = exit_codes.PRODUCER_ERROR
        except KafkaException as error:
            log.error("Kafka consumer error: %s", error)
            exit_code = exit_codes.CONSUMER_ERROR
        finally:
            self.halted = True
            self._close()
        return exit_code

    def _turn(self) -> None:
        """One turn of the main loop: poll a batch and hand it over, or, while no message comes, commit what
        failed before and serve the tracker."""
        between = self._finish_if_written if self.in_flight is not None else None
        messages = self.poller.gather(self.batch_size, self.batch_timeout, between)
        if messages:
            batch = self._parse(messages)
            self._hand_over(batch)
            return
        self._finish_if_written()
        if self.in_flight is None and self.book.uncommitted:
            self.committer.commit({}, retry=True)
            self._publish()
        if self.tracker is not None:
            self.tracker.serve()  # delivery reports (drops) are counted while idle too

    def _close(self) -> None:
        try:
            # Workers stopping together start a rebalance that refuses commits;
            # serving it briefly lets the last batch's offsets through.
            deadline = time.monotonic() + self.stop.time_left(CLOSE_COMMIT_S)
            while self.book.uncommitted and time.monotonic() < deadline:
                self.consumer.poll(0.2)  # a message polled here is not committed: it is consumed again later
                self.committer.commit({}, retry=True, until=deadline)
                self._publish()
            self.closing_consumer = True
            self.consumer.close()  # leaves the group, so its partitions move at once
        except Exception as error:  # noqa: BLE001
            log.warning("closing the consumer failed: %s", error)
        if self.dead_letter_producer is not None:
            self.dead_letter_producer.flush(self.stop.time_left(CLOSE_DEAD_LETTERS_FLUSH_S))
        if self.tracker is not None:
            self.tracker.close(self.stop.time_left(CLOSE_TRACKER_FLUSH_S))
        # A write still in flight here (the worker stops on an error of another batch) is not waited for: its
        # batch is not committed. The connection is closed only by the thread's owner, once the thread ended.
        writing = self.in_flight is not None and not self.in_flight.done()
        if self.write_thread.stop(0 if writing else self.stop.time_left(1)):
            self.writes.writer.close()
        self.heartbeat.stopped()
        log.info("worker stopped", extra={"peak_rss_kib": peak_rss_kib()})

    # ---- one batch -------------------------------------------------------

    def _parse(self, messages: list[Message]) -> ParsedBatch:
        batch = parse_batch(messages, self._utc_now(), self.replay)
        if batch.consumer_errors:
            self.metrics.original["consuming_errors"].inc(batch.consumer_errors)
        return batch

    def handle_batch(self, messages: list[Message]) -> None:
        """One batch from poll to track in this thread, no pipelining (the steps of the module docstring).

        For tests only: the database connection is the write thread's, and no group membership is kept while
        this write is retried."""
        job: Job = InFlight(self._parse(messages))
        job.complete(self._write(job), None)
        self._finish(job)

    def _hand_over(self, batch: ParsedBatch) -> None:
        """Start writing ``batch`` once the write in flight ended, then finish the batch that write belonged to."""
        previous = self.in_flight
        if previous is not None:
            self.waiting = batch  # a revocation meanwhile drops its messages of the revoked partitions
            try:
                self._wait_for(previous)
            finally:
                self.waiting = None
            self.in_flight = None
            # No new write after a failed one (its error is raised here, nothing after it is written or committed),
            # nor after a stop (the parsed batch is consumed again after the restart).
            if previous.error is not None or self.stop.requested:
                self._finish(previous)
                return
        elif self.stop.requested:
            return
        self.in_flight = self.write_thread.submit(batch)
        if previous is not None:
            self._finish(previous)

    def _finish_if_written(self) -> None:
        if self.in_flight is not None and self.in_flight.done():
            written, self.in_flight = self.in_flight, None
            self._finish(written)

    def _finish_in_flight(self) -> None:
        """Stopping: the write in flight ends (bounded by the stop rules) and its batch is finished if stored."""
        job = self.in_flight
        if job is not None:
            self._wait_for(job)  # a revocation meanwhile may finish it: ``_finish`` then does nothing
            self.in_flight = None
            self._finish(job)

    def _wait_for(self, job: Job) -> None:
        """Until ``job``'s write ends; while it is retried, the partitions are paused and the group served."""
        paused = False
        try:
            while not job.wait(0 if paused else _WRITE_WAIT_STEP_S):
                if job.in_trouble and not paused:
                    paused = True
                    self.poller.pause(PAUSE_FOR_RETRY)
                if paused:
                    self.poller.poll(_RETRY_POLL_S)
                self._stop_if_orphaned()
                if self.stop.requested and self.stop.clock() >= self._give_up_waiting_at():
                    raise TransientDatabaseError("the write in flight did not end before the stop deadline")
        finally:
            if paused:
                self.poller.resume(PAUSE_FOR_RETRY)

    def _give_up_waiting_at(self) -> float:
        return self.stop.deadline - self.stop.shutdown_timeout / 2 + _WATCHDOG_GRACE_S

    def _write(self, job: Job) -> WriteOutcome:
        """The write stage, run by the write thread (or by ``handle_batch``)."""
        batch = job.batch
        if not batch.consumed:
            return WriteOutcome()
        started = time.perf_counter()
        outcome = self.writes.write(batch.rows, on_trouble=lambda: self._write_in_trouble(job))
        if batch.rows:
            self.heartbeat.database_ok(True)  # only after a write that succeeded
        self.metrics.write_duration.observe(time.perf_counter() - started)
        return outcome

    def _write_in_trouble(self, job: Job) -> None:
        """Called by the write thread at the first retry or split of ``job``: the consumer's thread pauses."""
        job.in_trouble = True
        self.heartbeat.database_ok(False)

    def _finish(self, job: Job, revoking: set[Partition] | None = None, flush_s: float = DEAD_LETTER_FLUSH_S) -> None:
        """Steps 3-5 of a batch whose write ended (its error raised): dead letters, counts, commit, tracker.

        Once per batch, and never after a failed one (``halted``). ``revoking``: inside a revocation of these
        partitions (see the module docstring); ``flush_s``: how long its dead letters may take."""
        if job.finished or self.halted:
            return
        job.finished = True
        try:
            self._finish_batch(job, revoking, flush_s)
        except BaseException:
            self.halted = True
            self.unpublished = ReplayProgress()  # it may hold the failed batch's progress: nothing more is published
            raise

    def _finish_batch(self, job: Job, revoking: set[Partition] | None, flush_s: float) -> None:
        outcome = job.result()
        batch = job.batch
        if batch.consumed:
            rows = batch.rows
            rejections = batch.rejections + [
                (batch.origins[position],
                 Rejection(REFUSED_BY_DATABASE, why, rows[position].org_id, rows[position].cluster,
                           rows[position].request_id))
                for position, why in outcome.refused
            ]
            dead_letter(rejections, self.dead_letters, self.metrics, self.stop.time_left(flush_s),
                        self.heartbeat.waiting_for_kafka, self.stop.time_left)
            # Counted before the offset commit: the rows are stored already, and whoever sees the commit sees the
            # counts.
            count_batch(self.metrics, batch.consumed, rows, outcome, rejections)
            self._hold(batch.replay)
            self._commit(batch.next_offsets, revoking)
            if self.tracker is not None:
                track(self.tracker, rows, {position for position, _ in outcome.refused}, rejections)
            log.debug("batch done", extra={"messages": batch.consumed, "stored": outcome.stored,
                                           "duplicates": outcome.duplicates, "rejected": len(rejections)})
        else:
            self._hold(batch.replay)
            if batch.next_offsets:  # only skipped messages or ends of partitions in a replay: they are done with
                self._commit(batch.next_offsets, revoking)
        self._publish(revoking)

    def _hold(self, progress: ReplayProgress | None) -> None:
        """A finished batch's replay progress, held until its offsets are committed; before the commit, so that a
        revocation inside its wait forgets what it holds of the revoked partitions."""
        if self.replay is not None and progress is not None:
            self.unpublished.add(progress)

    def _publish(self, revoking: set[Partition] | None = None) -> None:
        """A replay's progress to the supervisor, for the partitions whose offsets are committed (see
        ``replay_worker``): none of them is failed, deferred or awaiting its answer (this may run in a revocation
        inside that wait). A revoked partition's is left to its next owner (its commit is not waited for)."""
        if self.replay is None:
            return
        if revoking:
            self.replay.forget(self.unpublished, self._numbers(revoking))
        pending = self.book.uncommitted.keys() | self.book.committing.keys()
        # A partition this worker does not own has no commit of its own to wait for: its next owner publishes it.
        unowned = {number for number in self.unpublished.positions
                   if not self.replay.self_assigned and not self.book.owns(Partition(self.topic, number))}
        self.replay.forget(self.unpublished, unowned)
        committed = {number for number in self.unpublished.positions if Partition(self.topic, number) not in pending}
        self.replay.batch_finished(self.consumer, self.unpublished.take(committed))

    def _numbers(self, partitions: set[Partition]) -> set[int]:
        return {p.number for p in partitions if p.topic == self.topic}

    def _commit(self, next_offsets: NextOffsets, revoking: set[Partition] | None) -> None:
        if revoking is None:
            self.committer.commit(next_offsets)
            return
        # The revoked partitions' go out with the revocation's own commit (``_commit_revoked``), the others' later.
        self.book.keep_uncommitted(next_offsets)

    def _commit_revoked(self, revoked: set[Partition]) -> None:
        """Inside a revocation: the revoked partitions' stored offsets, whose commit failed, was deferred, or awaits
        its answer, committed without waiting (else their next owner reads those batches again). Only offsets of
        batches stored (and dead-lettered) ever enter the book, so nothing is committed ahead of the database.

        Not in the revocation of ``consumer.close()``: it waits for every commit sent, and a broker that does not
        answer held it for minutes; ``_close`` has committed what it could before, within the stop bound."""
        if self.closing_consumer:
            return
        stored = merged(self.book.uncommitted, self.book.committing)
        self.committer.commit_without_waiting({p: o for p, o in stored.items() if p in revoked})

    def _finish_before_revocation(self, revoked: set[Partition]) -> None:
        """Inside a revocation: the write in flight ends and its batch is finished (see the module docstring)."""
        job = self.in_flight
        if job is None or self.halted:
            return
        clock = self.stop.clock
        started = clock()
        while not job.in_trouble and not job.wait(_WRITE_WAIT_STEP_S):
            now = clock()
            if now >= started + REVOKE_WAIT_S or (self.stop.requested and now >= self._give_up_waiting_at()):
                break
        if not job.done() or job.error is not None:
            return  # dropped below; a failed write is raised once the main loop finishes it
        self.in_flight = None
        self._finish(job, revoked, flush_s=started + REVOKE_BUDGET_S - clock())

    # ---- Kafka callbacks (run inside consume/poll, in this thread) ----------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        explicit = self.replay is not None and self.replay.plan.assign_explicitly
        # librdkafka keeps the application's pause flag of a partition across unassign and assign: set
        # it deliberately, or a partition revoked while paused would never be fetched again. A pause
        # before the assignment does not hold, so while paused assign here (the client then does not).
        # One assign call at most: assigning a partition twice is refused (_CONFLICT).
        if explicit or self.poller.paused:
            start = self.replay.starting_offsets(partitions) if explicit and self.replay else partitions
            if self.eager_rebalancing:
                consumer.assign(start)  # incremental_assign is refused under an eager strategy (_STATE)
            else:
                consumer.incremental_assign(start)
        self.book.assign(Partition(p.topic, p.partition) for p in partitions)
        self.heartbeat.assigned(len(self.book.assigned))
        self.heartbeat.broker_up(True)
        if self.poller.paused:
            consumer.pause(partitions)
        else:
            consumer.resume(partitions)
        log.info("partitions assigned: %s", describe(partitions))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        # See "Revocation" in the module docstring: the write in flight is finished if it ends in time, what is
        # not written yet is dropped.
        revoked = {Partition(p.topic, p.partition) for p in partitions}
        try:
            self._finish_before_revocation(revoked)
        finally:  # even when finishing failed (raised after the callback): what is stored is committed, then dropped
            try:
                self._commit_revoked(revoked)
            finally:
                self._forget(consumer, partitions, revoked)
        log.info("partitions revoked: %s", describe(partitions))

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        """Lost (the group went on without this member: they may be reassigned already): nothing of them is waited
        for or committed, a commit could only fail or move their next owner's offsets back."""
        self._forget(consumer, partitions, {Partition(p.topic, p.partition) for p in partitions})
        log.warning("partitions lost: %s; what was polled of them is left to their next owner", describe(partitions))

    def _forget(self, consumer: Any, partitions: list[Any], revoked: set[Partition]) -> None:
        """Everything of ``revoked`` not committed yet is dropped: their next owner reads those messages again."""
        self.book.revoke(revoked)
        self.poller.drop(revoked)
        numbers = self._numbers(revoked)
        if self.waiting is not None:
            self.waiting.drop(revoked)
            self._forget_progress(self.waiting.replay, numbers)
        if self.in_flight is not None:  # its rows are written all the same: neither committed nor published here
            self.in_flight.batch.next_offsets = without(self.in_flight.batch.next_offsets, revoked)
            self._forget_progress(self.in_flight.batch.replay, numbers)
        self._forget_progress(self.unpublished, numbers)
        for p in partitions:
            self.metrics.consumer_lag.labels(p.topic, str(p.partition)).set(NO_LONGER_OWNED)
        self.heartbeat.assigned(len(self.book.assigned))
        try:
            consumer.resume(partitions)  # not paused if they come back (see _on_assign)
        except KafkaException as error:
            log.debug("resuming revoked partitions: %s", error)

    def _forget_progress(self, progress: ReplayProgress | None, numbers: set[int]) -> None:
        if self.replay is not None and progress is not None:
            self.replay.forget(progress, numbers)


def worker_main(config: Config, slot: int, status_array: Any, group_id: str | None, replay_plan: Any = None,
                workers: int = 1) -> None:
    """Entry point of a worker process (spawned by the supervisor)."""
    from writer import logs
    from writer.worker_factory import build_worker

    logs.setup(config, announce=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when workers stop
    heartbeat = WorkerStatus(status_array, slot)
    try:
        replay = None
        if replay_plan is not None:
            replay = ReplayScope(replay_plan, slot, workers, config.metrics.namespace)
        worker = build_worker(config, heartbeat, group_id, replay)
    except Exception as error:  # noqa: BLE001 - report it as one line; the supervisor decides
        log.error("worker could not start: %s", error)
        sys.exit(exit_codes.CONSUMER_ERROR)
    signal.signal(signal.SIGTERM, worker.request_stop)
    quiet_garbage_collector()
    sys.exit(worker.run())


def quiet_garbage_collector() -> None:
    """Fewer collections: a batch makes no reference cycles, yet at the default threshold (700) a collection
    every ~400 messages traversed the batches in flight: 2-3 µs a message in the main thread (py-spy --native,
    gc.callbacks). Measured at 20,000 (2 workers, 100k varied messages): no collection at all in a replay,
    peak RSS unchanged (137-138 -> 140 MiB). What was allocated before is frozen: never traversed again."""
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
