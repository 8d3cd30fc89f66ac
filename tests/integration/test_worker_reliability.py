"""One Worker in this process against the Kafka mock and a real PostgreSQL (issue 9): pause flags across
revoke and assign, the database flag after a failed retry, offset-commit failures while idle, the lag
series of revoked partitions, and the bounded tracker."""

from __future__ import annotations

import logging
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from tests.harness.storage import make_rows
from tests.harness.worker import fetched, rebalance_assign
from writer.kafka_mock import produce
from writer.sample_messages import encoded
from writer.status import DATABASE_OK
from writer.storage import TransientDatabaseError

# --- item 1: a partition paused during a retry, revoked, assigned back ----------------------------------------


def test_a_partition_revoked_while_paused_is_fetched_when_assigned_back(worker_factory, kafka_bootstrap, topic):
    produce(kafka_bootstrap, topic, [encoded(n) for n in range(20)], partition=0)
    worker, _ = worker_factory()
    consumer = worker.consumer
    partitions = [TopicPartition(topic, 0, OFFSET_BEGINNING)]
    # The callbacks in the order librdkafka runs them during rebalances, around the database retry.
    # consume() between the steps, as the worker polls between them: librdkafka applies them in turn.
    rebalance_assign(worker, partitions)
    worker.retrying_write = True
    consumer.pause(consumer.assignment())  # what the retry's first sleep does
    assert fetched(consumer, 0.5) == 0
    worker._on_revoke(consumer, partitions)  # a second member joined and took the partition
    consumer.incremental_unassign(partitions)
    assert fetched(consumer, 0.5) == 0
    worker.retrying_write = False  # the retry ends while the partition is elsewhere...
    consumer.resume(consumer.assignment())  # ...and resumes only what this worker holds: nothing
    rebalance_assign(worker, partitions)  # the other member left: the partition comes back
    assert fetched(consumer, 3) == 20


def test_a_partition_assigned_during_a_retry_is_paused_then_resumed(worker_factory, kafka_bootstrap, topic):
    produce(kafka_bootstrap, topic, [encoded(n) for n in range(20)], partition=1)
    worker, _ = worker_factory()
    consumer = worker.consumer
    partitions = [TopicPartition(topic, 1, OFFSET_BEGINNING)]
    worker.retrying_write = True
    rebalance_assign(worker, partitions)
    assert fetched(consumer, 1.5) == 0  # paused: the retry holds the batch
    worker.retrying_write = False
    consumer.resume(consumer.assignment())
    assert fetched(consumer, 3) == 20


# --- item 9: the database flag after a retry that gave up ----------------------------------------------------


def test_a_retry_that_gives_up_leaves_the_database_flag_down(worker_factory):
    worker, slots = worker_factory(storage__pg_port=1, storage__retry_max_seconds=1, storage__connect_timeout=2)
    with pytest.raises(TransientDatabaseError):
        worker._write_with_retry(make_rows([1]))
    assert slots[DATABASE_OK] == 0
    assert not worker.retrying_write


# --- item 10: offset commits failing while idle are counted and logged -----------------------------------------


def test_idle_commit_failures_are_counted_and_logged(worker_factory, kafka_bootstrap, topic, caplog):
    produce(kafka_bootstrap, topic, [encoded(1)], partition=0)
    worker, _ = worker_factory()
    nowhere = (topic, 99)  # a partition the broker does not have: every commit of it fails
    worker.assigned.add(nowhere)
    worker.uncommitted = {nowhere: 5}
    failures = worker.metrics.commit_failures._value.get()
    with caplog.at_level(logging.WARNING, logger="writer.worker"):
        for _ in range(3):
            worker._commit({}, retry=True)  # what the idle loop does
    assert worker.metrics.commit_failures._value.get() == failures + 3
    warnings = [r for r in caplog.records if "offset commit failed" in r.getMessage()]
    assert len(warnings) == 1, "one warning per interval, not one per poll"
    assert worker.uncommitted == {nowhere: 5}  # kept for the next try


# --- item 11: consumer_lag of revoked partitions --------------------------------------------------------------------


def test_revoked_partitions_lag_is_no_longer_exported(worker_factory, topic):
    from prometheus_client import CollectorRegistry

    from writer.metrics import NO_LONGER_OWNED, render

    worker, _ = worker_factory()
    partitions = [TopicPartition(topic, p) for p in range(3)]
    worker._on_assign(worker.consumer, partitions)
    for p in range(3):
        worker.metrics.consumer_lag.labels(topic, str(p)).set(10 + p)
    worker._on_revoke(worker.consumer, partitions[1:])
    registry = CollectorRegistry()
    registry.register(worker.metrics.consumer_lag)
    text = render(registry, worker.metrics.namespace).decode()
    name = f"{worker.metrics.namespace}_consumer_lag_messages"
    lag_lines = [line for line in text.splitlines() if line.startswith(name + "{")]
    assert lag_lines == [f'{name}{{partition="0",topic="{topic}"}} 10.0'], lag_lines
    assert NO_LONGER_OWNED != NO_LONGER_OWNED  # NaN: the value that marks a series as gone


# --- item 6: tracker statuses never wait ------------------------------------------------------------------------------


def test_tracker_statuses_never_wait_for_an_unavailable_topic(worker_factory, monkeypatch):
    """The tracker topic does not exist and is not created: every status is undeliverable."""
    worker, _ = worker_factory(tracker__topic=f"missing-{uuid.uuid4().hex[:8]}", tracker__auto_create_topic="false")
    waited = []
    producer = worker.tracker._producer
    monkeypatch.setattr(worker.tracker, "_producer", _Recording(producer, waited))
    rows = make_rows(range(50))
    for row in rows:
        row.request_id = f"request-{row.kafka_offset}"
    from writer.storage import WriteResult

    for _ in range(3):
        worker._track(rows, WriteResult(stored=50), [])
    assert waited == [], "the batch path waited on the tracker"
    worker.tracker.close(0.5)
    assert worker.metrics.tracker_dropped._value.get() == 3 * 50 * 3  # received, processed, success each


class _Recording:
    """Records every call of the tracker's producer that may wait (flush, or poll with a timeout)."""

    def __init__(self, producer, waited: list) -> None:
        self._producer = producer
        self._waited = waited

    def produce(self, *args, **kwargs):
        return self._producer.produce(*args, **kwargs)

    def poll(self, timeout=None):
        if timeout is None or timeout > 0:
            self._waited.append(("poll", timeout))
        return self._producer.poll(0)

    def flush(self, timeout=None):
        self._waited.append(("flush", timeout))
        return self._producer.flush(timeout)


# --- item 2: a repeat of a refused key is written, not dropped as a duplicate --------------------------------------


def test_a_repeat_of_a_refused_key_is_written_in_a_second_round(worker_factory, migrated_database):
    from writer.message import Row

    with migrated_database.connect() as connection:
        connection.execute(
            "CREATE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.report LIKE '%refuse-me%' THEN RAISE EXCEPTION 'marked report refused'; END IF;"
            " RETURN NEW; END $$;"
            "CREATE TRIGGER refuse_marked BEFORE INSERT ON new_reports FOR EACH ROW EXECUTE FUNCTION refuse_marked()")
    worker, _ = worker_factory()
    first, other, second, third = make_rows([1, 2, 1, 1])  # three messages with one key
    first = Row(first.org_id, first.account_number, first.cluster, b'{"reports":["refuse-me"]}', first.updated_at, 10)
    second = Row(second.org_id, second.account_number, second.cluster, second.report, second.updated_at, 12)
    written, duplicates = worker._write_rows([first, other, second, third])
    assert [row for row, _ in written.refused] == [first]
    assert written.stored == 2 and duplicates == [third]
    with migrated_database.connect() as connection:
        stored = connection.execute("SELECT org_id, kafka_offset FROM new_reports ORDER BY kafka_offset").fetchall()
    assert sorted(offset for _, offset in stored) == [other.kafka_offset, 12]
