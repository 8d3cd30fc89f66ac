"""Worker process: one member of the consumer group, storing batches of messages.

What a batch guarantees (``Worker.handle_batch``), in order:

1. every message is parsed: a valid one becomes a row, an invalid one a
   rejection (counted, logged with topic/partition/offset and reason); in a
   replay, messages outside its range or time window are first left out
   (``replay_worker.ReplayScope.admits``);
2. the rows are written in one transaction (``storage.BatchWriter``); while a
   transient database error lasts, the same rows are retried with exponential
   backoff and jitter, the partitions are paused and the consumer keeps
   polling so the worker keeps its group membership; rows the database refuses
   become rejections;
3. rejections go to the dead-letter topic (when configured) and are
   acknowledged;
4. only then the offsets are committed: for each partition still assigned,
   the offset after the last message of the batch;
5. payload-tracker statuses are queued on the tracker's own producer (best
   effort: never waited for, see ``writer.tracker``).

A crash anywhere before step 4 leaves the offsets where they were: the batch
is consumed again and the idempotent write skips what was already stored.

Stop time: a worker exits within ``shutdown_timeout_s`` (default 20 s) of
SIGTERM in every state. The retry sleep ends at once and no further attempt
is made; a write in progress is cut short after half that time (the
watchdog shuts its socket down); closing (last commit, leaving the group,
the producers' flushes) gets the rest. What was not committed is consumed
again later.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import sys
import time
from collections import defaultdict
from typing import cast

import orjson
import tenacity
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from writer import exit_codes
from writer.config import Config
from writer.copy_rows import split_repeats, unique_by_key
from writer.database import conninfo
from writer.dead_letters import DeadLetterError, DeadLetters
from writer.kafka_options import consumer_options, producer_options
from writer.logs import LIBRDKAFKA_LOGGER
from writer.memory import peak_rss_kib
from writer.message import (
    CURRENT_SCHEMA_VERSION,
    FUTURE_TIMESTAMP,
    INVALID_TIMESTAMP,
    REFUSED_BY_DATABASE,
    Rejection,
    Row,
    parse_message,
)
from writer.metrics import NO_LONGER_OWNED, Metrics
from writer.status import WorkerStatus
from writer.storage import BatchWriter, FatalDatabaseError, TransientDatabaseError, WriteResult, WriteTimedOut
from writer.tracker import ERROR, PROCESSED, RECEIVED, SUCCESS, PayloadTracker, tracker_producer_options

log = logging.getLogger("writer.worker")

# Rejections found after parsing (the original counted these messages as parsed).
_REJECTED_AFTER_PARSE = {INVALID_TIMESTAMP, FUTURE_TIMESTAMP}
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


class Worker:
    def __init__(self, config: Config, status: WorkerStatus, group_id: str | None = None, replay=None) -> None:
        self.config = config
        self.status = status
        self.topic = config.broker.topic
        processing = config.processing
        self.batch_size = processing.batch_size
        self.batch_timeout = processing.batch_timeout_ms / 1000
        self.shutdown_timeout = processing.shutdown_timeout_s
        self.metrics = Metrics(config.metrics.namespace)
        self.stopping = False
        self.stop_deadline = float("inf")
        self.assigned: set[tuple[str, int]] = set()
        self.retrying_write = False
        self.carry_over: list = []  # messages polled while paused, handled in the next batch
        self.parent_pid = os.getppid()  # the supervisor; when it is gone, this worker stops
        self.uncommitted: dict[tuple[str, int], int] = {}  # offsets of stored batches whose commit failed
        self.last_commit_warning = -_COMMIT_WARNING_INTERVAL_S
        # Commits are asynchronous (a synchronous one has no bound); their answers come in order.
        self.commits_sent = 0
        self.commits_answered = 0
        self.commit_answer: KafkaError | None = None  # of the commit waited for (commits_sent)

        self.replay = replay  # a replay_worker.ReplayScope in replay mode
        if replay is not None and replay.plan.private_group:
            group_id = replay.plan.private_group  # self-assigned: never the live group, even by mistake
        options = consumer_options(config, group_id)
        options.update({"error_cb": self._on_kafka_error, "stats_cb": self._on_stats, "on_commit": self._on_commit,
                        "logger": logging.getLogger(LIBRDKAFKA_LOGGER)})
        if replay is not None:
            options["enable.partition.eof"] = True  # a replay's partition may end on offsets no message fills
        self.consumer = Consumer(options)
        # Two producers: dead letters are guaranteed (flushed before the commit), tracker statuses are
        # best effort; sharing one made a tracker outage cost every batch the dead letters' flush.
        # A dry run writes nothing anywhere: no rows, no dead letters, no tracker statuses.
        dry_run = replay is not None and replay.plan.dry_run
        self.producer = None
        self.dead_letters = None
        if config.broker.dead_letter_topic and not dry_run:
            self.producer = Producer({**producer_options(config), "error_cb": self._on_kafka_error,
                                      "logger": logging.getLogger(LIBRDKAFKA_LOGGER)})
            self.dead_letters = DeadLetters(self.producer, config.broker.dead_letter_topic)
        self.tracker = None
        if config.tracker.topic and not dry_run:
            tracker_producer = Producer({
                **tracker_producer_options(producer_options(config), config.tracker.auto_create_topic),
                "error_cb": lambda error: log.warning("Kafka (payload tracker): %s", error.str()),
                "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
            })
            self.tracker = PayloadTracker(tracker_producer, config.tracker.topic,
                                          config.tracker.service_name, self.metrics.tracker_dropped.inc)
        if dry_run:
            from writer.dry_run import DryRunWriter

            self.writer: BatchWriter = DryRunWriter(conninfo(config), config.metrics.namespace,
                                                     config.storage.write_timeout_s)
        else:
            self.writer = BatchWriter(conninfo(config), config.storage.log_sql_queries,
                                      config.storage.write_timeout_s)
        self.retry_limit = config.storage.retry_max_seconds
        self.give_up_at = float("inf")  # one deadline per batch write, across the halves of a split batch
        self.write_retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientDatabaseError),
            wait=tenacity.wait_exponential_jitter(initial=0.25, max=10, jitter=0.5),
            # Also when stopping: the batch is consumed again after the restart. No sleep past the deadline.
            stop=lambda state: self.stopping or time.monotonic() + state.upcoming_sleep >= self.give_up_at,
            sleep=self._sleep_keeping_membership,
            before_sleep=self._log_retry,
            reraise=True,
        )

    # ---- lifecycle -------------------------------------------------------

    def request_stop(self, *_signal_args) -> None:
        """SIGTERM: see "Stop time" in the module docstring. Runs in a signal handler: assignments only."""
        if not self.stopping:
            self.stopping = True
            self.stop_deadline = time.monotonic() + self.shutdown_timeout
            self.writer.watchdog.abort_by(time.monotonic() + self.shutdown_timeout / 2)

    def _time_left(self, at_most: float) -> float:
        """``at_most`` seconds, or less when stopping (keeping a second for what follows)."""
        if not self.stopping:
            return at_most
        return max(0.0, min(at_most, self.stop_deadline - time.monotonic() - 1))

    def _stop_if_orphaned(self) -> None:
        """A worker whose supervisor died (SIGKILL, OOM) stops like on SIGTERM instead of running on unsupervised."""
        if not self.stopping and os.getppid() != self.parent_pid:
            log.warning("the supervisor (pid %d) is gone: stopping", self.parent_pid)
            self.request_stop()

    def run(self) -> int:
        if self.replay is not None and self.replay.self_assigned:
            # No group join and nothing in self.assigned: _commit commits nothing.
            self.status.assigned(self.replay.assign(self.consumer))
        else:
            self.consumer.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
            )
        status = exit_codes.OK
        try:
            while not self.stopping:
                carried, self.carry_over = self.carry_over[:self.batch_size], self.carry_over[self.batch_size:]
                room = self.batch_size - len(carried)
                fresh = self.consumer.consume(num_messages=room, timeout=self.batch_timeout) if room > 0 else []
                messages = carried + fresh
                self.status.polled()
                if messages:
                    self.handle_batch(messages)
                    if self.replay is not None:
                        self.replay.batch_finished(self.consumer)
                else:
                    if self.uncommitted:
                        self._commit({}, retry=True)
                    if self.tracker is not None:
                        self.tracker.serve()  # delivery reports (drops) are counted while idle too
                self._stop_if_orphaned()
        except TransientDatabaseError as error:
            if self.stopping:
                log.warning("stopping while the database is unavailable (%s); the batch was not committed "
                            "and will be consumed again", error)
            else:
                log.error("database still unavailable after retrying for retry_max_seconds (%s); the batch was "
                          "not committed and will be consumed again", error)
                status = exit_codes.STORAGE_ERROR
        except FatalDatabaseError as error:
            log.error("database error that retrying cannot fix: %s", error)
            status = exit_codes.STORAGE_ERROR
        except DeadLetterError as error:
            if self.stopping:
                log.warning("stopping before the dead letters were acknowledged (%s); the batch was not "
                            "committed and will be consumed again", error)
            else:
                log.error("dead letters not delivered, offsets not committed: %s", error)
                status = exit_codes.PRODUCER_ERROR
        except KafkaException as error:
            log.error("Kafka consumer error: %s", error)
            status = exit_codes.CONSUMER_ERROR
        finally:
            self._close()
        return status

    def _close(self) -> None:
        try:
            # Workers stopping together start a rebalance that refuses commits;
            # serving it briefly lets the last batch's offsets through.
            deadline = time.monotonic() + self._time_left(5)
            while self.uncommitted and time.monotonic() < deadline:
                self.consumer.poll(0.2)  # a message polled here is not committed: it is consumed again later
                self._commit({}, retry=True, until=deadline)
            self.consumer.close()  # leaves the group, so its partitions move at once
        except Exception as error:  # noqa: BLE001
            log.warning("closing the consumer failed: %s", error)
        if self.producer is not None:
            self.producer.flush(self._time_left(5))
        if self.tracker is not None:
            self.tracker.close(self._time_left(2))
        self.writer.close()
        self.status.stopped()
        log.info("worker stopped", extra={"peak_rss_kib": peak_rss_kib()})

    # ---- one batch -------------------------------------------------------

    def handle_batch(self, messages: list) -> None:
        """Parse, store, dead-letter, commit, track: see the module docstring."""
        started = time.perf_counter()
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        rows: list[Row] = []
        source = {}
        rejections: list[tuple[object, Rejection]] = []
        next_offsets: dict[tuple[str, int], int] = {}
        consumed = 0
        debug = log.isEnabledFor(logging.DEBUG)
        for message in messages:
            error = message.error()
            if error is not None:
                # librdkafka reports an unusable consumer as _FATAL: stop (exit 2), nothing of this batch committed.
                if error.fatal() or error.code() == KafkaError._FATAL:
                    raise KafkaException(error)
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", error.str(),
                                extra={"topic": message.topic(), "partition": message.partition()})
                    self.metrics.original["consuming_errors"].inc()
                elif self.replay is not None:
                    self.replay.reached_end(message, next_offsets)
                continue
            if self.replay is not None and not self.replay.admits(message, next_offsets):
                continue
            consumed += 1
            offset = message.offset()
            # Within a partition messages come in offset order: the last one's offset wins.
            next_offsets[(message.topic(), message.partition())] = offset + 1
            result = parse_message(message.value(), offset, now)
            if type(result) is Row:
                rows.append(result)
                source[id(result)] = message
                if debug:
                    log.debug("message parsed", extra=_where(message, result.org_id, result.cluster))
            else:
                rejections.append((message, cast(Rejection, result)))
        if not consumed:
            if next_offsets:  # only skipped messages or ends of partitions in a replay: they are done with
                self._commit(next_offsets)
            return

        write_started = time.perf_counter()
        written, repeated = self._write_rows(rows)
        self.metrics.write_duration.observe(time.perf_counter() - write_started)
        for row, reason in written.refused:
            rejections.append(
                (source[id(row)], Rejection(REFUSED_BY_DATABASE, reason, row.org_id, row.cluster, row.request_id))
            )
        for message, rejection in rejections:
            log.warning(
                "message rejected: %s", rejection.detail,
                extra={**_where(message, rejection.org_id, rejection.cluster), "reason": rejection.reason},
            )
        if self.dead_letters is not None and rejections:
            for message, rejection in rejections:
                self.dead_letters.send(message, rejection)
            with self.status.waiting_for_kafka():
                self.metrics.dead_letters.inc(self.dead_letters.flush(self._time_left(30)))

        # Counted before the offset commit: the rows are stored already, and whoever sees the commit sees the counts.
        self._count(consumed, rows, written, repeated, rejections)
        self._commit(next_offsets)
        if self.tracker is not None:
            self._track(rows, written, rejections)
        log.debug(
            "batch done", extra={"messages": consumed, "stored": written.stored,
                                 "duplicates": written.duplicates + len(repeated), "rejected": len(rejections),
                                 "seconds": round(time.perf_counter() - started, 4)},
        )

    def _write_rows(self, rows: list[Row]) -> tuple[WriteResult, list[Row]]:
        """Write every row; returns (what was written, repeats skipped as duplicates).

        A batch can hold several messages with one primary key: the first is
        written; a later one is tried only when the database refused the
        earlier (else it would be dropped as a "duplicate" of nothing).
        """
        total, skipped = WriteResult(), []
        pending = rows
        while pending:
            unique, repeats = unique_by_key(pending)
            written = self._write_with_retry(unique)
            _add(total, written)
            pending, duplicates = split_repeats(repeats, written.refused)
            skipped += duplicates
        return total, skipped

    def _write_with_retry(self, rows: list[Row]) -> WriteResult:
        self.give_up_at = time.monotonic() + self.retry_limit if self.retry_limit else float("inf")
        try:
            result = self._write_splitting(rows)
        finally:
            if self.retrying_write:
                self.retrying_write = False
                assignment = self.consumer.assignment()
                self.consumer.resume(self.replay.unfinished(assignment) if self.replay is not None else assignment)
        self.status.database_ok(True)  # only after a write that succeeded
        return result

    def _write_splitting(self, rows: list[Row]) -> WriteResult:
        """Retry transient errors; a batch whose write times out is split in two rather than retried as is."""
        retrying = self.write_retrying if len(rows) == 1 else self.write_retrying.copy(
            retry=tenacity.retry_if_exception(
                lambda error: isinstance(error, TransientDatabaseError) and not isinstance(error, WriteTimedOut)
            )
        )
        try:
            for attempt in retrying:
                with attempt:
                    if self.stopping and attempt.retry_state.attempt_number > 1:
                        raise TransientDatabaseError("stopping: the batch is left for after the restart")
                    with self.status.waiting_for_database():
                        return self.writer.write(rows)
        except WriteTimedOut as error:
            if len(rows) == 1 or self.stopping:
                raise
            if time.monotonic() >= self.give_up_at:
                raise
            log.warning("writing %d rows timed out (%s); writing them in two halves", len(rows), error)
            self.metrics.db_retries.inc()
        middle = len(rows) // 2
        self._keep_membership()  # each timeout took up to write_timeout_s without a poll
        result = self._write_splitting(rows[:middle])
        self._keep_membership()
        _add(result, self._write_splitting(rows[middle:]))
        return result

    def _keep_membership(self) -> None:
        """Serve the group protocol once without waiting, the partitions paused (see ``_sleep_keeping_membership``)."""
        self._sleep_keeping_membership(0)

    def _sleep_keeping_membership(self, seconds: float) -> None:
        """Wait before a retry while serving the group protocol, so the partitions stay ours."""
        if not self.retrying_write:
            self.retrying_write = True
            self.status.database_ok(False)
            self.consumer.pause(self.consumer.assignment())
        deadline = time.monotonic() + seconds
        while True:  # at least one poll, also for a sleep of 0
            message = self.consumer.poll(max(0.0, min(deadline - time.monotonic(), 0.5)))
            self.status.polled()
            self._stop_if_orphaned()
            if message is not None:
                self.carry_over.append(message)
            if deadline - time.monotonic() <= 0 or self.stopping:
                break

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        self.metrics.db_retries.inc()
        # before_sleep: tenacity has set both the failed outcome and the next action.
        error = state.outcome.exception() if state.outcome is not None else None
        retry_in = round(state.next_action.sleep, 2) if state.next_action is not None else None
        log.warning(
            "database unavailable, retrying the batch: %s", error,
            extra={"attempt": state.attempt_number, "retry_in_s": retry_in},
        )

    def _commit(self, next_offsets: dict[tuple[str, int], int], retry: bool = False,
                until: float = float("inf")) -> None:
        # Offsets whose commit failed (e.g. "rebalance in progress") are committed with the next batch, or
        # on their own while no message comes: else the end of a stream would stay uncommitted for ever.
        merged = dict(self.uncommitted)
        for position, offset in next_offsets.items():
            merged[position] = max(offset, merged.get(position, 0))
        self.uncommitted = {}
        offsets = [TopicPartition(t, p, o) for (t, p), o in merged.items() if (t, p) in self.assigned]
        if not offsets:
            return
        try:
            with self.status.waiting_for_kafka():
                failure = self._commit_waiting(offsets, min(until, time.monotonic() + self._time_left(COMMIT_WAIT_S)))
        except KafkaException as error:
            if error.args[0].fatal():  # the consumer is unusable: retrying would run on with a dead consumer
                raise
            failure = error.args[0].str()
        if failure is not None:
            # The rows are stored; whoever consumes these messages again skips them as duplicates. A partition
            # revoked during the wait is not kept: its next owner commits it.
            self.uncommitted = {(tp.topic, tp.partition): tp.offset for tp in offsets
                                if (tp.topic, tp.partition) in self.assigned}
            self.metrics.commit_failures.inc()
            now = time.monotonic()
            if not retry or now - self.last_commit_warning >= _COMMIT_WARNING_INTERVAL_S:
                self.last_commit_warning = now
                log.warning("offset commit failed (%s); retrying with the next batch or poll%s", failure,
                            " (while idle)" if retry else "")
            return
        if retry:
            log.info("offset commit retried successfully: %s", _describe(offsets))
        self.metrics.last_commit.set(time.time())

    def _commit_waiting(self, offsets: list[TopicPartition], deadline: float) -> str | None:
        """Commit ``offsets`` and poll until the answer or ``deadline``; returns why it failed, None if not.

        Messages polled meanwhile are handled in the next batches (``carry_over``); fetching pauses until the
        answer once it is late with a batch carried, or ``CARRY_OVER_LIMIT`` messages are carried."""
        self.consumer.commit(offsets=offsets, asynchronous=True)
        self.commits_sent += 1
        self.commit_answer = None
        paused = False
        late = time.monotonic() + COMMIT_PAUSE_AFTER_S
        carry_limit = max(self.batch_size, CARRY_OVER_LIMIT)
        try:
            while self.commits_answered < self.commits_sent:
                if self.stopping:  # SIGTERM during the wait: the stop bound wins
                    deadline = min(deadline, self.stop_deadline - 1)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return f"no answer within {COMMIT_WAIT_S:g} s" if not self.stopping else "no answer before stopping"
                message = self.consumer.poll(min(remaining, 0.05))  # returns on a message, not on the answer
                if message is not None:
                    self.carry_over.append(message)
                carried = len(self.carry_over)
                if not paused and (carried >= carry_limit or (carried >= self.batch_size and time.monotonic() >= late)):
                    paused = True
                    self.consumer.pause(self.consumer.assignment())
        finally:
            if paused:
                assignment = self.consumer.assignment()
                self.consumer.resume(self.replay.unfinished(assignment) if self.replay is not None else assignment)
        error = self.commit_answer
        if error is None:
            return None
        if error.fatal():  # the consumer is unusable: retrying would run on with a dead consumer
            raise KafkaException(error)
        return error.str()

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        self.commits_answered += 1
        if self.commits_answered == self.commits_sent:  # a late answer to a commit given up on changes nothing
            failed = next((tp.error for tp in partitions or [] if tp.error is not None), None)
            self.commit_answer = error or failed

    def _count(self, consumed: int, rows: list[Row], written: WriteResult, repeated: list[Row], rejections) -> None:
        original = self.metrics.original
        parsed = len(rows) + sum(1 for _, r in rejections if r.reason in _REJECTED_AFTER_PARSE)
        original["consumed_messages"].inc(consumed)
        original["parse_incoming_message"].inc(parsed)
        original["check_schema_version"].inc(parsed)
        original["marshal_report"].inc(parsed)
        original["shrink_report"].inc(parsed)
        original["check_last_checked_timestamp"].inc(len(rows))
        if rejections:
            original["consuming_errors"].inc(len(rejections))
            by_reason: defaultdict[str, int] = defaultdict(int)
            for _, rejection in rejections:
                by_reason[rejection.reason] += 1
            for reason, count in by_reason.items():
                self.metrics.rejected.labels(reason).inc(count)
        if written.stored:
            original["stored_messages"].inc(written.stored)
            original["stored_bytes"].inc(written.stored_bytes)
            self.metrics.rows_stored.inc(written.stored)
        duplicates = written.duplicates + len(repeated)
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        self.metrics.batch_size.observe(consumed)
        unexpected = [r for r in rows if r.version != CURRENT_SCHEMA_VERSION]
        if unexpected:
            self.metrics.unexpected_version.inc(len(unexpected))
            first = unexpected[0]
            log.warning(
                "%d messages with Version other than %d (stored anyway); first: offset %d, Version %s",
                len(unexpected), CURRENT_SCHEMA_VERSION, first.kafka_offset, first.version,
            )

    def _track(self, rows: list[Row], written: WriteResult, rejections) -> None:
        tracker = self.tracker
        if tracker is None:  # no tracker topic configured
            return
        refused = {id(row) for row, _ in written.refused}
        for row in rows:
            if row.request_id is not None and id(row) not in refused:
                tracker.send(row.request_id, (RECEIVED, PROCESSED, SUCCESS))
        for _, rejection in rejections:
            if rejection.request_id is not None:  # SPEC 7: received, processed, then success or error
                tracker.send(rejection.request_id, (RECEIVED, PROCESSED, ERROR))
        tracker.serve()  # delivery reports only: statuses never hold up the batch path

    # ---- Kafka callbacks (run inside consume/poll, in this thread) ----------

    def _on_assign(self, consumer, partitions) -> None:
        explicit = self.replay is not None and self.replay.plan.assign_explicitly
        # librdkafka keeps the application's pause flag of a partition across unassign and assign: set
        # it deliberately, or a partition revoked while paused would never be fetched again. A pause
        # before the assignment does not hold, so during a retry assign here (the client then does not).
        # One assign call at most: assigning a partition twice is refused (_CONFLICT).
        if explicit or self.retrying_write:
            start = self.replay.starting_offsets(partitions) if explicit else partitions  # the window's start
            if self._eager_rebalancing(consumer):
                consumer.assign(start)  # incremental_assign is refused under an eager strategy (_STATE)
            else:
                consumer.incremental_assign(start)
        self.assigned.update((p.topic, p.partition) for p in partitions)
        self.status.assigned(len(self.assigned))
        self.status.broker_up(True)
        if self.retrying_write:
            consumer.pause(partitions)
        else:
            consumer.resume(partitions)
        log.info("partitions assigned: %s", _describe(partitions))

    def _eager_rebalancing(self, consumer) -> bool:
        """range and roundrobin revoke everything at each rebalance and take assign(); cooperative-sticky
        takes incremental_assign(). (This client version has no rebalance_protocol(): the configuration says.)"""
        return not self.config.broker.partition_assignment_strategy.startswith("cooperative")

    def _on_revoke(self, consumer, partitions) -> None:
        # Between batches nothing is held: every batch is committed before the
        # next poll. During a database retry the rows of these partitions are
        # still written, but their offsets are left to the next owner, who
        # consumes them again and skips them as duplicates.
        revoked = {(p.topic, p.partition) for p in partitions}
        self.assigned.difference_update(revoked)
        # Messages polled but not handled yet: their next owner reads them again (an eager reassignment
        # would fetch them here a second time).
        self.carry_over = [m for m in self.carry_over if (m.topic(), m.partition()) not in revoked]
        for p in partitions:
            self.uncommitted.pop((p.topic, p.partition), None)
            self.metrics.consumer_lag.labels(p.topic, str(p.partition)).set(NO_LONGER_OWNED)
        self.status.assigned(len(self.assigned))
        try:
            consumer.resume(partitions)  # not paused if they come back (see _on_assign)
        except KafkaException as error:
            log.debug("resuming revoked partitions: %s", error)
        log.info("partitions revoked: %s", _describe(partitions))

    def _on_kafka_error(self, error: KafkaError) -> None:
        # One broker's transport error is no outage while others answer: librdkafka says when all are down.
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.status.broker_up(False)
        log.warning("Kafka: %s", error.str(), extra={"code": error.name()})

    def _on_stats(self, text: str) -> None:
        stats = orjson.loads(text)
        up = any(b.get("state") == "UP" and b.get("nodeid", -1) >= 0 for b in stats.get("brokers", {}).values())
        self.status.broker_up(up)
        for topic, data in stats.get("topics", {}).items():
            for partition, numbers in data.get("partitions", {}).items():
                lag = numbers.get("consumer_lag", -1)
                if lag >= 0 and (topic, int(partition)) in self.assigned:
                    self.metrics.consumer_lag.labels(topic, partition).set(lag)


def _add(total: WriteResult, part: WriteResult) -> None:
    total.stored += part.stored
    total.stored_bytes += part.stored_bytes
    total.duplicates += part.duplicates
    total.refused += part.refused


def _where(message, org_id=None, cluster=None) -> dict:
    where = {"topic": message.topic(), "partition": message.partition(), "offset": message.offset()}
    if org_id is not None:
        where["org_id"] = org_id
    if cluster is not None:
        where["cluster"] = cluster
    return where


def _describe(partitions) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "none"


def worker_main(config: Config, slot: int, status_array, group_id: str | None, replay_plan=None,
                workers: int = 1) -> None:
    """Entry point of a worker process (spawned by the supervisor)."""
    from writer import logs

    logs.setup(config, announce=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when workers stop
    status = WorkerStatus(status_array, slot)
    try:
        replay = None
        if replay_plan is not None:
            from writer.replay_worker import ReplayScope

            replay = ReplayScope(replay_plan, slot, workers, config.metrics.namespace)
        worker = Worker(config, status, group_id, replay)
    except Exception as error:  # noqa: BLE001 - report it as one line; the supervisor decides
        log.error("worker could not start: %s", error)
        sys.exit(exit_codes.CONSUMER_ERROR)
    signal.signal(signal.SIGTERM, worker.request_stop)
    sys.exit(worker.run())
