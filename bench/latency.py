"""Latency of the service (not --replay): produce -> committed row at a steady rate."""

from __future__ import annotations

import datetime
import signal
import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass

import psycopg

from bench import messages as varied_messages
from bench.common import (
    BenchFailure,
    MessageFactory,
    cluster_bytes,
    digest,
    log,
    log_time,
    migrated_store,
    parse_log,
    private_cwd,
    shrunk_report,
    stop_process_group,
    verify,
    writer_env,
)
from bench.measure import Setup
from writer import sample_messages
from writer.message import Row, parse_message

_LATENCY_SQL = """
ALTER TABLE new_reports ADD COLUMN inserted_at timestamptz DEFAULT clock_timestamp();
CREATE UNLOGGED TABLE bench_commit_times (cluster character(36) NOT NULL, committed_at timestamptz NOT NULL);
CREATE FUNCTION bench_note_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO bench_commit_times VALUES (NEW.cluster, clock_timestamp()); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER bench_commit_time AFTER INSERT ON new_reports
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bench_note_commit();
"""


@dataclass
class Latency:
    rate: float
    seconds: float
    messages: int
    p50_commit: float
    p99_commit: float
    max_commit: float
    p50_copy: float
    p99_copy: float
    exit_status: int
    stop_seconds: float


class TimedMessages:
    """Message ``number`` with LastChecked = a given moment, built in microseconds (inside the paced loop):
    uniform, the same ``size`` report every time; varied, one of a pool of production-like messages
    (bench/messages.py) with its cluster and LastChecked replaced."""

    POOL = 500

    def __init__(self, mix: str, size: str) -> None:
        self.mix = mix
        if mix == "uniform":
            self._factory = MessageFactory(size)
            self._report = digest(shrunk_report(size))
            return
        self._pool = []
        for number in range(self.POOL):
            body = varied_messages.varied(number)
            stamp = varied_messages.varied_body(number)["LastChecked"]
            row = parse_message(body, 0, datetime.datetime(2100, 1, 1))
            assert type(row) is Row
            self._pool.append((body, cluster_bytes(number), b'"LastChecked":"%s"' % stamp.encode(), digest(row.report)))

    def encoded(self, number: int, last_checked: datetime.datetime) -> bytes:
        if self.mix == "uniform":
            return self._factory.encoded(number, last_checked)
        body, cluster, stamp, _ = self._pool[number % self.POOL]
        checked = b'"LastChecked":"%sZ"' % last_checked.strftime("%Y-%m-%dT%H:%M:%S.%f").encode()
        return body.replace(cluster, cluster_bytes(number)).replace(stamp, checked)

    def report_digest(self, number: int) -> str:
        """md5 of the shrunk report message ``number`` is stored with (its cluster is stripped from it)."""
        return self._report if self.mix == "uniform" else self._pool[number % self.POOL][3]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def measure_latency(setup: Setup, mix: str, size: str, rate: float, seconds: float,
                    compression: str | None = None) -> Latency:
    """The service (not replay) with 2 workers; messages at ``rate``/s, LastChecked = produce time, produced
    one at a time as the real producer does (librdkafka's default linger), compressed like the backlogs."""
    from confluent_kafka import Producer

    topic = f"ccxw-bench.latency.{uuid.uuid4().hex[:8]}"
    factory = TimedMessages(mix, size)
    compression = compression or ("none" if setup.broker.given else "zstd")
    producer = Producer({**setup.broker.options, "compression.type": compression, "linger.ms": 5})
    delivered: dict[str, tuple[int, int]] = {}  # cluster -> (offset, message number)
    failures = []

    def on_delivery(error, message):
        if error is not None:
            failures.append(error)
        else:
            number = int(message.key())
            delivered[sample_messages.cluster_id(number)] = (message.offset(), number)

    def send(number: int) -> None:
        producer.produce(topic, key=b"%d" % number, on_delivery=on_delivery,
                         value=factory.encoded(number, datetime.datetime.now(datetime.UTC)))

    first_number = 50_000_000
    process = store = None
    try:
        store = migrated_store(setup.target, "latency")
        setup.broker.create_topic(topic, setup.partitions)
        send(first_number)  # the topic exists (created now, or by this produce) before the service subscribes
        producer.flush(10)
        if delivered:
            setup.broker.record_produced(topic)
        with psycopg.connect(store.conninfo(), autocommit=True) as connection:
            connection.execute(_LATENCY_SQL)
        env = writer_env(store, setup.broker, topic, 2, "ccxw-bench-latency", setup.extra_env)
        process = subprocess.Popen([*setup.writer_command, "--group-id", f"ccxw-bench-{uuid.uuid4().hex[:10]}"],
                                   env=env, cwd=private_cwd(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
        reader.start()
        # Wait for the group to settle: both workers assigned (one if there is one partition), then no change for 2 s.
        members = min(2, setup.broker.partitions(topic))
        deadline = time.time() + 60
        while time.time() < deadline:
            assigned = [line for line in parse_log("\n".join(lines))[0]
                        if line.get("message", "").startswith("partitions assigned")]
            if len({line["pid"] for line in assigned}) >= members and time.time() - log_time(assigned[-1]) > 2:
                break
            time.sleep(0.2)
        else:
            raise BenchFailure("the service's workers did not get partitions within 60 s")
        count = int(rate * seconds)
        started = time.time()
        for index in range(1, count + 1):
            delay = started + index / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            send(first_number + index)
            producer.poll(0)
        if producer.flush(30) or failures:
            raise BenchFailure(f"latency produce failed: {failures[:3]}")
        produced = count + 1
        with psycopg.connect(store.conninfo(), autocommit=True) as connection:
            deadline = time.time() + 60
            while connection.execute("SELECT count(*) FROM bench_commit_times").fetchone()[0] < produced:
                if time.time() > deadline:
                    raise BenchFailure("not every latency message was stored within 60 s")
                time.sleep(0.1)
            stop_started = time.time()
            process.send_signal(signal.SIGTERM)
            status = process.wait(60)
            stop_seconds = time.time() - stop_started
            measured = connection.execute(
                "SELECT extract(epoch FROM c.committed_at - (r.updated_at AT TIME ZONE 'UTC')),"
                "       extract(epoch FROM r.inserted_at - (r.updated_at AT TIME ZONE 'UTC'))"
                " FROM new_reports r JOIN bench_commit_times c USING (cluster)"
                " WHERE r.cluster <> %s",
                (sample_messages.cluster_id(first_number),),
            ).fetchall()
        if status != 0:
            raise BenchFailure(f"the service exited {status} after SIGTERM")
        verify(store, {(cluster, offset): factory.report_digest(number)
                       for cluster, (offset, number) in delivered.items()})
    finally:
        if process is not None:
            stop_process_group(process)
        if store is not None and not setup.keep:
            store.drop()
        setup.broker.delete_topics([topic], log)
    commit = [float(c) for c, _ in measured]
    copy = [float(i) for _, i in measured]
    return Latency(rate, seconds, len(measured), statistics.median(commit), percentile(commit, 0.99), max(commit),
                   statistics.median(copy), percentile(copy, 0.99), status, stop_seconds)
