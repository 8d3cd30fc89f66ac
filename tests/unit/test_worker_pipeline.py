"""The worker's main loop with fakes of its collaborators (no Kafka, no PostgreSQL): batch N+1 is polled and parsed
while batch N is written, offsets are committed in batch order after their own batch's write, a revocation drops
what is not written yet, refused rows are dead-lettered with their own message, a failed write commits nothing."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from types import SimpleNamespace

import orjson
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from tests.unit.test_batch_stages import FakeMessage, valid
from writer import exit_codes
from writer.dead_letters import DeadLetterError, DeadLetters
from writer.message import REFUSED_BY_DATABASE
from writer.metrics import Metrics
from writer.partitions import Partition, PartitionBook
from writer.replay_options import Window
from writer.replay_worker import ReplayProgress, ReplayScope
from writer.stages.commit import CommitAnswers, OffsetCommitter
from writer.stages.poll import Poller
from writer.stages.stop import StopRequest
from writer.stages.write import RetryingWrite
from writer.status import DATABASE_OK, WIDTH, WorkerStatus
from writer.storage import FatalDatabaseError, TransientDatabaseError, WriteResult
from writer.watchdog import Watchdog
from writer.worker import REVOKE_BUDGET_S, Worker

WAIT_S = 10  # bound of every wait for the worker's thread (a failing test fails, it does not hang)


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.005)


class FakeConsumer:
    """Hands out the scripted batches, one per consume(); answers commits on the next poll (as on_commit does);
    assigns ``partitions`` at the first consume; ``revoke_on_poll`` (``revoke_on_consume``) revokes partitions inside
    the next poll() (consume())."""

    def __init__(self, answers: CommitAnswers, batches: list[list[FakeMessage]], partitions=(0, 1)) -> None:
        self.answers = answers
        self.batches = list(batches)
        self.delivered = 0
        self.partitions = [TopicPartition("t", p) for p in partitions]
        self.commits: list[dict] = []
        self.commit_errors: list[KafkaError | None] = []  # the answers of the next commits (then: committed)
        self.paused_calls: list[list[int]] = []
        self.resumed_calls: list[list[int]] = []
        self.revoke_on_poll: list[int] | None = None
        self.revoke_on_consume: list[int] | None = None
        self.revoking = threading.Event()
        self.revoked = threading.Event()
        self._pending: list = []
        self._callbacks = None
        self._assignment: list = []
        self.closed = False

    def subscribe(self, topics, on_assign, on_revoke, on_lost):
        self._callbacks = (on_assign, on_revoke, on_lost)

    def _serve(self) -> None:
        if self._callbacks is not None and not self._assignment:
            self._assignment = list(self.partitions)
            self._callbacks[0](self, self.partitions)
        for offsets in self._pending:
            self.answers.on_commit(self.commit_errors.pop(0) if self.commit_errors else None, offsets)
        self._pending = []

    def _revoke(self, numbers: list[int], lost: bool = False) -> None:
        self.revoking.set()
        revoked = [tp for tp in self._assignment if tp.partition in numbers]
        self._assignment = [tp for tp in self._assignment if tp not in revoked]
        self._callbacks[2 if lost else 1](self, revoked)
        self.revoked.set()

    def consume(self, num_messages, timeout):
        self._serve()
        if self.revoke_on_consume is not None:
            numbers, self.revoke_on_consume = self.revoke_on_consume, None
            self._revoke(numbers)
        if self.batches:
            self.delivered += 1
            return self.batches.pop(0)
        time.sleep(min(timeout, 0.01))
        return []

    def poll(self, timeout):
        self._serve()
        if self.revoke_on_poll is not None:
            numbers, self.revoke_on_poll = self.revoke_on_poll, None
            self._revoke(numbers)
        time.sleep(min(timeout, 0.01))
        return None

    def commit(self, offsets, asynchronous):
        self.commits.append({tp.partition: tp.offset for tp in offsets})
        self._pending.append(offsets)

    def assignment(self):
        return list(self._assignment)

    def pause(self, partitions):
        self.paused_calls.append([tp.partition for tp in partitions])

    def resume(self, partitions):
        self.resumed_calls.append([tp.partition for tp in partitions])

    def assign(self, partitions):
        self._assignment = list(partitions)

    incremental_assign = assign

    def close(self):
        """As librdkafka's consumer close with a rebalance callback: the assigned partitions are revoked first (a
        commit sent in that callback lands; checked on the mock cluster)."""
        if self._callbacks is not None and self._assignment:
            self._revoke([tp.partition for tp in self._assignment])
        self.closed = True


class GatedWriter:
    """A BatchWriter: each write waits for its gate (when one is set), then raises what is scripted for it or
    stores the rows (refusing those at ``refuse_offsets``)."""

    def __init__(self, script=None, refuse_offsets=()) -> None:
        self.calls: list[list] = []
        self.gates: dict[int, threading.Event] = {}
        self.script = script or {}
        self.refuse_offsets = set(refuse_offsets)
        self.watchdog = Watchdog()

    def write(self, rows):
        number = len(self.calls)
        self.calls.append(list(rows))
        if number in self.gates:
            assert self.gates[number].wait(WAIT_S), f"write {number} never released"
        failure = self.script.get(number)
        if failure is not None:
            raise failure
        refused = [(row, "refused by the fake") for row in rows if row.kafka_offset in self.refuse_offsets]
        return WriteResult(stored=len(rows) - len(refused), refused=refused)

    def close(self):
        pass


class RecordingDeadLetters:
    """Acknowledges every dead letter, except at the flushes numbered in ``fail_flushes`` (from 0)."""

    def __init__(self, fail_flushes=()) -> None:
        self.sent: list = []
        self.flushes = 0
        self.timeouts: list[float] = []
        self.fail_flushes = set(fail_flushes)

    def send(self, message, rejection):
        self.sent.append((message, rejection))

    def flush(self, timeout, *_time_left):
        self.timeouts.append(timeout)
        number, self.flushes = self.flushes, self.flushes + 1
        if number in self.fail_flushes:
            raise DeadLetterError("not acknowledged (fake)")
        return len(self.sent)


def build(batches, writer: GatedWriter, dead_letters=None, batch_size: int = 2, replay: ReplayScope | None = None,
          clock=time.monotonic, shutdown_timeout_s: float = 20):
    answers = CommitAnswers()
    consumer = FakeConsumer(answers, batches)
    slots = [0.0] * WIDTH
    heartbeat = WorkerStatus(slots, 0)
    metrics = Metrics(f"unit_{uuid.uuid4().hex[:8]}")
    book = PartitionBook()
    stop = StopRequest(shutdown_timeout_s, clock)
    poller = Poller(consumer, heartbeat.polled)
    committer = OffsetCommitter(consumer, answers, book, poller, stop, metrics, batch_size, heartbeat.waiting_for_kafka)
    writes = RetryingWrite(writer, 30, is_stopping=lambda: stop.requested, sleep=stop.sleep,
                           waiting_for_database=heartbeat.waiting_for_database)
    worker = Worker(consumer=consumer, poller=poller, committer=committer, book=book, writes=writes,
                    dead_letters=dead_letters, dead_letter_producer=None, tracker=None, metrics=metrics,
                    heartbeat=heartbeat, stop=stop, topic="t", batch_size=batch_size, batch_timeout_s=0.05,
                    eager_rebalancing=False, replay=replay)
    return worker, consumer, slots


class Running:
    """``worker.run()`` in a thread of its own (the test's thread plays the outside world)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.exit_code = self.worker.run()

    def stop(self) -> int | None:
        self.worker.request_stop()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "the worker did not stop"
        return self.exit_code


def test_the_next_batch_is_polled_while_one_is_written_and_offsets_follow_their_writes_in_order():
    writer = GatedWriter()
    writer.gates = {0: threading.Event(), 1: threading.Event()}
    batches = [[valid(0, 0), valid(0, 1)], [valid(0, 2), valid(0, 3)], [valid(0, 4), valid(1, 0)]]
    worker, consumer, _ = build(batches, writer)
    running = Running(worker)
    wait_until(lambda: len(writer.calls) == 1, "the first write")
    wait_until(lambda: consumer.delivered == 2, "the second batch polled while the first is written")
    assert consumer.commits == []  # the first batch's write has not ended
    assert len(writer.calls) == 1  # one write in flight at most
    writer.gates[0].set()
    wait_until(lambda: len(writer.calls) == 2, "the second write")
    wait_until(lambda: consumer.commits == [{0: 2}], "the first batch's commit")
    wait_until(lambda: consumer.delivered == 3, "the third batch polled while the second is written")
    assert consumer.commits == [{0: 2}]  # nothing of the second batch before its write ended
    writer.gates[1].set()
    wait_until(lambda: len(consumer.commits) == 3, "the last commits")
    assert running.stop() == exit_codes.OK
    assert consumer.commits == [{0: 2}, {0: 4}, {0: 5, 1: 1}]
    assert [[row.kafka_offset for row in rows] for rows in writer.calls] == [[0, 1], [2, 3], [4, 0]]


def test_a_revocation_during_a_retried_write_drops_what_is_not_written_and_commits_nothing_of_it():
    release = threading.Event()
    writer = GatedWriter(script={0: TransientDatabaseError("down")})
    writer.gates = {1: release}  # the retry of the first batch waits until the revocation happened
    batches = [[valid(0, 0), valid(1, 0)], [valid(0, 1), valid(1, 1)]]
    worker, consumer, slots = build(batches, writer)
    consumer.revoke_on_poll = [1]  # the first poll() is the one serving the group during the retry
    running = Running(worker)
    assert consumer.revoked.wait(WAIT_S), "no poll during the retry"
    assert slots[DATABASE_OK] == 0  # the heartbeat says the database is failing meanwhile
    release.set()
    wait_until(lambda: len(consumer.commits) == 2, "both batches committed")
    assert running.stop() == exit_codes.OK
    # The first batch's rows of t[1] are stored (the write was in flight) but its offset is left to the next owner;
    # the second batch's message of t[1] was never written.
    assert consumer.commits == [{0: 1}, {0: 2}]
    assert [[row.kafka_offset for row in rows] for rows in writer.calls] == [[0, 0], [0, 0], [1]]
    assert consumer.paused_calls and consumer.resumed_calls  # paused during the retry, resumed after
    assert slots[DATABASE_OK] == 1


def test_a_revocation_waits_for_the_write_in_flight_and_commits_its_offsets_of_the_revoked_partitions():
    writer = GatedWriter()
    writer.gates = {0: threading.Event()}
    worker, consumer, _ = build([[valid(0, 0), valid(1, 0)]], writer)
    running = Running(worker)
    wait_until(lambda: len(writer.calls) == 1, "the first write")
    consumer.revoke_on_consume = [1]  # the next consume, while the batch is written
    assert consumer.revoking.wait(WAIT_S)
    assert not consumer.revoked.is_set()  # the callback waits for the write in flight
    writer.gates[0].set()
    assert consumer.revoked.wait(WAIT_S)
    # Before the callback returned: t[1]'s offset was committed (its answer not waited for: no poll in a callback).
    assert consumer.commits == [{1: 1}]
    consumer.batches.append([valid(0, 1)])
    wait_until(lambda: len(consumer.commits) == 2, "the next batch's commit")
    assert running.stop() == exit_codes.OK
    assert consumer.commits[1] == {0: 2}  # t[0]'s offset of the first batch went with the next one
    assert len(writer.calls) == 2


def test_a_row_the_database_refuses_is_dead_lettered_with_its_own_message():
    writer = GatedWriter(refuse_offsets={7})
    letters = RecordingDeadLetters()
    batches = [[valid(0, 6), valid(1, 7, number=8), FakeMessage(0, 9, b"not json")]]
    worker, consumer, _ = build(batches, writer, letters, batch_size=3)
    running = Running(worker)
    wait_until(lambda: consumer.commits, "the batch committed")
    assert running.stop() == exit_codes.OK
    assert [(m.partition(), m.offset(), r.reason) for m, r in letters.sent] == [
        (0, 9, "invalid_json"), (1, 7, REFUSED_BY_DATABASE)]
    assert consumer.commits == [{0: 10, 1: 8}]


def test_a_failed_write_stops_the_worker_and_commits_nothing_from_its_batch_on():
    writer = GatedWriter(script={1: FatalDatabaseError("no such table")})
    batches = [[valid(0, 0), valid(0, 1)], [valid(0, 2), valid(0, 3)], [valid(0, 4), valid(0, 5)]]
    worker, consumer, _ = build(batches, writer)
    running = Running(worker)
    running.thread.join(WAIT_S)
    assert running.exit_code == exit_codes.STORAGE_ERROR
    assert consumer.commits == [{0: 2}]
    assert len(writer.calls) == 2  # the batch after the failed one is not written


def test_after_a_failed_write_the_next_batch_is_neither_written_nor_committed_not_even_by_closing():
    """The write fails while the next batch waits for it (``_hand_over``); closing the consumer then revokes, and
    that revocation must not finish a batch after the failed one (its offsets would skip the failed batch)."""
    writer = GatedWriter(script={1: FatalDatabaseError("no such table")})
    writer.gates = {1: threading.Event()}
    batches = [[valid(0, 0), valid(0, 1)], [valid(0, 2), valid(0, 3)], [valid(0, 4), valid(0, 5)]]
    worker, consumer, _ = build(batches, writer)
    running = Running(worker)
    wait_until(lambda: worker.waiting is not None and consumer.delivered == 3, "the third batch waiting for the second")
    writer.gates[1].set()
    running.thread.join(WAIT_S)
    assert running.exit_code == exit_codes.STORAGE_ERROR
    assert consumer.closed and consumer.revoked.is_set()
    assert [[row.kafka_offset for row in rows] for rows in writer.calls] == [[0, 1], [2, 3]]
    assert consumer.commits == [{0: 2}]


def test_after_a_batchs_dead_letters_failed_the_batch_written_meanwhile_is_not_committed_by_closing():
    writer = GatedWriter()
    writer.gates = {1: threading.Event()}
    letters = RecordingDeadLetters(fail_flushes={0})  # the second batch's (the first has no rejection)
    batches = [[valid(0, 0), valid(0, 1)], [valid(0, 2), FakeMessage(0, 3, b"not json")], [valid(0, 4), valid(0, 5)]]
    worker, consumer, _ = build(batches, writer, letters)
    running = Running(worker)
    wait_until(lambda: worker.waiting is not None and consumer.delivered == 3, "the third batch waiting for the second")
    writer.gates[1].set()  # the third batch's write starts, then the second's dead letters fail
    running.thread.join(WAIT_S)
    assert running.exit_code == exit_codes.PRODUCER_ERROR
    assert consumer.closed and consumer.revoked.is_set()
    assert consumer.commits == [{0: 2}]


def retry_ends_inside_a_poll_that_revokes(worker, consumer, writer: GatedWriter, release: threading.Event,
                                          when=lambda: True) -> None:
    """The retried write (the writer's second call) ends during a poll that also serves a revocation of t[1]."""
    real_poll = consumer.poll

    def poll(timeout):
        if len(writer.calls) == 2 and not release.is_set() and when():
            job = worker.in_flight
            release.set()
            wait_until(job.done, "the retry ended")
            consumer.revoke_on_poll = [1]
        return real_poll(timeout)

    consumer.poll = poll


def test_a_batch_finished_by_a_revocation_while_the_main_loop_waits_for_it_is_finished_once():
    release = threading.Event()
    writer = GatedWriter(script={0: TransientDatabaseError("down")})
    writer.gates = {1: release}
    letters = RecordingDeadLetters()
    batches = [[valid(0, 0), FakeMessage(1, 0, b"not json")], [valid(0, 1), valid(1, 1)]]
    worker, consumer, _ = build(batches, writer, letters)
    retry_ends_inside_a_poll_that_revokes(worker, consumer, writer, release)
    running = Running(worker)
    wait_until(lambda: len(consumer.commits) == 2, "both batches committed")
    assert running.stop() == exit_codes.OK
    assert [(m.partition(), m.offset()) for m, _ in letters.sent] == [(1, 0)]
    assert worker.metrics.original["consumed_messages"]._value.get() == 3  # 2 + the second batch's t[0] message
    # The revocation commits the first batch's t[1] (not waited for), its t[0] goes with the second batch.
    assert consumer.commits == [{1: 1}, {0: 2}]


def test_a_stop_while_a_revocation_finishes_the_batch_waited_for_exits_cleanly():
    release = threading.Event()
    writer = GatedWriter(script={0: TransientDatabaseError("down")})
    writer.gates = {1: release}
    worker, consumer, _ = build([[valid(0, 0), valid(1, 0)]], writer)
    retry_ends_inside_a_poll_that_revokes(worker, consumer, writer, release, when=lambda: worker.stop.requested)
    running = Running(worker)
    wait_until(lambda: len(writer.calls) == 2, "the retry")
    assert running.stop() == exit_codes.OK  # not 1 (configuration error) from a crash
    assert worker.metrics.original["consumed_messages"]._value.get() == 2
    assert consumer.commits == [{1: 1}, {0: 1}]  # t[1] in the revocation, t[0] while closing


def write_ends_inside_a_consume_that_revokes(worker, consumer, release: threading.Event, lost: bool) -> None:
    """The write in flight ends (not finished yet) during a consume() that revokes (or loses) t[1]."""
    real_consume = consumer.consume

    def consume(num_messages, timeout):
        if worker.in_flight is not None and not release.is_set():
            job = worker.in_flight
            release.set()
            wait_until(job.done, "the write ended")
            consumer._revoke([1], lost=lost)
        return real_consume(num_messages, timeout)

    consumer.consume = consume


def test_lost_partitions_are_dropped_without_any_commit():
    release = threading.Event()
    writer = GatedWriter()
    writer.gates = {0: release}
    worker, consumer, _ = build([[valid(0, 0), valid(1, 0)]], writer)
    write_ends_inside_a_consume_that_revokes(worker, consumer, release, lost=True)
    running = Running(worker)
    assert consumer.revoked.wait(WAIT_S)
    wait_until(lambda: consumer.commits, "the batch committed")
    assert running.stop() == exit_codes.OK
    assert consumer.commits == [{0: 1}]  # t[1] lost: never committed, not even inside the callback


def test_a_revocations_dead_letters_are_waited_for_within_its_budget_only():
    release = threading.Event()
    writer = GatedWriter()
    writer.gates = {0: release}
    letters = RecordingDeadLetters()
    worker, consumer, _ = build([[valid(0, 0), FakeMessage(1, 0, b"not json")]], writer, letters)
    write_ends_inside_a_consume_that_revokes(worker, consumer, release, lost=False)
    running = Running(worker)
    assert consumer.revoked.wait(WAIT_S)
    wait_until(lambda: len(consumer.commits) == 2, "both partitions committed")
    assert running.stop() == exit_codes.OK
    assert consumer.commits == [{1: 1}, {0: 1}]  # t[1] inside the callback, t[0] after it
    assert len(letters.timeouts) == 1 and 0 < letters.timeouts[0] <= REVOKE_BUDGET_S


def test_a_worker_that_never_wrote_leaves_no_write_thread_behind():
    before = {t for t in threading.enumerate() if t.name == "batch-writer"}
    worker, _, _ = build([], GatedWriter())
    assert {t for t in threading.enumerate() if t.name == "batch-writer"} == before
    assert worker.write_thread.stop(0)


def test_a_stop_during_a_retry_ends_the_retry_and_commits_nothing():
    writer = GatedWriter(script={n: TransientDatabaseError("down") for n in range(1000)})
    batches = [[valid(0, 0), valid(0, 1)]]
    worker, consumer, _ = build(batches, writer)
    running = Running(worker)
    wait_until(lambda: len(writer.calls) >= 2, "a retry")
    assert running.stop() == exit_codes.OK  # a stop is no failure: the batch is consumed again after the restart
    assert consumer.commits == []


def replay_scope():
    plan = SimpleNamespace(topic="t", ends={0: 10, 1: 10}, positions=[0, 0], finished=[0, 0], window=Window(),
                           assign_explicitly=False, private_group=None, self_assigned=False, dry_run=False)
    return plan, ReplayScope(plan, 0, 1, f"unit_{uuid.uuid4().hex[:8]}")  # type: ignore[arg-type]


def test_a_replays_progress_waits_for_the_answer_of_the_commit_carrying_its_offsets():
    """E.g. a revocation inside that commit's wait finishes a later batch: the progress of partitions whose offsets
    are in the unanswered commit is held back like that of uncommitted ones."""
    plan, scope = replay_scope()
    worker, _, _ = build([], GatedWriter(), replay=scope)
    worker.book.assign([Partition("t", 0), Partition("t", 1)])
    worker.book.offsets_to_commit({Partition("t", 0): 4})  # sent, its answer awaited
    worker._hold(ReplayProgress({0: 4, 1: 3}))
    worker._publish()
    assert list(plan.positions) == [0, 3]
    worker.book.commit_ended()
    worker._publish()
    assert list(plan.positions) == [4, 3]


def test_a_replays_progress_is_published_only_once_its_offsets_are_committed():
    """Published with a failed commit, the replay could end (judged from the positions) with offsets uncommitted
    for ever: the worker dies, the next owner is stopped as soon as the positions say done."""
    plan = SimpleNamespace(topic="t", ends={0: 10, 1: 10}, positions=[0, 0], finished=[0, 0], window=Window(),
                           assign_explicitly=False, private_group=None, self_assigned=False, dry_run=False)
    scope = ReplayScope(plan, 0, 1, f"unit_{uuid.uuid4().hex[:8]}")  # type: ignore[arg-type]
    writer = GatedWriter()
    writer.gates = {0: threading.Event()}
    worker, consumer, _ = build([[valid(0, 0), valid(0, 1)]], writer, replay=scope)
    consumer.commit_errors = [KafkaError(KafkaError.REBALANCE_IN_PROGRESS)] * 2
    running = Running(worker)
    wait_until(lambda: len(writer.calls) == 1, "the write")
    writer.gates[0].set()
    # The second commit (retried while idle) is sent once the batch was finished; it is refused too.
    wait_until(lambda: len(consumer.commits) >= 2, "the commit retried while idle")
    assert list(plan.positions) == [0, 0]  # stored, but its offsets not committed: not published
    wait_until(lambda: list(plan.positions) == [2, 0], "the progress published after the third commit")
    assert running.stop() == exit_codes.OK
    assert consumer.commits == [{0: 2}] * 3


class ProducerRefusingAtOnce:
    """A producer whose produce() raises, as librdkafka's does at once for a topic it knows does not exist."""

    def produce(self, topic, **message) -> None:
        raise KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC))

    def flush(self, timeout) -> int:
        return 0


def test_a_dead_letter_refused_at_once_stops_the_worker_with_3_and_commits_nothing(caplog):
    batches = [[valid(0, 0), FakeMessage(0, 1, b"not json")], [valid(0, 2), valid(0, 3)]]
    worker, consumer, _ = build(batches, GatedWriter(), DeadLetters(ProducerRefusingAtOnce(), "t.dlq"))
    running = Running(worker)
    running.thread.join(WAIT_S)
    assert not running.thread.is_alive(), "the worker ran on after its dead letter was refused"
    assert running.exit_code == exit_codes.PRODUCER_ERROR
    assert consumer.commits == []
    assert any(r.getMessage().startswith("dead letters not delivered, offsets not committed: dead-letter topic t.dlq")
               for r in caplog.records)


def test_an_error_of_a_revocations_batch_inside_the_commit_wait_stops_the_worker_not_read_as_a_failed_commit():
    # Batch 1 is committed while batch 2 is gathered; a revocation during that commit's wait finishes batch 2,
    # whose dead letter is refused. That error must stop the worker (producer error, exit 3), not pass as a failed
    # commit of batch 1 and leave the worker running with every later batch unfinished.
    release = threading.Event()
    writer = GatedWriter(script={3: FatalDatabaseError("refused")})
    writer.gates = {0: release}
    batches = [[valid(0, 0), valid(1, 0)], [valid(0, 1), FakeMessage(1, 1, b"not json")],
               [valid(0, 2), valid(0, 3)], [valid(0, 4), valid(0, 5)], [valid(0, 6), valid(0, 7)]]
    worker, consumer, _ = build(batches, writer, DeadLetters(ProducerRefusingAtOnce(), "t.dlq"))
    real_consume = consumer.consume

    def consume(num_messages, timeout):
        messages = real_consume(num_messages, timeout)
        if consumer.delivered == 2 and not release.is_set():
            consumer.revoke_on_poll = [1]
            release.set()
        return messages

    consumer.consume = consume
    running = Running(worker)
    running.thread.join(WAIT_S)
    assert not running.thread.is_alive(), "the worker ran on after its batch failed"
    assert running.exit_code == exit_codes.PRODUCER_ERROR
    assert all(commit.get(1, 0) <= 1 for commit in consumer.commits)  # t[1]'s rejected message never committed


def test_a_version_other_than_2_is_stored_and_counted_with_a_warning(caplog):
    # SPEC section 3, step 2: a warning, not a rejection; our unexpected_schema_version counter counts it.
    other = FakeMessage(0, 1, orjson.dumps(orjson.loads(valid(0, 1).value()) | {"Version": 3}))
    writer = GatedWriter()
    worker, consumer, _ = build([[valid(0, 0), other]], writer)
    with caplog.at_level("WARNING", logger="writer.worker"):
        running = Running(worker)
        wait_until(lambda: consumer.commits == [{0: 2}], "the batch's commit")
        assert running.stop() == exit_codes.OK
    assert [(row.kafka_offset, row.version) for row in writer.calls[0]] == [(0, 2), (1, 3)]  # both stored
    assert worker.metrics.unexpected_version._value.get() == 1
    assert worker.metrics.original["stored_messages"]._value.get() == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "Version" in r.getMessage()]
    assert warnings == ["1 messages with Version other than 2 (stored anyway); first: offset 1, Version 3"]


def test_a_worker_process_collects_garbage_rarely_and_never_traverses_what_it_loaded():
    # In a process of its own: the threshold and the frozen objects are the whole interpreter's.
    code = ("import gc; from writer.worker import quiet_garbage_collector; quiet_garbage_collector(); "
            "print(gc.get_threshold()[0], gc.get_freeze_count() > 1000)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.split() == ["20000", "True"]
