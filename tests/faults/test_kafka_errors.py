"""Guarantees that need Kafka to fail in a precise way: the mock cluster's fault injection
(tests/harness/mock_cluster.py) makes exactly the next N requests of one kind fail.

- a dead-letter topic that refuses blocks the offset commit, the worker exits 3, nothing is lost;
- a dead letter too large for the topic is sent without its value, saying so;
- a header name that is not UTF-8 (unreadable by the Python client) leaves its dead letter, saying so;
- a refused offset commit of the last batch is retried while no message comes, and counted;
- replay: Kafka unreachable (4), an empty or missing topic (0 messages at once), a failing committed() call;
- payload-tracker statuses of stored, rejected and refused messages; a tracker that refuses;
- Kafka error events inside a batch; a fatal error (raised by consume() or commit(), or a _FATAL event) stops
  the worker with 2.
"""

from __future__ import annotations

import datetime
import json
import multiprocessing
import re
import threading

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException, Message

from tests.harness.c_producer import produce_with_raw_headers
from tests.harness.database import RowMonitor, stored_keys
from tests.harness.kafka import (
    PARTITIONS,
    committed_offsets,
    end_offsets,
    header,
    nothing_committed,
    produce_raw,
    read_topic,
)
from tests.harness.mock_cluster import (
    GROUP_AUTHORIZATION_FAILED,
    MSG_SIZE_TOO_LARGE,
    OFFSET_COMMIT,
    OFFSET_FETCH,
    POLICY_VIOLATION,
    PRODUCE,
    REBALANCE_IN_PROGRESS,
)
from tests.harness.scenario import compare, expected_key
from tests.harness.service import Service, free_port, service_env, wait_until
from writer.sample_messages import encoded, message

REASON = "ccx-rejection-reason"


def stream(kafka, topic: str, valid: int, rejected: list[bytes], request_ids: bool = False):
    """``valid`` sample messages and the ``rejected`` values, over all partitions; returns
    (keys expected stored, positions of the rejected ones)."""
    kafka.create_topic(topic, PARTITIONS)
    records = [{"value": encoded(n, request_id=f"ok-{n}" if request_ids else None), "key": str(n).encode(),
                "partition": n % PARTITIONS} for n in range(valid)]
    records += [{"value": value, "key": b"bad", "headers": [("origin", b"test")], "partition": i % PARTITIONS}
                for i, value in enumerate(rejected)]
    positions = produce_raw(kafka.bootstrap_servers, topic, records)
    return {expected_key(n) for n in range(valid)}, positions[valid:]


def env_for(database, kafka, topic, group, **settings):
    return service_env(database.env(), kafka.bootstrap_servers, topic, group, PROCESSING__WORKERS="1", **settings)


def replay(env, workdir, name="replay", timeout=120) -> tuple[int, Service]:
    service = Service(env, "--replay", workdir=workdir, name=name)
    try:
        return service.wait(timeout), service
    finally:
        service.close()


def summary_numbers(service: Service) -> dict[str, int]:
    match = re.search(r"replay finished: messages (\d+), stored (\d+), duplicates (\d+), rejected (\d+)",
                      service.stdout())
    assert match, service.stdout() + service.stderr()[-2000:]
    return dict(zip(("messages", "stored", "duplicates", "rejected"), map(int, match.groups()), strict=False))


# ---- dead letters ------------------------------------------------------------------------------------------


def test_dead_letter_topic_refusing_blocks_the_commit_exits_3_and_loses_nothing(
        migrated_database, kafka, topic, group, tmp_path):
    expected, rejected_at = stream(kafka, topic, 40, [b"[]", b"[1]", b"not json", b""])
    dead_letters = topic + ".dlq"
    env = env_for(migrated_database, kafka, topic, group, BROKER__DEAD_LETTER_TOPIC=dead_letters,
                  PROCESSING__MAX_RESTARTS="0")
    kafka.push_request_errors(PRODUCE, *[POLICY_VIOLATION] * 4)  # a refusal per produce request, not retried
    service = Service(env, workdir=tmp_path, name="refused")
    try:
        status = service.wait(120)
    finally:
        service.close()
    assert status == 3, service.stderr()[-3000:]
    assert any("dead letters not delivered, offsets not committed" in r["message"] for r in service.log_records())
    # No offset past a rejected message whose dead letter was refused.
    offsets = committed_offsets(kafka.bootstrap_servers, topic, group)
    for partition, offset in rejected_at:
        assert offsets[partition] <= offset, (offsets, rejected_at)
    # After a restart (the topic accepts again): every row once, every rejection dead-lettered, all committed.
    kafka.clear_request_errors(PRODUCE)
    status, service = replay(env, tmp_path)
    assert status == 0, service.stderr()[-3000:]
    assert compare(expected, stored_keys(migrated_database)) == {"lost": 0, "duplicated": 0, "unexpected": 0}
    letters = read_topic(kafka.bootstrap_servers, dead_letters)
    sources = {(int(header(m, "ccx-source-partition")), int(header(m, "ccx-source-offset"))) for m in letters}
    assert sources == set(rejected_at)
    assert committed_offsets(kafka.bootstrap_servers, topic, group) == end_offsets(kafka.bootstrap_servers, topic)


def test_dead_letter_too_large_for_the_topic_goes_without_its_value(migrated_database, kafka, topic, group, tmp_path):
    rejected_value = b"[" + b"1," * 1000 + b"1]"
    _, rejected_at = stream(kafka, topic, 10, [rejected_value])
    dead_letters = topic + ".dlq"
    env = env_for(migrated_database, kafka, topic, group, BROKER__DEAD_LETTER_TOPIC=dead_letters)
    kafka.push_request_errors(PRODUCE, MSG_SIZE_TOO_LARGE)  # the broker refuses the first dead letter's size
    status, service = replay(env, tmp_path)
    assert status == 0, service.stderr()[-3000:]
    letters = read_topic(kafka.bootstrap_servers, dead_letters)
    assert len(letters) == 1
    letter = letters[0]
    assert letter.value() is None and letter.key() == b"bad"
    assert b"value of 2003 bytes" in header(letter, "ccx-dead-letter-value-dropped")
    assert header(letter, REASON) == b"not_an_object"
    assert (int(header(letter, "ccx-source-partition")), int(header(letter, "ccx-source-offset"))) == rejected_at[0]
    assert header(letter, "origin") is None  # the original headers go too (they may be what is too large)
    assert committed_offsets(kafka.bootstrap_servers, topic, group) == end_offsets(kafka.bootstrap_servers, topic)


def test_a_header_name_that_is_not_utf8_is_left_out_of_its_dead_letter_saying_why(
        migrated_database, kafka, topic, group, tmp_path):
    # Producers other than confluent-kafka's (sarama, Java, the C API) may name a header with any bytes; the
    # Python client cannot decode such a message's headers at all.
    expected, _ = stream(kafka, topic, 20, [])
    produce_with_raw_headers(kafka.bootstrap_servers, topic, 1, b"not json", b"bad",
                             [(b"origin", b"test"), (b"\xff\xfe-bad", b"unreadable")])
    source = (1, end_offsets(kafka.bootstrap_servers, topic)[1] - 1)
    dead_letters = topic + ".dlq"
    env = env_for(migrated_database, kafka, topic, group, BROKER__DEAD_LETTER_TOPIC=dead_letters,
                  PROCESSING__MAX_RESTARTS="0")
    service = Service(env, workdir=tmp_path)
    try:
        service.wait_committed(120)  # an assertion error at once if the service stopped
        metrics = service.metrics()
        assert service.stop() == 0
    finally:
        service.close()
    assert not service.logged("died with status")
    assert metrics['ccx_notification_writer_messages_rejected_total{reason="invalid_json"}'] == 1
    assert metrics["ccx_notification_writer_dead_letters_total"] == 1
    assert compare(expected, stored_keys(migrated_database)) == {"lost": 0, "duplicated": 0, "unexpected": 0}
    letters = read_topic(kafka.bootstrap_servers, dead_letters)
    assert len(letters) == 1
    letter = letters[0]
    assert (letter.value(), letter.key()) == (b"not json", b"bad")
    assert (int(header(letter, "ccx-source-partition")), int(header(letter, "ccx-source-offset"))) == source
    assert header(letter, REASON) == b"invalid_json"
    assert [name for name, _ in letter.headers()] == [
        "ccx-rejection-reason", "ccx-rejection-detail", "ccx-source-topic", "ccx-source-partition",
        "ccx-source-offset", "ccx-dead-letter-headers-dropped"]
    assert b"not valid UTF-8" in header(letter, "ccx-dead-letter-headers-dropped")


# ---- offset commits -------------------------------------------------------------------------------------------


def test_refused_commit_of_the_last_batch_is_retried_while_idle_and_counted(
        migrated_database, kafka, topic, group, tmp_path):
    kafka.create_topic(topic, PARTITIONS)
    produce_raw(kafka.bootstrap_servers, topic, [{"value": encoded(n), "partition": 0} for n in range(30)])
    env = env_for(migrated_database, kafka, topic, group)
    kafka.push_request_errors(OFFSET_COMMIT, *[REBALANCE_IN_PROGRESS] * 3)
    service = Service(env, workdir=tmp_path)
    try:
        service.wait_http()
        # No message comes after the stream: only the idle retry can commit it, with the service running.
        wait_until(lambda: committed_offsets(kafka.bootstrap_servers, topic, group)[0] == 30, 60,
                   message="the last batch's offsets to be committed while idle")
        assert service.process.poll() is None
        metrics = service.metrics()
        assert metrics["ccx_notification_writer_offset_commit_failures_total"] == 3
        assert service.stop() == 0
    finally:
        service.close()
    assert len(stored_keys(migrated_database)) == 30
    warnings = [r for r in service.log_records() if r["message"].startswith("offset commit failed")]
    assert len(warnings) == 1 and "rebalance" in warnings[0]["message"].lower()


# ---- replay edge cases ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_replay_with_kafka_unreachable_exits_4(migrated_database, topic, group, tmp_path, cli):
    env = service_env(migrated_database.env(), f"127.0.0.1:{free_port()}", topic, group)
    result = cli("--replay", env=env, timeout=120)
    assert result.returncode == 4, result.stderr[-2000:]
    errors = [json.loads(line) for line in result.stderr.splitlines() if '"level": "error"' in line
              or '"level":"error"' in line]
    # One clear line for the operator: librdkafka's own connection errors are not logged on top of it.
    expected = [f"cannot read the partitions and offsets of {topic}"]
    assert [e["message"].split(":")[0] for e in errors] == expected, errors


@pytest.mark.parametrize("create", [True, False], ids=["empty topic", "missing topic"])
def test_replay_of_an_empty_or_missing_topic_finishes_with_0_messages(
        migrated_database, kafka, topic, group, tmp_path, create):
    if create:
        kafka.create_topic(topic, PARTITIONS)
    status, service = replay(env_for(migrated_database, kafka, topic, group), tmp_path, timeout=60)
    assert status == 0, service.stderr()[-2000:]
    assert summary_numbers(service) == {"messages": 0, "stored": 0, "duplicates": 0, "rejected": 0}
    assert any(r["message"].startswith("replay: 0 messages in ") for r in service.log_records())


@pytest.mark.slow
def test_replay_survives_failing_committed_calls(migrated_database, kafka, topic, group, tmp_path):
    expected, _ = stream(kafka, topic, 1500, [])
    env = env_for(migrated_database, kafka, topic, group, PROCESSING__BATCH_SIZE="50")
    monitor = RowMonitor(migrated_database)
    service = Service(env, "--replay", workdir=tmp_path)
    try:
        monitor.wait_rows(1, timeout=60)
        # Committed-offset reads (OffsetFetch) now fail a few times in a row. The replay reads the group's committed
        # offsets only at start and judges progress from its workers' positions, so mid-run it must not need them.
        kafka.push_request_errors(OFFSET_FETCH, *[GROUP_AUTHORIZATION_FAILED] * 5)
        status = service.wait(180)
    finally:
        monitor.stop()
        service.close()
    assert status == 0, service.stderr()[-3000:]
    assert summary_numbers(service)["messages"] == 1500
    assert compare(expected, stored_keys(migrated_database)) == {"lost": 0, "duplicated": 0, "unexpected": 0}
    assert not [r for r in service.log_records() if r["level"] == "error"]
    assert committed_past_injected_errors(kafka.bootstrap_servers, topic, group, injected=5) == end_offsets(
        kafka.bootstrap_servers, topic)


def committed_past_injected_errors(bootstrap: str, topic: str, group: str, injected: int) -> dict[int, int]:
    """The group's committed offsets, read after this test's own reads used up the injected OffsetFetch errors the
    replay did not meet."""
    for _ in range(injected):
        try:
            return committed_offsets(bootstrap, topic, group)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.GROUP_AUTHORIZATION_FAILED:
                raise
    return committed_offsets(bootstrap, topic, group)


# ---- payload tracker ----------------------------------------------------------------------------------------------


REFUSED_ORG = 4242


def test_tracker_statuses_of_stored_rejected_and_refused_messages(migrated_database, kafka, topic, group, tmp_path):
    future = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    incomplete = message(100, request_id="incomplete-1")
    del incomplete["Report"]["system"]
    values = [
        encoded(1, request_id="stored-1"),
        orjson.dumps({**message(2, request_id="late-1"), "LastChecked": future}),
        orjson.dumps(incomplete),
        orjson.dumps({**message(3, request_id="refused-1"), "OrgID": REFUSED_ORG}),
        b"not json",
        encoded(4),  # no RequestId: no status
    ]
    kafka.create_topic(topic, PARTITIONS)
    produce_raw(kafka.bootstrap_servers, topic, [{"value": v, "partition": 0} for v in values])
    with migrated_database.connect() as connection:
        connection.execute(
            "CREATE FUNCTION refuse_for_test() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.org_id = {REFUSED_ORG} THEN RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END $$")
        connection.execute("CREATE TRIGGER refuse_for_test BEFORE INSERT ON new_reports FOR EACH ROW"
                           " EXECUTE FUNCTION refuse_for_test()")
    statuses = topic + ".status"
    env = env_for(migrated_database, kafka, topic, group, TRACKER__TOPIC=statuses, TRACKER__SERVICE_NAME="svc-x")
    status, service = replay(env, tmp_path)
    assert status == 0, service.stderr()[-3000:]
    by_request: dict[str, list[str]] = {}
    for record in read_topic(kafka.bootstrap_servers, statuses):  # keyed by request id: in order per id
        body = json.loads(record.value())
        assert record.key() == body["request_id"].encode() and body["service"] == "svc-x"
        datetime.datetime.fromisoformat(body["date"])
        by_request.setdefault(body["request_id"], []).append(body["status"])
    assert by_request == {
        "stored-1": ["received", "processed", "success"],
        "late-1": ["received", "processed", "error"],
        "incomplete-1": ["received", "processed", "error"],
        "refused-1": ["received", "processed", "error"],
    }


@pytest.mark.slow
def test_tracker_refusing_never_holds_up_storage(migrated_database, kafka, topic, group, tmp_path):
    expected, _ = stream(kafka, topic, 20, [], request_ids=True)
    env = env_for(migrated_database, kafka, topic, group, TRACKER__TOPIC=topic + ".status")
    kafka.push_request_errors(PRODUCE, *[POLICY_VIOLATION] * 50)
    status, service = replay(env, tmp_path)
    assert status == 0, service.stderr()[-3000:]
    assert compare(expected, stored_keys(migrated_database)) == {"lost": 0, "duplicated": 0, "unexpected": 0}
    assert committed_offsets(kafka.bootstrap_servers, topic, group) == end_offsets(kafka.bootstrap_servers, topic)
    # Drops are counted, not silent: each warning says how many statuses to which topic were dropped.
    dropped = [re.fullmatch(rf"payload tracker: (\d+) status messages to {re.escape(topic)}\.status dropped \(.+\)",
                            r["message"]) for r in service.log_records() if r["message"].startswith("payload tracker:")]
    assert dropped and all(dropped), dropped
    assert sum(int(m.group(1)) for m in dropped if m) >= 1


# ---- Kafka error events inside a batch ----------------------------------------------------------------------------


@pytest.fixture
def make_worker(migrated_database, kafka, topic, group):
    """Builds a worker in this process (for batches made of error events, which no broker sends on demand);
    ``wrap_consumer`` wraps its consumer."""
    from writer import config as config_module
    from writer.status import WorkerStatus, new_status_array
    from writer.worker_factory import build_worker

    made = []

    def make(wrap_consumer=None):
        env = {"CCX_NOTIFICATION_WRITER__BROKER__ADDRESSES": kafka.bootstrap_servers,
               "CCX_NOTIFICATION_WRITER__BROKER__TOPIC": topic, **migrated_database.env()}
        status = WorkerStatus(new_status_array(multiprocessing.get_context("spawn"), 1), 0)
        made.append(build_worker(config_module.load(env), status, group, wrap_consumer=wrap_consumer))
        return made[-1]

    yield make
    for worker in made:
        worker.writes.writer.close()


@pytest.fixture
def worker(make_worker):
    return make_worker()


def _value(counter) -> float:
    return counter._value.get()


def test_a_batch_of_only_error_events_is_counted_and_commits_nothing(worker, kafka, topic, group):
    kafka.create_topic(topic, PARTITIONS)
    events = [Message(topic=topic, partition=p, offset=-1, error=KafkaError(KafkaError._TRANSPORT, "gone"))
              for p in range(3)]
    events.append(Message(topic=topic, partition=0, offset=-1, error=KafkaError(KafkaError._PARTITION_EOF)))
    worker.handle_batch(events)
    assert _value(worker.metrics.original["consuming_errors"]) == 3  # end-of-partition is no error
    assert _value(worker.metrics.original["consumed_messages"]) == 0
    assert worker.book.uncommitted == {}
    worker.consumer.close()
    assert nothing_committed(committed_offsets(kafka.bootstrap_servers, topic, group))


class FatalConsumer:
    """The worker's real consumer, except that the named calls raise a fatal error, as librdkafka's do once
    the consumer is unusable (fenced, ...): confluent-kafka raises them as KafkaException from consume(),
    poll() and commit(), never as a message. The mock cluster cannot make a consumer fail fatally."""

    def __init__(self, consumer, failing: set[str]) -> None:
        self._consumer = consumer
        self._failing = failing
        self.calls: list[str] = []

    def __getattr__(self, name):
        real = getattr(self._consumer, name)
        if name not in self._failing:
            return real

        def fail(*args, **kwargs):
            self.calls.append(name)
            raise KafkaException(KafkaError(KafkaError._FATAL, f"{name}: fenced (test)", fatal=True))

        return fail


def test_a_fatal_error_from_a_commit_stops_the_worker_with_2(make_worker, kafka, topic, group, migrated_database):
    kafka.create_topic(topic, PARTITIONS)
    produce_raw(kafka.bootstrap_servers, topic, [{"value": encoded(n), "partition": 0} for n in range(5)])
    worker = make_worker(lambda consumer: FatalConsumer(consumer, {"commit"}))
    # Were the error swallowed as "offset commit failed", the worker would run on with a dead consumer:
    # stop it after a while so the test fails, not hangs.
    timer = threading.Timer(60, worker.request_stop)
    timer.start()
    try:
        assert worker.run() == 2
    finally:
        timer.cancel()
    assert worker.consumer.calls == ["commit"]  # not retried: a fatal error is final
    assert len(stored_keys(migrated_database)) == 5  # stored; consumed again later, skipped as duplicates
    assert nothing_committed({0: committed_offsets(kafka.bootstrap_servers, topic, group)[0]})


def test_a_fatal_error_from_consume_stops_the_worker_with_2(make_worker, kafka, topic):
    kafka.create_topic(topic, PARTITIONS)
    worker = make_worker(lambda consumer: FatalConsumer(consumer, {"consume"}))
    assert worker.run() == 2
    assert worker.consumer.calls == ["consume"]


def test_a_fatal_error_event_in_a_batch_stops_it_uncommitted(worker, kafka, topic):
    kafka.create_topic(topic, PARTITIONS)
    worker.book.assign([(topic, 0)])
    fatal = Message(topic=topic, partition=0, offset=-1, error=KafkaError(KafkaError._FATAL, "fenced"))
    with pytest.raises(KafkaException):
        worker.handle_batch([fatal])
    assert worker.book.uncommitted == {}
