"""The worker's stages with fakes of our own collaborators: no Kafka, no PostgreSQL.

Parse (rows and their messages, offsets, error events, revocation), write (rounds by key, retries, splits, the
give-up deadline, stopping), commit (answers, failures, revocation during the wait)."""

from __future__ import annotations

import contextlib
import datetime
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from writer.dead_letters import DeadLetterError, DeadLetters
from writer.message import INVALID_JSON, Rejection, Row
from writer.metrics import Metrics
from writer.partitions import Partition, PartitionBook
from writer.sample_messages import encoded
from writer.stages.commit import CARRY_OVER_LIMIT, COMMIT_WAIT_S, CommitAnswers, OffsetCommitter
from writer.stages.count import count_batch
from writer.stages.parse import parse_batch
from writer.stages.poll import Poller
from writer.stages.stop import StopRequest
from writer.stages.track import REJECTED_UPDATES, STORED_UPDATES, track
from writer.stages.write import RETRY_FIRST_WAIT_S, RETRY_JITTER_S, RetryingWrite, WriteOutcome
from writer.storage import TransientDatabaseError, WriteResult, WriteTimedOut

NOW = datetime.datetime(2026, 6, 1, 12, 0, 0)
T0, T1 = Partition("t", 0), Partition("t", 1)


class FakeMessage:
    """The accessors of a confluent_kafka.Message the stages use."""

    def __init__(self, partition: int, offset: int, value: bytes | None = b"", topic: str = "t",
                 error: KafkaError | None = None) -> None:
        self._partition, self._offset, self._value, self._topic, self._error = partition, offset, value, topic, error

    def topic(self):
        return self._topic

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset

    def value(self):
        return self._value

    def error(self):
        return self._error

    def headers(self):
        return None

    def key(self):
        return None

    def timestamp(self):
        return (1, 0)

    def __repr__(self) -> str:
        return f"FakeMessage({self._topic}[{self._partition}]@{self._offset})"


def valid(partition: int, offset: int, number: int | None = None, **kwargs) -> FakeMessage:
    """A valid message; its report's key is ``number`` (by default one per partition and offset)."""
    number = 100 * partition + offset if number is None else number
    return FakeMessage(partition, offset, encoded(number, "small_size", **kwargs))


def metrics() -> Metrics:
    return Metrics(f"unit_{uuid.uuid4().hex[:8]}")


def value(metric) -> float:
    return metric._value.get()


# ---- parse ---------------------------------------------------------------------------------------------------------


def test_parse_keeps_each_rows_message_and_the_offsets_it_completes():
    messages = [valid(0, 10), FakeMessage(1, 4, b"{not json"), valid(1, 5), valid(0, 11)]
    batch = parse_batch(messages, NOW)
    assert [row.kafka_offset for row in batch.rows] == [10, 5, 11]
    assert batch.origins == [messages[0], messages[2], messages[3]]  # position for position
    assert [(m, r.reason) for m, r in batch.rejections] == [(messages[1], INVALID_JSON)]
    assert batch.next_offsets == {T0: 12, T1: 6}
    assert batch.consumed == 4 and batch.consumer_errors == 0


def test_parse_counts_error_events_but_not_the_end_of_a_partition():
    events = [FakeMessage(0, -1, None, error=KafkaError(KafkaError._TRANSPORT, "gone")),
              FakeMessage(1, -1, None, error=KafkaError(KafkaError._PARTITION_EOF))]
    batch = parse_batch(events, NOW)
    assert (batch.consumer_errors, batch.consumed, batch.next_offsets) == (1, 0, {})


def test_parse_raises_a_fatal_error_event():
    fatal = FakeMessage(0, -1, None, error=KafkaError(KafkaError._FATAL, "fenced"))
    with pytest.raises(KafkaException):
        parse_batch([valid(0, 1), fatal], NOW)


def test_dropping_revoked_partitions_from_a_parsed_batch():
    messages = [valid(0, 1), valid(1, 7), FakeMessage(1, 8, b""), valid(0, 2)]
    batch = parse_batch(messages, NOW)
    batch.drop({T1})
    assert batch.origins == [messages[0], messages[3]]
    assert [row.kafka_offset for row in batch.rows] == [1, 2]
    assert batch.rejections == [] and batch.next_offsets == {T0: 3} and batch.consumed == 2


# ---- poll ----------------------------------------------------------------------------------------------------------


class BatchConsumer:
    """consume() hands out the scripted lists in turn; pause/resume are recorded."""

    def __init__(self, batches) -> None:
        self.batches = list(batches)
        self.paused: list[list[int]] = []
        self.resumed: list[list[int]] = []

    def consume(self, num_messages, timeout):
        return self.batches.pop(0)[:num_messages] if self.batches else []

    def assignment(self):
        from confluent_kafka import TopicPartition

        return [TopicPartition("t", 0), TopicPartition("t", 1)]

    def pause(self, partitions):
        self.paused.append([tp.partition for tp in partitions])

    def resume(self, partitions):
        self.resumed.append([tp.partition for tp in partitions])


def test_gather_takes_carried_messages_first_and_fills_the_batch():
    consumer = BatchConsumer([[valid(0, 5), valid(0, 6), valid(0, 7)]])
    poller = Poller(consumer, polled=lambda: None)
    poller.carry_over = [valid(0, 3), valid(0, 4)]
    assert [m.offset() for m in poller.gather(4, 0.1)] == [3, 4, 5, 6]
    assert [m.offset() for m in poller.gather(4, 0.1)] == []  # the fake's rest went with the first consume


def test_a_revocation_while_a_batch_is_gathered_drops_its_messages_of_the_revoked_partitions():
    consumer = BatchConsumer([[valid(0, 1), valid(1, 1)], [valid(0, 2)]])
    poller = Poller(consumer, polled=lambda: None)
    turns: list[int] = []

    def between():  # the worker finishing a written batch: its offset commit's wait serves a revocation
        turns.append(1)
        if len(turns) == 2:
            poller.drop({T1})

    messages = poller.gather(3, 1.0, between)
    assert [(m.partition(), m.offset()) for m in messages] == [(0, 1), (0, 2)]


def test_a_revocation_inside_consume_drops_the_messages_gathered_before_it():
    class RevokingConsumer(BatchConsumer):
        def consume(self, num_messages, timeout):
            poller.drop({T1})  # what the worker's revoke callback does, inside consume()
            return [valid(0, 5)]

    poller = Poller(RevokingConsumer([]), polled=lambda: None)
    poller.carry_over = [valid(1, 3), valid(0, 4)]
    messages = poller.gather(10, 0.01)
    assert [(m.partition(), m.offset()) for m in messages] == [(0, 4), (0, 5)]


def sized(partition: int, offset: int, size: int) -> FakeMessage:
    return FakeMessage(partition, offset, b"x" * size)


def test_a_batch_closes_at_its_byte_bound_and_the_rest_waits_for_the_next_one():
    consumer = BatchConsumer([[sized(0, 1, 100), sized(1, 1, 100), sized(0, 2, 100), sized(0, 3, 100)]])
    poller = Poller(consumer, polled=lambda: None, max_batch_bytes=250)
    assert [(m.partition(), m.offset()) for m in poller.gather(10, 0.1)] == [(0, 1), (1, 1)]
    assert [(m.partition(), m.offset()) for m in poller.gather(10, 0.1)] == [(0, 2), (0, 3)]  # no consume left


def test_a_batch_closes_at_whichever_bound_comes_first():
    consumer = BatchConsumer([[sized(0, n, 10) for n in range(3)], [sized(0, 3, 10), sized(0, 4, 10)]])
    poller = Poller(consumer, polled=lambda: None, max_batch_bytes=1000)
    assert [m.offset() for m in poller.gather(3, 0.1)] == [0, 1, 2]  # the count, far below the bytes
    assert [m.offset() for m in poller.gather(3, 0.1)] == [3, 4]


def test_carried_messages_count_towards_the_byte_bound():
    consumer = BatchConsumer([[sized(0, 9, 10)]])
    poller = Poller(consumer, polled=lambda: None, max_batch_bytes=250)
    poller.carry_over = [sized(0, 1, 100), sized(0, 2, 100), sized(0, 3, 100)]
    assert [m.offset() for m in poller.gather(10, 0.1)] == [1, 2]
    assert consumer.batches  # full from what was carried: nothing consumed
    assert [m.offset() for m in poller.gather(10, 0.1)] == [3, 9]


def test_a_message_larger_than_the_byte_bound_is_a_batch_of_its_own():
    consumer = BatchConsumer([[sized(0, 1, 10), sized(0, 2, 500), sized(0, 3, 10)]])
    poller = Poller(consumer, polled=lambda: None, max_batch_bytes=100)
    assert [[m.offset() for m in poller.gather(10, 0.1)] for _ in range(3)] == [[1], [2], [3]]


def test_a_revocation_while_a_batch_is_gathered_frees_its_bytes():
    consumer = BatchConsumer([[sized(1, 1, 100)], [sized(0, 1, 100), sized(0, 2, 100)]])
    poller = Poller(consumer, polled=lambda: None, max_batch_bytes=250)
    turns: list[int] = []

    def between():
        turns.append(1)
        if len(turns) == 2:
            poller.drop({T1})  # the message of t[1] gathered before is dropped: its bytes no longer count

    assert [(m.partition(), m.offset()) for m in poller.gather(10, 0.5, between)] == [(0, 1), (0, 2)]


def test_partitions_stay_paused_while_any_reason_holds():
    consumer = BatchConsumer([])
    poller = Poller(consumer, polled=lambda: None, resumable=lambda partitions: partitions[:1])
    poller.pause("write retried")
    poller.pause("commit late")
    poller.resume("write retried")
    assert poller.paused and consumer.paused == [[0, 1]] and consumer.resumed == []
    poller.resume("commit late")
    assert not poller.paused and consumer.resumed == [[0]]  # what ``resumable`` lets through (a replay's unfinished)


def test_a_message_that_comes_while_paused_pauses_its_partition_again():
    """librdkafka can drop a pause (it races the start of a new assignment's fetcher): the partition is fetched
    although the poller believes it paused. The message that shows it must pause that partition again."""

    class LeakingConsumer(BatchConsumer):
        def __init__(self) -> None:
            super().__init__([])
            self.leaking = [valid(1, 7)]

        def poll(self, timeout):
            return self.leaking.pop(0) if self.leaking else None

    consumer = LeakingConsumer()
    poller = Poller(consumer, polled=lambda: None)
    poller.poll(0)
    assert consumer.paused == []  # not paused: a message is no news
    consumer.leaking = [valid(1, 8), FakeMessage(0, -1, error=KafkaError(KafkaError._PARTITION_EOF))]
    poller.pause("write retried")
    poller.poll(0)
    poller.poll(0)
    assert consumer.paused == [[0, 1], [1]]  # the assignment, then the partition the message came from
    assert [(m.partition(), m.offset()) for m in poller.carry_over] == [(1, 7), (1, 8), (0, -1)]


# ---- write ---------------------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class ScriptedWriter:
    """A BatchWriter whose answers are scripted: an exception to raise, or None to store the rows (refusing those
    whose report contains b"refuse-me")."""

    def __init__(self, script=(), clock: FakeClock | None = None, write_seconds: float = 0.0) -> None:
        self.script = list(script)
        self.calls: list[list[Row]] = []
        self.clock = clock
        self.write_seconds = write_seconds

    def write(self, rows: list[Row]) -> WriteResult:
        self.calls.append(list(rows))
        if self.clock is not None:
            self.clock.now += self.write_seconds
        step = self.script.pop(0) if self.script else None
        if step is not None:
            raise step
        refused = [(row, "refused by the fake") for row in rows if b"refuse-me" in row.report]
        return WriteResult(stored=len(rows) - len(refused), stored_bytes=sum(len(r.report) for r in rows),
                           refused=refused)


def retrying_write(writer, clock: FakeClock, limit: float = 0, stop: StopRequest | None = None):
    retries: list[int] = []
    write = RetryingWrite(writer, limit, is_stopping=lambda: stop is not None and stop.requested, sleep=clock.sleep,
                          on_retry=lambda: retries.append(1), clock=clock)
    return write, retries


def rows_of(*numbers: int, **kwargs) -> list[Row]:
    return parse_batch([valid(0, n, **kwargs) for n in numbers], NOW).rows


def test_transient_errors_are_retried_with_the_same_backoff_as_before():
    clock = FakeClock()
    writer = ScriptedWriter([TransientDatabaseError("down"), TransientDatabaseError("down")], clock)
    slept: list[float] = []
    write = RetryingWrite(writer, 0, is_stopping=lambda: False, sleep=lambda s: (slept.append(s), clock.sleep(s)),
                          clock=clock)
    troubles: list[int] = []
    outcome = write.write(rows_of(1, 2), on_trouble=lambda: troubles.append(1))
    assert outcome.stored == 2 and len(writer.calls) == 3
    assert troubles == [1]  # once per write, at the first retry
    # 0.25 s doubling, plus up to 0.5 s of jitter (tenacity's wait_exponential_jitter, initial=0.25 before).
    assert RETRY_FIRST_WAIT_S <= slept[0] <= RETRY_FIRST_WAIT_S + RETRY_JITTER_S
    assert 2 * RETRY_FIRST_WAIT_S <= slept[1] <= 2 * RETRY_FIRST_WAIT_S + RETRY_JITTER_S


def test_a_write_gives_up_at_its_deadline_without_sleeping_past_it():
    clock = FakeClock()
    writer = ScriptedWriter([TransientDatabaseError("down")] * 100, clock)
    write, retries = retrying_write(writer, clock, limit=5)
    started = clock.now
    with pytest.raises(TransientDatabaseError):
        write.write(rows_of(1))
    assert clock.now - started < 5  # no sleep crossed the deadline
    assert len(retries) == len(writer.calls) - 1 >= 3


def test_a_timed_out_batch_is_split_and_its_halves_keep_one_deadline():
    clock = FakeClock()
    # Every write times out after 1 s: the 4 rows, then 2, then a single row retried until the deadline.
    writer = ScriptedWriter([WriteTimedOut("slow")] * 100, clock, write_seconds=1)
    write, _ = retrying_write(writer, clock, limit=3)
    started = clock.now
    with pytest.raises(WriteTimedOut):
        write.write(rows_of(1, 2, 3, 4))
    assert [len(rows) for rows in writer.calls[:3]] == [4, 2, 1]
    last_attempt_started = started + sum(1 for _ in writer.calls[:-1])  # each write took 1 s of the fake clock
    assert last_attempt_started - started <= 3 + 1  # one deadline, not one per half


def test_a_timed_out_batch_written_in_halves():
    clock = FakeClock()
    writer = ScriptedWriter([WriteTimedOut("slow")], clock)
    write, retries = retrying_write(writer, clock)
    outcome = write.write(rows_of(1, 2, 3))
    assert [len(rows) for rows in writer.calls] == [3, 1, 2]
    assert outcome.stored == 3 and len(retries) == 1


def test_stopping_ends_the_retries_at_once():
    clock = FakeClock()
    stop = StopRequest(20, clock)
    writer = ScriptedWriter([TransientDatabaseError("down")] * 10, clock)
    write, _ = retrying_write(writer, clock, stop=stop)
    stop.request()
    with pytest.raises(TransientDatabaseError):
        write.write(rows_of(1))
    assert len(writer.calls) == 1


def test_refused_rows_come_back_by_position_and_a_repeat_of_a_refused_key_is_written():
    clock = FakeClock()
    writer = ScriptedWriter(clock=clock)
    write, _ = retrying_write(writer, clock)
    first, other, second, third = rows_of(1, 2, 1, 1)  # three rows with one key
    first = Row(first.org_id, first.account_number, first.cluster, b'{"reports":["refuse-me"]}', first.updated_at, 10)
    outcome = write.write([first, other, second, third])
    assert outcome.refused == [(0, "refused by the fake")]
    assert [len(rows) for rows in writer.calls] == [2, 1]  # round 2: the repeat of the refused key only
    assert writer.calls[1][0] is second
    assert outcome.stored == 2 and outcome.duplicates == 1  # third repeats the stored second


# ---- commit --------------------------------------------------------------------------------------------------------


class CommitConsumer:
    """A consumer whose commits are answered on the next poll (as librdkafka's on_commit), scripted per commit:
    None (committed), a KafkaError, or "silent" (never answered)."""

    def __init__(self, answers: CommitAnswers, script=(), clock: FakeClock | None = None) -> None:
        self.answers = answers
        self.script = list(script)
        self.commits: list[dict] = []
        self.pending: list = []
        self.clock = clock
        self.on_poll = None

    def commit(self, offsets, asynchronous):
        assert asynchronous
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})
        self.pending.append((self.script.pop(0) if self.script else None, offsets))

    def poll(self, timeout):
        if self.clock is not None:
            self.clock.now += timeout
        if self.on_poll is not None:
            self.on_poll()
        for answer, offsets in self.pending:
            if not isinstance(answer, str):  # "silent": never answered
                self.answers.on_commit(answer, offsets)
        self.pending = []
        return None

    def assignment(self):
        return []

    def pause(self, partitions):
        pass

    def resume(self, partitions):
        pass


def committer(script=(), assigned=(T0, T1)):
    clock = FakeClock()
    answers = CommitAnswers()
    consumer = CommitConsumer(answers, script, clock)
    book = PartitionBook()
    book.assign(assigned)
    stop = StopRequest(20, clock)
    poller = Poller(consumer, polled=lambda: None, clock=clock)
    numbers = metrics()
    stage = OffsetCommitter(consumer, answers, book, poller, stop, numbers, 100, contextlib.nullcontext, clock)
    return stage, consumer, book, numbers


def test_a_commit_answered_ok_leaves_nothing_uncommitted():
    stage, consumer, book, numbers = committer()
    stage.commit({T0: 5, Partition("t", 9): 3})  # t[9]: not ours
    assert consumer.commits == [{("t", 0): 5}]
    assert book.uncommitted == {} and value(numbers.commit_failures) == 0 and value(numbers.last_commit) > 0


def test_a_refused_commit_is_counted_and_its_offsets_go_with_the_next():
    stage, consumer, book, numbers = committer([KafkaError(KafkaError.REBALANCE_IN_PROGRESS)])
    stage.commit({T0: 5})
    assert book.uncommitted == {T0: 5} and value(numbers.commit_failures) == 1
    stage.commit({T1: 2})
    assert consumer.commits[-1] == {("t", 0): 5, ("t", 1): 2}
    assert book.uncommitted == {}


def test_an_unanswered_commit_fails_after_the_wait():
    stage, consumer, book, numbers = committer(["silent"])
    clock = consumer.clock
    started = clock.now
    stage.commit({T0: 5})
    assert COMMIT_WAIT_S <= clock.now - started < COMMIT_WAIT_S + 1
    assert book.uncommitted == {T0: 5} and value(numbers.commit_failures) == 1


def test_the_answer_waited_for_is_recognised_by_its_offsets_when_another_never_comes():
    stage, consumer, book, numbers = committer(["silent", None])
    stage.commit_without_waiting({T1: 3})  # a revocation's commit, never answered
    stage.commit({T0: 5})
    assert consumer.commits == [{("t", 1): 3}, {("t", 0): 5}]
    assert book.uncommitted == {} and value(numbers.commit_failures) == 0


def test_an_extra_answer_is_not_taken_for_the_commit_waited_for():
    stage, consumer, book, numbers = committer([None, KafkaError(KafkaError.REBALANCE_IN_PROGRESS)])
    stage.commit({T0: 5})
    extra = [[TopicPartition("t", 0, 5)]]  # the first commit answered twice, during the second's wait
    consumer.on_poll = lambda: extra and consumer.answers.on_commit(None, extra.pop())
    stage.commit({T0: 6})  # its own answer: refused
    assert value(numbers.commit_failures) == 1 and book.uncommitted == {T0: 6}


def test_a_commit_sent_without_waiting_does_not_count_as_the_last_commit():
    stage, consumer, _, numbers = committer()
    stage.commit_without_waiting({T1: 3})
    assert consumer.commits == [{("t", 1): 3}] and value(numbers.last_commit) == 0


def test_only_a_commit_after_a_failed_one_is_logged_as_retried_successfully(caplog):
    stage, _, book, _ = committer([None, KafkaError(KafkaError.REBALANCE_IN_PROGRESS), None])
    with caplog.at_level("INFO", logger="writer.worker"):
        book.keep_uncommitted({T1: 2})  # deferred by a revocation, never failed
        stage.commit({}, retry=True)  # committed while idle: no failure behind it
        stage.commit({T0: 5})  # refused
        stage.commit({}, retry=True)
    retried = [r.getMessage() for r in caplog.records if "retried successfully" in r.getMessage()]
    assert retried == ["offset commit retried successfully: t[0]"]


def test_a_partition_revoked_while_the_answer_is_waited_for_is_not_retried():
    stage, consumer, book, _ = committer([KafkaError(KafkaError.REBALANCE_IN_PROGRESS)])
    consumer.on_poll = lambda: book.revoke([T1])
    stage.commit({T0: 5, T1: 6})
    assert book.uncommitted == {T0: 5}


class LateAnswerConsumer(CommitConsumer):
    """Answers a commit only after ``answer_after`` seconds; meanwhile each poll returns a message of ``size`` bytes
    (prefetched before the answer). Pauses are recorded."""

    def __init__(self, answers: CommitAnswers, clock: FakeClock, answer_after: float, size: int) -> None:
        super().__init__(answers, (), clock)
        self.answer_at = clock.now + answer_after
        self.size = size
        self.offset = 0
        self.paused = 0

    def poll(self, timeout):
        assert self.clock is not None
        if self.clock.now < self.answer_at:
            self.clock.now += timeout
            self.offset += 1
            return None if self.paused else sized(0, self.offset, self.size)
        return super().poll(timeout)

    def pause(self, partitions):
        self.paused += 1


def test_a_late_commit_answer_pauses_fetching_once_the_carried_messages_fill_a_batch_by_bytes():
    # Far fewer messages than a batch, but more bytes: held while the answer is late, they are what the byte bound
    # keeps out of memory.
    clock = FakeClock()
    answers = CommitAnswers()
    consumer = LateAnswerConsumer(answers, clock, answer_after=5.0, size=100)
    book = PartitionBook()
    book.assign([T0])
    poller = Poller(consumer, polled=lambda: None, clock=clock, max_batch_bytes=1000)
    stage = OffsetCommitter(consumer, answers, book, poller, StopRequest(20, clock), metrics(), 1000,
                            contextlib.nullcontext, clock)
    stage.commit({T0: 5})
    assert book.uncommitted == {}
    assert consumer.paused >= 1
    assert sum(len(m.value()) for m in poller.carry_over) <= 2 * 1000  # not all 5 s of polls: 100 messages


class FetchingConsumer(CommitConsumer):
    """A backlog: every poll while not paused returns a message of t[0]; commits are answered from the
    ``answer_at``-th poll on. Polls take no time (the answer is late by count, not by the clock)."""

    def __init__(self, answers: CommitAnswers, answer_at: int) -> None:
        super().__init__(answers)
        self.answer_at = answer_at
        self.polls = 0
        self.paused_now = False
        self.paused_at: list[int] = []  # the poll count at each pause

    def poll(self, timeout):
        self.polls += 1
        if self.polls >= self.answer_at:
            super().poll(timeout)
        return None if self.paused_now else valid(0, self.polls)

    def assignment(self):
        return [TopicPartition("t", 0)]

    def pause(self, partitions):
        self.paused_now = True
        self.paused_at.append(self.polls)

    def resume(self, partitions):
        self.paused_now = False


def test_fetching_pauses_at_the_carry_over_bound_while_the_commit_answer_is_late():
    """The answer queues behind the messages fetched before it, so its wait polls them into the carry-over; without
    the bound a late answer made the worker hold the whole backlog."""
    answers = CommitAnswers()
    consumer = FetchingConsumer(answers, answer_at=5000)  # a backlog of 5000 messages fetched before the answer
    book = PartitionBook()
    book.assign([T0])
    clock = FakeClock()
    poller = Poller(consumer, polled=lambda: None, clock=clock)
    stage = OffsetCommitter(consumer, answers, book, poller, StopRequest(20, clock), metrics(), 100,
                            contextlib.nullcontext, clock)
    stage.commit({T0: 5})
    assert book.uncommitted == {}  # answered (late): committed
    assert len(poller.carry_over) == CARRY_OVER_LIMIT  # fetching paused at the bound, not at the answer
    assert consumer.paused_at == [CARRY_OVER_LIMIT] and not consumer.paused_now  # resumed after the answer


def test_a_fatal_commit_answer_is_raised():
    stage, _, book, _ = committer([KafkaError(KafkaError._FATAL, "fenced", fatal=True)])
    with pytest.raises(KafkaException):
        stage.commit({T0: 5})


# ---- dead letters --------------------------------------------------------------------------------------------------


def test_a_stop_during_the_dead_letter_wait_shortens_it():
    """A real producer with no broker to reach: nothing is ever acknowledged. Stopping (shutdown_timeout 1 s, so
    no time is left) during the wait ends it at the next slice, instead of after the whole timeout."""
    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "log_level": 0})
    sink = DeadLetters(producer, "dead")
    sink.send(FakeMessage(0, 3, b"x"), Rejection(INVALID_JSON, "bad"))
    stop = StopRequest(1.0)
    asked: list[float] = []

    def time_left(seconds: float) -> float:
        asked.append(seconds)
        if len(asked) == 2:
            stop.request()  # SIGTERM after the first slice
        return stop.time_left(seconds)

    with pytest.raises(DeadLetterError, match="1 unacknowledged"):
        sink.flush(30.0, time_left)
    assert len(asked) == 2 and asked[0] > 29


# ---- count and track -----------------------------------------------------------------------------------------------


class RecordingTracker:
    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[str, ...]]] = []

    def send(self, request_id, updates):
        self.sent.append((request_id, updates))

    def serve(self):
        pass


def test_tracker_updates_of_stored_refused_and_rejected_messages():
    rows = rows_of(1, 2, 3)
    for row, request_id in zip(rows, ("stored", "refused", None), strict=True):
        row.request_id = request_id
    rejections = [(None, Rejection("refused_by_database", "no", request_id="refused")),
                  (None, Rejection(INVALID_JSON, "bad", request_id="invalid"))]
    tracker = RecordingTracker()
    track(tracker, rows, {1}, rejections)  # type: ignore[arg-type]
    assert tracker.sent == [("stored", STORED_UPDATES), ("refused", REJECTED_UPDATES), ("invalid", REJECTED_UPDATES)]


def test_count_folds_in_batch_repeats_into_duplicates():
    numbers = metrics()
    rows = rows_of(1, 2)
    count_batch(numbers, 3, rows, WriteOutcome(stored=1, stored_bytes=10, duplicates=1),
                [(None, Rejection(INVALID_JSON, "bad"))])
    assert value(numbers.original["consumed_messages"]) == 3
    assert value(numbers.original["stored_messages"]) == 1 and value(numbers.duplicates) == 1
    assert value(numbers.original["consuming_errors"]) == 1
