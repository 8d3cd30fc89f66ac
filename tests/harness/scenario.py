"""Helpers of the fault-injection tests (tests/test_faults.py).

The service runs as the real console script in a session of its own (so a
test can signal the supervisor alone or its whole process group); its logs go
to files so that thousands of log lines never block it on a full pipe.
Messages are produced partition by partition, so the test knows the partition
and offset of every message it produced.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from conftest import console_script
from writer.kafka_mock import produce
from writer.produce import produce_when_room
from writer.sample_messages import BASE_TIME, cluster_id, encoded

PARTITIONS = 4
APP_NAME = "ccx-notification-writer"
PREFIX = "CCX_NOTIFICATION_WRITER__"

Key = tuple  # (org_id, cluster, updated_at naive UTC): the primary key of new_reports


# ---- what is produced -------------------------------------------------------


def expected_key(number: int, org_id: int | None = None) -> Key:
    """The primary key that sample message ``number`` must be stored under."""
    when = (BASE_TIME + datetime.timedelta(seconds=number, microseconds=123456)).replace(tzinfo=None)
    return (org_id if org_id is not None else 1000 + number % 97, cluster_id(number), when)


@dataclass
class Produced:
    """Sample messages produced to a topic: which number sits at which (partition, offset)."""

    topic: str
    numbers: list[int]
    position: dict[int, tuple[int, int]] = field(default_factory=dict)  # number -> (partition, offset)
    per_partition: dict[int, int] = field(default_factory=dict)  # partition -> messages

    @property
    def keys(self) -> set[Key]:
        return {expected_key(n) for n in self.numbers}

    def keys_below(self, committed: dict[int, int]) -> set[Key]:
        """Keys of the messages before the committed offset of their partition."""
        return {expected_key(n) for n, (p, o) in self.position.items() if o < committed.get(p, 0)}


def produce_numbers(bootstrap: str, topic: str, numbers: list[int], size: str = "middle_size") -> Produced:
    """Produce sample messages ``numbers`` over all partitions (number % 4), in order, keyed."""
    produced = Produced(topic, list(numbers))
    for partition in range(PARTITIONS):
        mine = [n for n in numbers if n % PARTITIONS == partition]
        base = produced.per_partition.get(partition, 0)
        produce(bootstrap, topic, (encoded(n, size) for n in mine), (str(n).encode() for n in mine),
                partition=partition)
        for index, n in enumerate(mine):
            produced.position[n] = (partition, base + index)
        produced.per_partition[partition] = base + len(mine)
    low_high = watermarks(bootstrap, topic)
    assert all(low == 0 for low, _ in low_high.values()), f"the mock dropped data: {low_high}"
    assert {p: high for p, (_, high) in low_high.items()} == produced.per_partition, low_high
    return produced


def produce_raw(bootstrap: str, topic: str, records: list[dict]) -> list[tuple[int, int]]:
    """Produce records {value, key, headers, partition}; returns their (partition, offset) in order."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "zstd",
                         "message.max.bytes": 20_000_000, "max.in.flight.requests.per.connection": 1})
    positions: list = [None] * len(records)
    failures = []

    def delivered(index):
        def callback(error, message):
            if error is not None:
                failures.append(error)
            else:
                positions[index] = (message.partition(), message.offset())
        return callback

    for index, record in enumerate(records):
        produce_when_room(producer, topic, value=record.get("value"), key=record.get("key"),
                          headers=record.get("headers"), partition=record.get("partition", index % PARTITIONS),
                          on_delivery=delivered(index))
    remaining = producer.flush(60)
    assert not remaining and not failures, (remaining, failures[:3])
    return positions


# ---- Kafka state ----------------------------------------------------------------


def _client(bootstrap: str, group: str | None = None) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"probe-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})


def watermarks(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    consumer = _client(bootstrap)
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(PARTITIONS)}
    finally:
        consumer.close()


def committed(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    """The group's committed offset per partition (0 when nothing is committed)."""
    consumer = _client(bootstrap, group)
    try:
        result = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: max(tp.offset, 0) for tp in result}


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    return {p: high for p, (_, high) in watermarks(bootstrap, topic).items()}


def consume_topic(bootstrap: str, topic: str, timeout: float = 60) -> list:
    """Every message of ``topic`` (all partitions, from the beginning to the end offsets seen now)."""
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "fetch.max.bytes": 60_000_000,
                         "receive.message.max.bytes": 100_000_000})
    messages = []
    try:
        pending = {p for p, high in ends.items() if high > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, 1.0):
                if message.error() is not None:
                    continue
                messages.append(message)
                if message.offset() + 1 >= ends[message.partition()]:
                    pending.discard(message.partition())
        assert not pending, f"could not read {topic} to its end offsets {ends}"
    finally:
        consumer.close()
    return messages


def header(message, name: str) -> bytes | None:
    """The last header ``name`` of a message (ours come after the original ones)."""
    values = [v for k, v in (message.headers() or []) if k == name]
    return values[-1] if values else None


# ---- the database -----------------------------------------------------------------


def stored_keys(database) -> collections.Counter:
    with database.connect() as connection:
        rows = connection.execute("SELECT org_id, cluster, updated_at FROM new_reports").fetchall()
    return collections.Counter((org, cluster, when) for org, cluster, when in rows)


def row_count(database) -> int:
    with database.connect() as connection:
        return connection.execute("SELECT count(*) FROM new_reports").fetchone()[0]


def compare(expected: set, stored: collections.Counter) -> dict:
    """lost: expected but not stored; duplicated: stored more than once; unexpected: stored, not expected."""
    return {
        "lost": len(expected - set(stored)),
        "duplicated": sum(count - 1 for count in stored.values() if count > 1),
        "unexpected": len(set(stored) - expected),
    }


class RowMonitor:
    """Samples count(*) of new_reports in the background: (monotonic time, rows)."""

    def __init__(self, database, interval: float = 0.1) -> None:
        self.database = database
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        connection = None
        while not self._stop.is_set():
            try:
                if connection is None or connection.closed:
                    connection = self.database.connect()
                count = connection.execute("SELECT count(*) FROM new_reports").fetchone()[0]
                self.samples.append((time.monotonic(), count))
            except Exception:  # noqa: BLE001 - the database may be down on purpose
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.close()
                connection = None
            self._stop.wait(self.interval)
        if connection is not None:
            connection.close()

    @property
    def rows(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def wait_rows(self, at_least: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.rows < at_least:
            assert time.monotonic() < deadline, f"rows stayed at {self.rows}, expected at least {at_least}"
            time.sleep(0.05)

    def progress_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` until the row count first grew beyond its value at ``moment``."""
        before = [c for t, c in self.samples if t <= moment]
        base = before[-1] if before else 0
        for t, c in self.samples:
            if t > moment and c > base:
                return round(t - moment, 2)
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def terminate_writer_backends(database) -> int:
    """pg_terminate_backend on the service's connections to this test's database only."""
    with database.connect() as connection:
        return len(connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name = %s"
            " AND pid <> pg_backend_pid()", (database.name, APP_NAME),
        ).fetchall())


# ---- the service ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_env(database_env: dict, bootstrap: str, topic: str, group: str, **settings) -> dict[str, str]:
    """Environment of the console script; settings: SECTION__KEY=value (case-insensitive)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCX_NOTIFICATION_WRITER") and k != "ACG_CONFIG"}
    env.update(database_env)
    env.update({
        PREFIX + "BROKER__ADDRESSES": bootstrap,
        PREFIX + "BROKER__TOPIC": topic,
        PREFIX + "BROKER__GROUP": group,
        # A SIGKILLed consumer keeps its partitions until its session times out.
        PREFIX + "BROKER__SESSION_TIMEOUT_MS": "6000",
        PREFIX + "PROCESSING__WORKERS": "2",
        PREFIX + "PROCESSING__BATCH_SIZE": "200",
        PREFIX + "PROCESSING__BATCH_TIMEOUT_MS": "200",
        PREFIX + "PROCESSING__SHUTDOWN_TIMEOUT_S": "10",
        PREFIX + "METRICS__ADDRESS": f"127.0.0.1:{free_port()}",
    })
    env.update({PREFIX + k.upper(): str(v) for k, v in settings.items()})
    return env


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            if match:
                values[match.group(1)] = float(match.group(2))
    return values


class Service:
    """The console script (supervisor + workers) as a subprocess in its own session."""

    def __init__(self, env: dict[str, str], *args: str, workdir: Path, name: str = "service") -> None:
        self.env = env
        self.args = args
        workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        # Open for the subprocess's whole life, so no `with`: close() shuts them.
        self._stdout = open(self.stdout_path, "w")  # noqa: SIM115
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [console_script(), *args], env=env, cwd=str(workdir), stdout=self._stdout, stderr=self._stderr,
            start_new_session=True,
        )
        self.address = env[PREFIX + "METRICS__ADDRESS"]

    # -- HTTP
    def request(self, path: str, method: str = "GET", timeout: float = 5) -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://{self.address}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def metrics_text(self) -> str:
        return self.request("/metrics")[1].decode()

    def metrics(self) -> dict[str, float]:
        return parse_metrics(self.metrics_text())

    def health(self) -> tuple[int, dict]:
        status, body = self.request("/health")
        return status, json.loads(body)

    def ready(self) -> tuple[int, dict]:
        status, body = self.request("/ready")
        return status, json.loads(body)

    def wait_http(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                self.request("/metrics", timeout=2)
                return
            assert self.process.poll() is None, (
                f"the service exited with {self.process.returncode}: {self.stderr()[-2000:]}"
            )
            assert time.monotonic() < deadline, "the metrics server did not come up"
            time.sleep(0.1)

    # -- processes
    def workers(self) -> list[psutil.Process]:
        """The worker processes (spawned children of the supervisor)."""
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []
        result = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                if "--multiprocessing-fork" in child.cmdline() and "resource_tracker" not in " ".join(child.cmdline()):
                    result.append(child)
        return result

    def wait_workers(self, count: int, timeout: float = 30) -> list[psutil.Process]:
        """Until ``count`` workers run; fewer are returned only when the service has exited."""
        deadline = time.monotonic() + timeout
        while len(workers := self.workers()) < count:
            if self.process.poll() is not None:
                return workers
            assert time.monotonic() < deadline, f"{len(workers)} workers running, expected {count}"
            time.sleep(0.1)
        return workers

    def signal(self, sig: int) -> None:
        os.kill(self.process.pid, sig)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            if not self._stdout.closed:
                self._stdout.flush()
                self._stderr.flush()

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            return self.wait(10)

    def close(self) -> None:
        """Make sure nothing of this service is left running."""
        if self.process.poll() is None:
            self.kill_group()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        # Workers are in the same process group even if orphaned.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._stdout.close()
        self._stderr.close()

    def stdout(self) -> str:
        if not self._stdout.closed:
            self._stdout.flush()
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def log_records(self) -> list[dict]:
        records = []
        for line in self.stderr().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records


def wait_until(predicate, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {message}"
        time.sleep(interval)


# ---- the reliability table ----------------------------------------------------------------


RESULTS: list[dict] = []


def record(scenario: str, **numbers) -> dict:
    entry = {"scenario": scenario, **numbers}
    RESULTS.append(entry)
    print("RELIABILITY " + json.dumps(entry, default=str))
    return entry


def write_results(path: str) -> None:
    """Append this run's results as JSON lines (the README's Reliability table is written from them)."""
    with open(path, "a") as handle:
        for entry in RESULTS:
            handle.write(json.dumps(entry, default=str) + "\n")


# ---- a TCP proxy that can stop forwarding (half-open connections) ------------------------------------


class StallingProxy:
    """Forwards 127.0.0.1:<port> to a target; ``stall()`` makes every connection open so far, and every
    new one until ``heal()``, silent for ever on the client's side: still open and acknowledged by the
    kernel, never forwarded or answered (a failover without RST, a load balancer that lost its backend).
    Connections made after ``heal()`` work."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._generation = 0  # connections of an older generation than _live_from are dead
        self._live_from = 0
        self._sockets: list[socket.socket] = []
        self._upstreams: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        self._generation += 1
        self._live_from = None  # nothing is forwarded until heal()
        # The server's side goes away (the old primary is gone, or noticed the client was): its sessions
        # end and release their locks. The client's side stays open and silent: that is the half-open
        # connection the client has to notice.
        for upstream in self._upstreams:
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_RDWR)

    def heal(self) -> None:
        self._generation += 1
        self._live_from = self._generation

    def _alive(self, generation: int) -> bool:
        return self._live_from is not None and generation >= self._live_from

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            generation = self._generation
            self._sockets.append(client)
            threading.Thread(target=self._serve, args=(client, generation), daemon=True).start()

    def _serve(self, client: socket.socket, generation: int) -> None:
        while self._live_from is None and not self._closed:
            time.sleep(0.05)
        if self._closed or not self._alive(generation):
            return self._hold(client)  # accepted while stalled: dead for ever
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self._sockets.append(upstream)
        self._upstreams.append(upstream)
        threading.Thread(target=self._pump, args=(upstream, client, generation), daemon=True).start()
        self._pump(client, upstream, generation)

    def _hold(self, client: socket.socket) -> None:
        """A connection accepted while stalled stays silent for ever (until close())."""
        while not self._closed:
            time.sleep(0.2)

    def _pump(self, source: socket.socket, destination: socket.socket, generation: int) -> None:
        source.settimeout(0.1)
        while not self._closed:
            if not self._alive(generation):
                time.sleep(0.05)  # stalled: read nothing, forward nothing, close nothing
                continue
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                destination.sendall(data)
            except OSError:
                break
        if self._alive(generation) or self._closed:
            for end in (source, destination):
                with contextlib.suppress(OSError):
                    end.close()

    def close(self) -> None:
        self._closed = True
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()
