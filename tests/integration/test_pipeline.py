"""End to end: the real supervisor and workers, the Kafka mock (or a real broker), real PostgreSQL."""

from __future__ import annotations

import datetime
import time
from collections import Counter

import orjson
import pytest

from tests.harness.kafka import committed_offsets, end_offsets, read_topic
from tests.harness.service import Service, free_port, parse_metrics, service_env
from writer import sample_messages
from writer.dead_letters import REASON_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER, SOURCE_TOPIC_HEADER
from writer.kafka_mock import produce

VALID = 3000
INVALID = 300
# The report keys the original service strips before storing (its consumer.go), written out here rather
# than taken from the code under test.
STRIPPED = ("system", "fingerprints", "skips", "info", "pass", "analysis_metadata")


def shrunk(report: dict) -> dict:
    return {key: value for key, value in report.items() if key not in STRIPPED}


def _mixed_stream(valid: int, invalid: int, first: int = 0):
    """Valid and invalid messages interleaved, keyed so they spread over all partitions."""
    values, expected_reasons = [], Counter()
    bad = sample_messages.invalid_messages(invalid)
    step = max(1, valid // max(1, invalid))
    bad_iter = iter(bad)
    for i in range(first, first + valid):
        values.append(sample_messages.encoded(i, request_id=f"req-{i}" if i % 3 == 0 else None))
        if (i - first) % step == 0:
            value, reason = next(bad_iter, (None, None))
            if reason is not None:
                values.append(value)
                expected_reasons[reason] += 1
    for value, reason in bad_iter:
        values.append(value)
        expected_reasons[reason] += 1
    keys = [f"key-{first}-{n}".encode() for n in range(len(values))]
    return values, keys, expected_reasons


def _stored(database) -> list[tuple]:
    with database.connect() as connection:
        return connection.execute(
            "SELECT org_id, account_number, cluster, report, updated_at, kafka_offset FROM new_reports"
        ).fetchall()


@pytest.fixture
def mixed_topic(kafka_bootstrap, topic):
    values, keys, reasons = _mixed_stream(VALID, INVALID)
    produce(kafka_bootstrap, topic, values, keys)
    return topic, reasons


def wait_until_ready(service, timeout: float = 30) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    status, body = service.request("/ready")
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        status, body = service.request("/ready")
    return status, body


def test_end_to_end_two_workers(migrated_database, kafka_bootstrap, mixed_topic, workdir):
    topic, expected_reasons = mixed_topic
    dead_letter_topic = topic + ".dlq"
    tracker_topic = topic + ".status"
    env = service_env(migrated_database.env(), kafka_bootstrap, topic,
                      broker__dead_letter_topic=dead_letter_topic, tracker__topic=tracker_topic)
    service = Service(env, workdir=workdir)
    try:
        service.wait_http()
        committed = service.wait_committed()
        status, metrics_text = service.request("/metrics")
        health_status, health = service.request("/health")
        # Ready once the database probe and the workers report, which a drain this short may outrun.
        ready_status, ready = wait_until_ready(service)
    finally:
        exit_status = service.stop()
        service.close()
    metrics_text = metrics_text.decode()
    assert exit_status == 0, service.stderr()[-3000:]
    with migrated_database.connect() as connection:
        stored_bytes = connection.execute("SELECT sum(octet_length(report)) FROM new_reports").fetchone()[0]

    # Exactly the valid messages, each row's fields and shrunk report as the message said.
    rows = _stored(migrated_database)
    assert len(rows) == VALID
    by_cluster = {row[2]: row for row in rows}
    assert len(by_cluster) == VALID
    source_messages = read_topic(kafka_bootstrap, topic)
    offsets_of_cluster = {}
    for message in source_messages:
        try:
            body = orjson.loads(message.value())
        except (orjson.JSONDecodeError, TypeError):
            continue
        if isinstance(body, dict) and isinstance(body.get("ClusterName"), str):
            offsets_of_cluster.setdefault(body["ClusterName"], set()).add(message.offset())
    for i in range(VALID):
        expected = sample_messages.message(i)
        row = by_cluster[expected["ClusterName"]]
        assert row[0] == expected["OrgID"]
        assert row[1] == expected["AccountNumber"]
        assert set(expected["Report"]) & set(STRIPPED)  # the sample has keys to strip
        assert orjson.loads(row[3]) == shrunk(expected["Report"])
        assert row[3] == orjson.dumps(shrunk(expected["Report"])).decode()
        assert row[4] == datetime.datetime.strptime(expected["LastChecked"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert row[5] in offsets_of_cluster[expected["ClusterName"]]

    # Offsets committed at the end of every partition.
    ends = end_offsets(kafka_bootstrap, topic)
    assert len(ends) >= 2 and all(ends.values())
    assert committed == {p: ends[p] for p in ends}

    # Every rejection is in the dead-letter topic, unchanged, with its reason and source.
    dead_letters = read_topic(kafka_bootstrap, dead_letter_topic)
    assert len(dead_letters) == INVALID
    reasons = Counter()
    source_by_position = {(m.partition(), m.offset()): m for m in source_messages}
    for letter in dead_letters:
        headers = dict(letter.headers())
        reasons[headers[REASON_HEADER].decode()] += 1
        assert headers[SOURCE_TOPIC_HEADER].decode() == topic
        original = source_by_position[(int(headers[SOURCE_PARTITION_HEADER]), int(headers[SOURCE_OFFSET_HEADER]))]
        assert letter.value() == original.value()
        assert letter.key() == original.key()
    assert reasons == expected_reasons

    # /metrics: the original series names (no _total) with the same counts, and ours.
    assert status == 200
    metrics = parse_metrics(metrics_text)
    assert "# TYPE ccx_notification_writer_consumed_messages counter" in metrics_text
    assert metrics["ccx_notification_writer_consumed_messages"] == VALID + INVALID
    assert metrics["ccx_notification_writer_stored_messages"] == VALID
    assert metrics["ccx_notification_writer_consuming_errors"] == INVALID
    assert metrics["ccx_notification_writer_check_last_checked_timestamp"] == VALID
    assert metrics["ccx_notification_writer_stored_bytes"] == stored_bytes
    assert "ccx_notification_writer_consumed_messages_total" not in metrics
    for reason, count in expected_reasons.items():
        assert metrics[f'ccx_notification_writer_messages_rejected_total{{reason="{reason}"}}'] == count
    assert metrics["ccx_notification_writer_dead_letters_total"] == INVALID
    assert metrics["ccx_notification_writer_rows_stored_total"] == VALID
    assert metrics["ccx_notification_writer_batch_size_messages_count"] > 0
    assert metrics["ccx_notification_writer_last_commit_timestamp_seconds"] > 0
    assert health_status == 200 and orjson.loads(health)["status"] == "ok"
    assert ready_status == 200 and orjson.loads(ready)["status"] == "ok", ready

    # Payload tracker: received, processed, success for each stored message with a RequestId.
    statuses = {}
    for status_message in read_topic(kafka_bootstrap, tracker_topic):
        body = orjson.loads(status_message.value())
        assert body["service"] == "ccx-notification-writer"
        statuses.setdefault(body["request_id"], []).append(body["status"])
    for i in range(0, VALID, 3):
        assert statuses[f"req-{i}"] == ["received", "processed", "success"]


def test_replay_with_new_group_stores_nothing_twice(migrated_database, kafka_bootstrap, mixed_topic, cli):
    topic, expected_reasons = mixed_topic
    env = service_env(migrated_database.env(), kafka_bootstrap, topic)
    first = cli("--replay", env=env, timeout=240)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"stored {VALID}," in first.stdout
    assert f"rejected {INVALID}" in first.stdout
    rows_before = sorted(_stored(migrated_database))

    again = cli("--replay", "--group-id", "a-new-group", env=env, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "stored 0," in again.stdout
    assert f"duplicates {VALID}," in again.stdout
    assert sorted(_stored(migrated_database)) == rows_before
    ends = end_offsets(kafka_bootstrap, topic)
    assert committed_offsets(kafka_bootstrap, topic, "a-new-group", ends) == ends


def test_two_supervisors_share_the_group(migrated_database, kafka_bootstrap, topic, workdir):
    values, keys, _ = _mixed_stream(2000, 0)
    produce(kafka_bootstrap, topic, values, keys)
    env = service_env(migrated_database.env(), kafka_bootstrap, topic, processing__batch_size="100")
    second_env = dict(env, CCX_NOTIFICATION_WRITER__METRICS__ADDRESS=f"127.0.0.1:{free_port()}",
                      CCX_NOTIFICATION_WRITER__PROCESSING__WORKERS="1")
    first, second = Service(env, workdir=workdir, name="first"), Service(second_env, workdir=workdir, name="second")
    try:
        first.wait_committed()
        # More messages while both members are in the group.
        more_values, more_keys, _ = _mixed_stream(2000, 0, first=2000)
        produce(kafka_bootstrap, topic, more_values, more_keys)
        first.wait_committed()
        # A worker counts a batch after committing its offsets: wait for the counters, not only the offsets.
        stored = _stored_counters_once_they_reach((first, second), 4000)
    finally:
        statuses = (first.stop(), second.stop())
        first.close()
        second.close()
    assert statuses == (0, 0), (first.stderr()[-2000:], second.stderr()[-2000:])
    rows = _stored(migrated_database)
    assert len(rows) == 4000
    assert {r[2] for r in rows} == {sample_messages.cluster_id(i) for i in range(4000)}
    # Both members stored rows, and between them each row once.
    assert stored[0] > 0 and stored[1] > 0 and sum(stored) == 4000, stored


def _stored_counters_once_they_reach(services, total: int, timeout: float = 60.0) -> list[float]:
    import time

    deadline = time.monotonic() + timeout
    while True:
        stored = [s.metrics().get("ccx_notification_writer_stored_messages", 0) for s in services]
        if sum(stored) >= total or time.monotonic() > deadline:
            return stored  # the caller's assertion says what is wrong, if anything
        time.sleep(0.2)


def test_refused_row_is_the_only_rejection_of_its_batch(migrated_database, kafka_bootstrap, topic, workdir):
    with migrated_database.connect() as connection:
        connection.execute("ALTER TABLE new_reports ADD CONSTRAINT test_only_no_org_666 CHECK (org_id <> 666)")
    values = [sample_messages.encoded(i, org_id=666 if i == 57 else None) for i in range(200)]
    produce(kafka_bootstrap, topic, values, [b"same-partition"] * len(values))
    env = service_env(migrated_database.env(), kafka_bootstrap, topic, processing__workers="1",
                      processing__batch_size="1000", processing__batch_timeout_ms="2000",
                      broker__dead_letter_topic=topic + ".dlq")
    service = Service(env, workdir=workdir)
    try:
        service.wait_committed()
        metrics = service.metrics()
    finally:
        exit_status = service.stop()
        service.close()
    assert exit_status == 0, service.stderr()[-2000:]
    rows = _stored(migrated_database)
    assert len(rows) == 199
    assert sample_messages.cluster_id(57) not in {r[2] for r in rows}
    assert metrics['ccx_notification_writer_messages_rejected_total{reason="refused_by_database"}'] == 1
    letters = read_topic(kafka_bootstrap, topic + ".dlq")
    assert [dict(m.headers())[REASON_HEADER] for m in letters] == [b"refused_by_database"]
    assert orjson.loads(letters[0].value())["ClusterName"] == sample_messages.cluster_id(57)


def test_service_with_broker_disabled_exits_cleanly(migrated_database, cli, topic):
    result = cli(env={**migrated_database.env(), "CCX_NOTIFICATION_WRITER__BROKER__ENABLED": "false"})
    assert result.returncode == 0
    assert "nothing to consume" in result.stderr


def test_metrics_address_in_use_is_an_http_error(migrated_database, kafka_bootstrap, topic, workdir):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = service_env(migrated_database.env(), kafka_bootstrap, topic,
                          metrics__address=f"127.0.0.1:{busy.getsockname()[1]}")
        service = Service(env, workdir=workdir)
        try:
            assert service.wait(60) == 6
        finally:
            service.close()
    assert "cannot serve metrics" in service.stderr()


def test_invalid_sentry_dsn_is_a_configuration_error(migrated_database, cli, topic):
    result = cli(env={**migrated_database.env(), "CCX_NOTIFICATION_WRITER__SENTRY__DSN": "not-a-dsn-secret",
                      "CCX_NOTIFICATION_WRITER__LOGGING__LOGGING_TO_SENTRY_ENABLED": "true"})
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "sentry" in result.stderr and "not-a-dsn-secret" not in result.stderr


def test_logs_are_json_lines_and_readable_in_debug_mode(migrated_database, kafka_bootstrap, topic, cli):
    produce(kafka_bootstrap, topic, [sample_messages.encoded(1), b"garbage"], [b"a", b"b"])
    env = service_env(migrated_database.env(), kafka_bootstrap, topic)
    production = cli("--replay", env=env, timeout=120)
    assert production.returncode == 0, production.stderr[-2000:]
    lines = [line for line in production.stderr.splitlines() if line.strip()]
    parsed = [orjson.loads(line) for line in lines]  # every line is one JSON object
    rejected = [p for p in parsed if p["message"].startswith("message rejected")]
    assert len(rejected) == 1 and rejected[0]["reason"] == "invalid_json" and rejected[0]["topic"] == topic
    assert "offset" in rejected[0] and "partition" in rejected[0]
    assert not [p for p in parsed if p["level"] == "debug"]

    debug_env = dict(service_env(migrated_database.env(), kafka_bootstrap, topic),
                     CCX_NOTIFICATION_WRITER__LOGGING__DEBUG="true",
                     CCX_NOTIFICATION_WRITER__LOGGING__LOG_LEVEL="DEBUG")  # debug is the format, not the level
    debug = cli("--replay", "--group-id", "debug-group", env=debug_env, timeout=120)
    assert debug.returncode == 0
    assert "DEBUG" in debug.stderr and "message parsed" in debug.stderr
    assert not debug.stderr.lstrip().startswith("{")


def test_service_stops_at_start_when_the_database_is_not_usable(database, kafka_bootstrap, topic, cli):
    env = service_env(database.env(), kafka_bootstrap, topic)
    no_schema = cli(env=env, timeout=60)
    assert no_schema.returncode == 5
    assert "new_reports does not exist" in no_schema.stderr
    wrong_database = cli(env={**env, "CCX_NOTIFICATION_WRITER__STORAGE__PG_DB_NAME": "no_such_database",
                              "CCX_NOTIFICATION_WRITER__STORAGE__PG_PASSWORD": "secret-pw-123"}, timeout=60)
    assert wrong_database.returncode == 5
    assert "cannot connect to PostgreSQL" in wrong_database.stderr
    assert "secret-pw-123" not in wrong_database.stderr + wrong_database.stdout


def test_a_batch_refused_entirely_stops_the_worker_without_committing(migrated_database, kafka_bootstrap, topic,
                                                                     workdir):
    with migrated_database.connect() as connection:
        connection.execute("ALTER TABLE new_reports ADD CONSTRAINT test_only_broken CHECK (org_id < 0)")
    produce(kafka_bootstrap, topic, [sample_messages.encoded(i) for i in range(50)], [b"one"] * 50)
    env = service_env(migrated_database.env(), kafka_bootstrap, topic, processing__workers="1",
                      processing__max_restarts="1", processing__batch_timeout_ms="1000")
    service = Service(env, workdir=workdir)
    try:
        assert service.wait(120) == 5, service.stderr()[-2000:]
    finally:
        service.close()
    assert "refused all" in service.stderr()
    ends = end_offsets(kafka_bootstrap, topic)
    committed = committed_offsets(kafka_bootstrap, topic, env["CCX_NOTIFICATION_WRITER__BROKER__GROUP"], ends)
    assert all(offset < 0 for offset in committed.values())  # nothing committed: nothing lost
