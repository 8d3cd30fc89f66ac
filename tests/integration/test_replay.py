"""Replay as an operator runs it: time windows, chosen partitions, dry run, summary file, progress.

Real PostgreSQL and the Kafka mock; the console script as a subprocess. Every
message is produced with a known Kafka timestamp, so each test knows exactly
which messages a window selects, independently of the code under test.
"""

from __future__ import annotations

import datetime
import json
import signal
import time
from collections import Counter
from dataclasses import dataclass
from itertools import cycle

import orjson
from confluent_kafka import Consumer, TopicPartition

from tests.harness.kafka import committed_offsets, end_offsets
from tests.harness.service import Service, service_env
from writer import exit_codes, sample_messages
from writer.kafka_mock import produce
from writer.message import parse_message
from writer.storage import BatchWriter

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS


@dataclass(frozen=True)
class Produced:
    number: int
    cluster: str | None  # None: an invalid message
    reason: str | None  # the rejection reason of an invalid message
    timestamp_ms: int
    partition: int
    offset: int


def produce_timed(bootstrap: str, topic: str, count: int, first_ms: int, step_ms: int,
                  invalid_every: int = 0) -> list[Produced]:
    """``count`` messages, message i with Kafka timestamp first_ms + i * step_ms; every ``invalid_every``-th invalid."""
    invalid = cycle(sample_messages.invalid_messages(10))
    values, reasons = [], []
    for i in range(count):
        if invalid_every and i % invalid_every == invalid_every - 1:
            value, reason = next(invalid)
        else:
            value, reason = sample_messages.encoded(i, "small_size"), None
        values.append(value)
        reasons.append(reason)
    timestamps = [first_ms + i * step_ms for i in range(count)]
    positions = produce(bootstrap, topic, values, [f"key-{i}".encode() for i in range(count)], timestamps=timestamps)
    return [Produced(i, None if reasons[i] else sample_messages.cluster_id(i), reasons[i], timestamps[i], p, o)
            for i, (p, o) in enumerate(positions)]


def stored_clusters(database) -> set[str]:
    with database.connect() as connection:
        return {row[0] for row in connection.execute("SELECT cluster FROM new_reports")}


def table_snapshot(database) -> list[tuple]:
    with database.connect() as connection:
        return connection.execute(
            "SELECT org_id, cluster, updated_at, kafka_offset, report FROM new_reports ORDER BY 1, 2, 3").fetchall()


def rfc3339(milliseconds: int) -> str:
    return datetime.datetime.fromtimestamp(milliseconds / 1000, datetime.UTC).isoformat().replace("+00:00", "Z")


def now_ms() -> int:
    return int(time.time() * 1000)


def run_replay(cli, env, tmp_path, *flags: str, name: str = "summary"):
    path = tmp_path / f"{name}.json"
    result = cli("--replay", "--summary-json", str(path), "--progress", "off", *flags, env=env, timeout=240)
    summary = json.loads(path.read_text()) if path.exists() else None
    return result, summary


def _commit(bootstrap: str, topic: str, group: str, offsets: dict[int, int]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def test_since_and_until_select_exactly_the_window(migrated_database, kafka_bootstrap, topic, cli, tmp_path):
    # 300 messages one minute apart, ending 2 hours ago; every 10th invalid.
    first = now_ms() - 2 * HOUR_MS - 300 * MINUTE_MS
    produced = produce_timed(kafka_bootstrap, topic, 300, first, MINUTE_MS, invalid_every=10)
    since, until = first + 100 * MINUTE_MS, first + 220 * MINUTE_MS  # messages 100..219
    env = service_env(migrated_database.env(), kafka_bootstrap, topic)
    live_group = env["CCX_NOTIFICATION_WRITER__BROKER__GROUP"]
    group = live_group + "-replay"
    # The replay group is already committed at the end of the topic: the window, not the group, decides
    # where the replay starts and when it is done.
    ends = end_offsets(kafka_bootstrap, topic)
    _commit(kafka_bootstrap, topic, group, ends)

    result, summary = run_replay(cli, env, tmp_path, "--since", rfc3339(since), "--until", rfc3339(until),
                                 "--group-id", group)

    assert result.returncode == 0, result.stderr[-3000:]
    inside = [m for m in produced if since <= m.timestamp_ms < until]
    assert [m.number for m in inside] == list(range(100, 220))
    assert stored_clusters(migrated_database) == {m.cluster for m in inside if m.cluster}
    # The mock answers offsets_for_times with -1: every older message is read and skipped; each
    # partition then ends at its first message past --until, which is skipped too and not committed.
    first_after = {}
    for m in produced:
        if m.timestamp_ms >= until:
            first_after.setdefault(m.partition, m.offset)
    before = sum(1 for m in produced if m.timestamp_ms < since)
    assert summary["skipped_outside_window"] == before + len(first_after)
    assert summary["messages"] == len(inside)
    assert summary["stored"] == sum(1 for m in inside if m.cluster)
    assert summary["rejected_by_reason"] == dict(Counter(m.reason for m in inside if m.reason))
    assert summary["complete"] is True and summary["exit_status"] == 0
    assert summary["since"] == datetime.datetime.fromtimestamp(since / 1000, datetime.UTC).isoformat()
    assert f"skipped {before + len(first_after)} outside the window" in result.stdout
    # --until ended the replay at the window's end, not at the end offsets.
    assert committed_offsets(kafka_bootstrap, topic, group, ends) == {p: first_after.get(p, ends[p]) for p in ends}
    assert all(first_after[p] < ends[p] for p in first_after)
    assert all(offset < 0 for offset in committed_offsets(kafka_bootstrap, topic, live_group, ends).values())


def test_partitions_replays_only_those_and_leaves_the_live_group_alone(
        migrated_database, kafka_bootstrap, topic, cli, tmp_path):
    # 150 messages two minutes apart: message 99 is 121 minutes old, message 100 119 minutes,
    # so --since 2h keeps messages 100..149 (with a minute to spare for the replay to start).
    first = now_ms() - 121 * MINUTE_MS - 99 * 2 * MINUTE_MS
    produced = produce_timed(kafka_bootstrap, topic, 150, first, 2 * MINUTE_MS)
    env = service_env(migrated_database.env(), kafka_bootstrap, topic)
    live_group = env["CCX_NOTIFICATION_WRITER__BROKER__GROUP"]
    ends = end_offsets(kafka_bootstrap, topic)
    assert len(ends) == 4
    live_offsets = {p: min(3, ends[p]) for p in ends}  # the running service's position
    _commit(kafka_bootstrap, topic, live_group, live_offsets)

    result, summary = run_replay(cli, env, tmp_path, "--partitions", "0,3", "--since", "2h")

    assert result.returncode == 0, result.stderr[-3000:]
    expected = {m.cluster for m in produced
                if m.partition in (0, 3) and m.number >= 100}
    assert expected and stored_clusters(migrated_database) == expected
    assert summary["partitions"] == [0, 3]
    assert summary["stored"] == len(expected)
    assert summary["skipped_outside_window"] == sum(
        1 for m in produced if m.partition in (0, 3) and m.number < 100)
    # No commit in the live group, no group membership at all.
    assert committed_offsets(kafka_bootstrap, topic, live_group, ends) == live_offsets
    assert "partitions assigned" not in result.stderr
    assert "without joining a group" in result.stderr


def test_partitions_outside_the_topic_is_a_one_line_error(migrated_database, kafka_bootstrap, topic, cli, tmp_path):
    produce(kafka_bootstrap, topic, [sample_messages.encoded(1, "small_size")])
    env = service_env(migrated_database.env(), kafka_bootstrap, topic)
    result, summary = run_replay(cli, env, tmp_path, "--partitions", "1,9")
    assert result.returncode == 1
    assert "the topic has no partition 9 (it has 0, 1, 2, 3)" in result.stderr
    assert summary is None


def _prestore(database, numbers) -> None:
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    rows = [parse_message(sample_messages.encoded(i, "small_size"), 0, now) for i in numbers]
    writer = BatchWriter(database.conninfo)
    try:
        assert writer.write(rows).stored == len(rows)
    finally:
        writer.close()


def test_dry_run_changes_nothing_and_counts_what_a_real_replay_does(
        migrated_database, kafka_bootstrap, topic, cli, tmp_path):
    produced = produce_timed(kafka_bootstrap, topic, 400, now_ms() - HOUR_MS, 1000, invalid_every=8)
    valid = [m for m in produced if m.cluster]
    already = [m.number for m in valid[::5]]  # a fifth of the valid ones are stored already
    _prestore(migrated_database, already)
    # Keys repeated in later batches of partition 0 (batches of 50; the originals at offsets below 40, the
    # repeats after offset ~100): 20 keys not stored yet, each twice in a row, and the stored ones once more.
    early = [m for m in valid if m.partition == 0 and m.offset < 40]
    not_stored = [m.number for m in early if m.number not in already][:20]
    stored = [m.number for m in early if m.number in already]
    assert len(not_stored) == 20 and stored
    repeats = [n for n in not_stored for _ in range(2)] + stored
    produce(kafka_bootstrap, topic, [sample_messages.encoded(n, "small_size") for n in repeats], partition=0)
    dead_letter_topic = topic + ".dlq"
    env = service_env(migrated_database.env(), kafka_bootstrap, topic, broker__dead_letter_topic=dead_letter_topic,
                      tracker__topic=topic + ".status", processing__batch_size="50")
    group = env["CCX_NOTIFICATION_WRITER__BROKER__GROUP"]
    before = table_snapshot(migrated_database)
    ends = end_offsets(kafka_bootstrap, topic)
    messages = 400 + len(repeats)

    dry, dry_summary = run_replay(cli, env, tmp_path, "--dry-run", name="dry")

    assert dry.returncode == 0, dry.stderr[-3000:]
    assert table_snapshot(migrated_database) == before
    assert all(offset < 0 for offset in committed_offsets(kafka_bootstrap, topic, group, ends).values())
    metadata = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "inspector"})
    try:
        topics = metadata.list_topics(timeout=10).topics
    finally:
        metadata.close()
    assert dead_letter_topic not in topics and topic + ".status" not in topics  # nothing was produced
    expected_reasons = dict(Counter(m.reason for m in produced if m.reason))
    would_store, already_stored, repeated = len(valid) - len(already), len(already) + len(stored), 40
    assert dry_summary["dry_run"] is True
    assert dry_summary["messages"] == messages
    assert dry_summary["would_store"] == would_store
    assert dry_summary["already_stored"] == already_stored
    assert dry_summary["repeated"] == repeated
    assert dry_summary["rejected_by_reason"] == expected_reasons
    assert dry.stdout.startswith(f"dry run finished: messages {messages}, would store {would_store}, "
                                 f"already stored {already_stored}, repeated {repeated}, "
                                 f"would reject {400 - len(valid)}")

    real, real_summary = run_replay(cli, env, tmp_path, name="real")

    assert real.returncode == 0, real.stderr[-3000:]
    assert real_summary["messages"] == dry_summary["messages"]
    assert real_summary["stored"] == dry_summary["would_store"]
    assert real_summary["duplicates"] == dry_summary["already_stored"] + dry_summary["repeated"]
    assert real_summary["rejected_by_reason"] == dry_summary["rejected_by_reason"]
    assert len(table_snapshot(migrated_database)) == len(valid)


def test_since_after_the_last_message_replays_nothing(migrated_database, kafka_bootstrap, topic, cli, tmp_path):
    # Every message is two hours old: a -1 from offsets_for_times (the mock answers nothing else) is
    # confirmed by each partition's last timestamp, so each partition starts at its end and reads nothing.
    produce_timed(kafka_bootstrap, topic, 40, now_ms() - 2 * HOUR_MS, 1000)
    env = service_env(migrated_database.env(), kafka_bootstrap, topic)

    result, summary = run_replay(cli, env, tmp_path, "--since", "1h", "--partitions", "0,1,2,3")

    assert result.returncode == 0, result.stderr[-3000:]
    assert (summary["planned"], summary["messages"], summary["skipped_outside_window"]) == (0, 0, 0)
    assert summary["complete"] is True and len(table_snapshot(migrated_database)) == 0


def _progress_lines(stderr: str) -> list[dict]:
    lines = []
    for text in stderr.splitlines():
        try:
            line = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        if line.get("logger") == "writer.progress":
            lines.append(line)
    return lines


def _writes_waiting(database) -> int:
    with database.connect() as connection:
        return connection.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE c.relname = 'new_reports' AND NOT l.granted").fetchone()[0]


def test_progress_lines_without_a_terminal_and_gauges(migrated_database, kafka_bootstrap, topic, tmp_path):
    count, invalid_every = 3000, 20
    first = now_ms() - HOUR_MS
    produced = produce_timed(kafka_bootstrap, topic, count, first, 100, invalid_every=invalid_every)
    until = first + 2500 * 100  # messages 0..2499; each partition ends at its first later one
    inside = [m for m in produced if m.timestamp_ms < until]
    rejected = sum(1 for m in inside if m.reason)
    env = service_env(migrated_database.env(), kafka_bootstrap, topic, processing__batch_size="100")
    # While the table is locked every worker waits on its first write: nothing is done yet, exactly.
    lock = migrated_database.connect(autocommit=False)
    lock.execute("LOCK TABLE new_reports IN EXCLUSIVE MODE")
    # stdout and stderr are files here, not a terminal: "auto" means log lines.
    service = Service(env, "--replay", "--partitions", "0,1,2,3", "--until", rfc3339(until),
                      "--progress-interval", "0.5", workdir=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while _writes_waiting(migrated_database) < 2 and time.monotonic() < deadline:
            assert service.process.poll() is None, service.stderr()[-3000:]
            time.sleep(0.1)
        # Hold the lock until a line has been logged while nothing is done: with the final line, at least two.
        while not _progress_lines(service.stderr()) and time.monotonic() < deadline:
            time.sleep(0.1)
        gauges = service.metrics()
        lock.rollback()
        status = service.wait(180)
    finally:
        lock.close()
        service.close()
    assert status == 0, service.stderr()[-3000:]
    name = "ccx_notification_writer_replay_"
    assert {k[len(name):]: v for k, v in gauges.items() if k.startswith(name)} == {
        "messages_planned": count, "messages_done": 0, "rate_messages_per_second": 0, "eta_seconds": -1,
        "partitions_remaining": 4, "skipped_outside_window_total": 0}

    lines = _progress_lines(service.stderr())
    assert len(lines) >= 2
    for line in lines:
        assert line["level"] == "info" and line["total"] == count
        assert line["rejected"] <= rejected
        assert line["percent"] == round(100 * line["done"] / count, 1)
        assert line["message"].startswith(f"replay progress: {line['done']:,}/{count:,} messages")
    assert [line["done"] for line in lines] == sorted(line["done"] for line in lines)
    # --until finished every partition before its end offset: done still reaches the total.
    last = lines[-1]
    assert (last["done"], last["rejected"], last["stored"], last["eta_s"]) == (
        count, rejected, len(inside) - rejected, 0)
    # Skipped: each partition's first message past --until.
    assert last["skipped_outside_window"] == len({m.partition for m in produced if m.timestamp_ms >= until})
    assert last["message"].endswith(f"ETA 0:00, rejected {rejected:,}")


def test_interrupted_replay_says_so(migrated_database, kafka_bootstrap, topic, tmp_path):
    produce_timed(kafka_bootstrap, topic, 500, now_ms() - HOUR_MS, 1000)
    env = service_env(migrated_database.env(), kafka_bootstrap, topic)
    path = tmp_path / "summary.json"
    service = Service(env, "--replay", "--summary-json", str(path), workdir=tmp_path)
    try:
        service.wait_http()
        service.process.send_signal(signal.SIGTERM)  # before the group join (~3 s on the mock) is over
        status = service.wait(120)
    finally:
        service.close()
    assert status == exit_codes.REPLAY_INCOMPLETE == 8, service.stderr()[-3000:]
    summary = json.loads(path.read_text())
    assert summary["complete"] is False and summary["exit_status"] == 8 and summary["planned"] == 500
    assert service.stdout().startswith("replay stopped (exit status 8): messages ")


def produce_in_a_transaction(bootstrap: str, topic: str, count: int) -> None:
    """``count`` valid messages over every partition in one committed transaction: each partition's last
    offset then holds the transaction's commit marker, which no consumer receives."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"test-{topic}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(count):
        producer.produce(topic, value=sample_messages.encoded(i, "small_size"), key=f"key-{i}".encode())
    producer.commit_transaction(30)


def test_a_partition_ending_on_a_transaction_marker_is_finished(migrated_database, kafka_bootstrap, topic, cli,
                                                                tmp_path):
    produce_timed(kafka_bootstrap, topic, 40, now_ms() - HOUR_MS, 1000)
    produce_in_a_transaction(kafka_bootstrap, topic, 40)
    ends = end_offsets(kafka_bootstrap, topic)
    assert sum(ends.values()) == 80 + 4  # a commit marker at the end of each partition
    env = service_env(migrated_database.env(), kafka_bootstrap, topic)
    group = env["CCX_NOTIFICATION_WRITER__BROKER__GROUP"]

    path = tmp_path / "summary.json"
    result = cli("--replay", "--summary-json", str(path), "--progress", "off", env=env, timeout=60)

    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(path.read_text())
    assert summary["complete"] is True and summary["messages"] == 80 and summary["stored"] == 40
    assert summary["duplicates"] == 40  # the transaction repeated the first 40 messages
    assert len(table_snapshot(migrated_database)) == 40
    # The group's offsets are past the markers: the live service does not read them again.
    assert committed_offsets(kafka_bootstrap, topic, group, ends) == ends


def test_interrupted_after_rows_were_stored_counts_what_the_table_holds(migrated_database, kafka_bootstrap, topic,
                                                                         tmp_path):
    produce(kafka_bootstrap, topic, [sample_messages.encoded(i, "small_size") for i in range(200)], partition=0)
    with migrated_database.connect() as connection:
        # A write of offset 100 or later waits while the test holds advisory lock 4242.
        connection.execute(
            "CREATE FUNCTION hold_late_offsets() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.kafka_offset >= 100 THEN PERFORM pg_advisory_xact_lock_shared(4242); END IF;"
            " RETURN NEW; END $$")
        connection.execute("CREATE TRIGGER hold BEFORE INSERT ON new_reports FOR EACH ROW"
                           " EXECUTE FUNCTION hold_late_offsets()")
    env = service_env(migrated_database.env(), kafka_bootstrap, topic, processing__batch_size="20")
    path = tmp_path / "summary.json"
    lock = migrated_database.connect()
    lock.execute("SELECT pg_advisory_lock(4242)")
    service = Service(env, "--replay", "--partitions", "0", "--summary-json", str(path), "--progress", "off",
                      workdir=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not lock.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()[0]:
            assert service.process.poll() is None, service.stderr()[-3000:]
            time.sleep(0.1)
        service.process.send_signal(signal.SIGTERM)
        lock.execute("SELECT pg_advisory_unlock(4242)")  # the batch under way finishes, then the worker stops
        status = service.wait(120)
    finally:
        lock.close()
        service.close()
    assert status == exit_codes.REPLAY_INCOMPLETE, service.stderr()[-3000:]
    summary = json.loads(path.read_text())
    rows = len(table_snapshot(migrated_database))
    assert 100 <= rows < 200  # everything before offset 100, then at most the batches under way
    assert summary["complete"] is False and summary["exit_status"] == 8
    assert summary["stored"] == rows and summary["messages"] == rows
    assert summary["duplicates"] == 0 and summary["rejected"] == 0
