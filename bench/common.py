"""Shared pieces of the benchmarks: databases, messages, producing, running the writer, verifying.

Everything here is measurement plumbing; nothing in ``writer/`` depends on it.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg

from writer import sample_messages
from writer.copy_rows import encode_rows
from writer.message import Row, parse_message

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "ccx-notification-writer")
ENV = "CCX_NOTIFICATION_WRITER__"


class BenchFailure(Exception):
    """A run produced a wrong result (row count, duplicates, offsets): the benchmark must fail."""


# ---- PostgreSQL ----------------------------------------------------------------------------

sys.path.insert(0, str(ROOT))
from tests.conftest import PostgresServer as Server, find_or_start_postgres  # noqa: E402 - the tests' helpers


def find_server(workdir: str) -> tuple[Server, object | None]:
    """The local PostgreSQL (or an embedded one when none runs), via the tests' helper."""
    return find_or_start_postgres(workdir)


def server_version(server: Server) -> str:
    with psycopg.connect(server.conninfo(), autocommit=True) as connection:
        return connection.execute("SHOW server_version").fetchone()[0]


@dataclass
class BenchDatabase:
    server: Server
    name: str

    @property
    def conninfo(self) -> str:
        return self.server.conninfo(self.name)

    def env(self) -> dict[str, str]:
        return {
            ENV + "STORAGE__PG_HOST": self.server.host,
            ENV + "STORAGE__PG_PORT": str(self.server.port),
            ENV + "STORAGE__PG_USERNAME": self.server.user,
            ENV + "STORAGE__PG_DB_NAME": self.name,
        }

    def drop(self) -> None:
        with psycopg.connect(self.server.conninfo(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCX_NOTIFICATION_WRITER") and k != "ACG_CONFIG"}
    env.update(extra)
    return env


# Benchmark-only changes applied to every database after the migrations (e.g. --report-compression).
EXTRA_SCHEMA_SQL: list[str] = []


def migrated_database(server: Server, label: str) -> BenchDatabase:
    """A fresh database at the latest schema version, set up through the writer's command line."""
    database = BenchDatabase(server, f"ccxw_bench_{label}_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(server.conninfo(), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{database.name}"')
    for args in (["--db-init-migration"], ["--db-init"], ["--migrate", "latest"]):
        result = subprocess.run([CLI, *args], env=clean_env(database.env()), capture_output=True, text=True,
                                cwd="/tmp", timeout=120)
        if result.returncode != 0:
            raise BenchFailure(f"{' '.join(args)} failed: {result.stderr.strip()}")
    with psycopg.connect(database.conninfo) as connection:
        version = connection.execute("SELECT version FROM migration_info").fetchone()[0]
    if version != 8:
        raise BenchFailure(f"--migrate latest reached version {version}, expected 8")
    if EXTRA_SCHEMA_SQL:
        with psycopg.connect(database.conninfo, autocommit=True) as connection:
            for statement in EXTRA_SCHEMA_SQL:
                connection.execute(statement)
    return database


def prefill(database: BenchDatabase, rows: int, size: str) -> float:
    """Put ``rows`` rows (keys disjoint from the benchmark's messages) into new_reports; returns seconds."""
    report = shrunk_report(size).decode()
    started = time.perf_counter()
    with psycopg.connect(database.conninfo, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO new_reports (org_id, account_number, cluster, report, updated_at, kafka_offset)"
            " SELECT 1 + g %% 5000, 9000 + g %% 5000,"
            "  lpad(to_hex(g), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(g %% 4096), 12, '0'),"
            "  %s, timestamp '2025-06-01' + g * interval '1 second', g"
            " FROM generate_series(1, %s) AS g",
            (report, rows),
        )
        connection.execute("VACUUM (ANALYZE) new_reports")
    return time.perf_counter() - started


# ---- messages ------------------------------------------------------------------------------

class MessageFactory:
    """``sample_messages.encoded(i, size)``, byte for byte, ~50x faster (a template with holes)."""

    _HOLES = {"OrgID": "@@org@@", "AccountNumber": "@@acc@@", "ClusterName": "@@cl@@", "LastChecked": "@@lc@@"}

    def __init__(self, size: str) -> None:
        self.size = size
        body = sample_messages.message(0, size)
        for key, hole in self._HOLES.items():
            body[key] = hole
        body["Report"] = dict(body["Report"], system={"metadata": {"cluster_id": "@@cl@@"}, "hostname": None})
        text = orjson.dumps(body)
        text = text.replace(b'"@@org@@"', b"@@org@@").replace(b'"@@acc@@"', b"@@acc@@")
        # The template split at its holes: parts[0] hole parts[1] hole ... (holes in document order).
        pieces = re.split(rb"@@(org|acc|cl|lc)@@", text)
        self._parts, self._holes = pieces[0::2], pieces[1::2]
        for number in (0, 1, 96, 97, 12345, 86400 * 400 + 7, 10**7 + 3):
            if self.encoded(number) != sample_messages.encoded(number, size):
                raise AssertionError("MessageFactory template differs from sample_messages.encoded")

    def encoded(self, number: int, last_checked: datetime.datetime | None = None) -> bytes:
        if last_checked is None:
            stamp = _BASE_STAMP + number
            last = b"%s.123456Z" % time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)).encode()
        else:
            last = (last_checked.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z").encode()
        fill = {b"org": b"%d" % (1000 + number % 97), b"acc": b"%d" % (5000 + number % 97),
                b"cl": cluster_bytes(number), b"lc": last}
        parts = self._parts
        out = [parts[0]]
        for index, hole in enumerate(self._holes):
            out.append(fill[hole])
            out.append(parts[index + 1])
        return b"".join(out)


_BASE_STAMP = int(sample_messages.BASE_TIME.timestamp())
_CLUSTER_BASE = 0x5D5892D4_1F74_4CCF_91AF_000000000000


def cluster_bytes(number: int) -> bytes:
    """``sample_messages.cluster_id(number)`` as bytes, without building a UUID object."""
    h = b"%032x" % (_CLUSTER_BASE + number)
    return b"%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def shrunk_report(size: str) -> bytes:
    row = parse_message(sample_messages.encoded(0, size), 0, datetime.datetime(2100, 1, 1))
    assert type(row) is Row
    return row.report


@dataclass
class Backlog:
    """Messages produced to one topic: which were valid and where each landed (not the bodies)."""

    topic: str
    size: str
    invalid_every: int
    valid: list[bool]
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.valid)

    @property
    def valid_count(self) -> int:
        return sum(self.valid)

    def values(self):
        return message_values(self.count, self.size, self.invalid_every)

    def expected_rows(self) -> set[tuple[str, int]]:
        """(cluster, kafka_offset) of every valid message."""
        return {(sample_messages.cluster_id(i), self.offsets[i]) for i in range(self.count) if self.valid[i]}


def is_valid(number: int, invalid_every: int) -> bool:
    return not (invalid_every and number % invalid_every == invalid_every - 1)


def message_values(count: int, size: str, invalid_every: int = 0):
    """Messages 0..count-1 (generated on the fly: 100k middle-size messages are 1.4 GB); every
    ``invalid_every``-th one is replaced by an invalid message, cycling through the kinds."""
    factory = MessageFactory(size)
    invalid = sample_messages.invalid_messages(10)
    for number in range(count):
        if is_valid(number, invalid_every):
            yield factory.encoded(number)
        else:
            yield invalid[(number // invalid_every) % len(invalid)][0]


def produce_backlog(bootstrap: str, topic: str, count: int, size: str, invalid_every: int = 0) -> Backlog:
    """Produce with zstd and large batches, keyed for an even spread; check the mock kept everything."""
    from confluent_kafka import Consumer, TopicPartition

    from writer.kafka_mock import produce

    valid = [is_valid(i, invalid_every) for i in range(count)]
    backlog = Backlog(topic, size, invalid_every, valid, [-1] * count, [-1] * count)
    try:
        positions = produce(bootstrap, topic, backlog.values(), (b"%d" % index for index in range(count)))
    except RuntimeError as error:
        raise BenchFailure(str(error)) from None
    backlog.partitions = [partition for partition, _ in positions]
    backlog.offsets = [offset for _, offset in positions]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        per_partition = Counter(backlog.partitions)
        for partition, produced in sorted(per_partition.items()):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if low != 0 or high != produced:
                raise BenchFailure(
                    f"the Kafka mock did not keep the backlog: {topic}[{partition}] low {low} high {high}, "
                    f"produced {produced} (the mock keeps only 5 MiB of message sets per partition)"
                )
    finally:
        consumer.close()
    return backlog


# ---- verification --------------------------------------------------------------------------

def verify(database: BenchDatabase, expected: set[tuple[str, int]], report: bytes | None, prefilled: int = 0) -> int:
    """Rows == valid messages, nothing stored twice, the stored (cluster, kafka_offset) set is the produced one."""
    with psycopg.connect(database.conninfo) as connection:
        where = "WHERE updated_at >= '2026-01-01'" if prefilled else ""
        total, distinct = connection.execute(
            f"SELECT count(*), count(DISTINCT (org_id, cluster, updated_at)) FROM new_reports {where}"
        ).fetchone()
        stored = {(cluster, offset) for cluster, offset in
                  connection.execute(f"SELECT cluster, kafka_offset FROM new_reports {where}")}
        wrong_report = 0
        if report is not None:
            wrong_report = connection.execute(
                f"SELECT count(*) FROM new_reports {where + (' AND' if where else 'WHERE')} report <> %s",
                (report.decode(),),
            ).fetchone()[0]
        if prefilled:
            kept = connection.execute("SELECT count(*) FROM new_reports WHERE updated_at < '2026-01-01'").fetchone()[0]
            if kept != prefilled:
                raise BenchFailure(f"{kept} pre-filled rows left, expected {prefilled}")
    if total != len(expected):
        raise BenchFailure(f"{database.name}: {total} rows stored, expected {len(expected)}")
    if distinct != total:
        raise BenchFailure(f"{database.name}: {total - distinct} rows stored twice")
    if stored != expected:
        missing, extra = len(expected - stored), len(stored - expected)
        raise BenchFailure(f"{database.name}: stored (cluster, kafka_offset) set differs: {missing} missing, {extra} unexpected")
    if wrong_report:
        raise BenchFailure(f"{database.name}: {wrong_report} rows with a report other than the shrunk sample")
    return total


def prebuilt_batches(backlog: Backlog, batch_size: int) -> list[bytes]:
    """The COPY data the writer would send: parse_message + encode_rows per batch of valid messages."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    batches, rows = [], []
    for value, offset in zip(backlog.values(), backlog.offsets):
        row = parse_message(value, offset, now)
        if type(row) is Row:
            rows.append(row)
            if len(rows) == batch_size:
                batches.append(encode_rows(rows))
                rows = []
    if rows:
        batches.append(encode_rows(rows))
    return batches


# ---- watching PostgreSQL -------------------------------------------------------------------

class WaitSampler:
    """Samples pg_stat_activity of one database every ``interval`` s: what its sessions are doing."""

    def __init__(self, database: BenchDatabase, interval: float = 0.05) -> None:
        self.database = database
        self.interval = interval
        self.samples: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "WaitSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with psycopg.connect(self.database.server.conninfo(), autocommit=True) as connection:
            while not self._stop.is_set():
                for state, wait_type, wait, query in connection.execute(
                    "SELECT state, wait_event_type, wait_event, left(query, 40) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                    (self.database.name,),
                ):
                    if state == "active":
                        verb = (query or "").split(None, 1)[0].upper() if query else "?"
                        self.samples[f"{verb}:{wait_type or 'CPU'}:{wait or '-'}"] += 1
                    else:
                        self.samples[f"{state}"] += 1
                self._stop.wait(self.interval)

    def summary(self, top: int = 6) -> str:
        total = sum(self.samples.values()) or 1
        return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in self.samples.most_common(top))


# ---- memory ---------------------------------------------------------------------------------

def vm_hwm_kib(pid: int | str = "self") -> int | None:
    """Peak RSS of a process (VmHWM): per address space, reset by exec, unlike ru_maxrss, which a
    child started from a large parent inherits across fork + exec."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRss:
    """Polls VmHWM of a process and its descendants every ``interval`` s; keeps the last value of each."""

    def __init__(self, root_pid: int, interval: float = 0.1) -> None:
        self.root_pid = root_pid
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                processes = [psutil.Process(self.root_pid)]
                processes += processes[0].children(recursive=True)
            except psutil.Error:
                processes = []
            for process in processes:
                value = vm_hwm_kib(process.pid)
                if value is not None:
                    self.peaks[process.pid] = max(value, self.peaks.get(process.pid, 0))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# ---- running the writer --------------------------------------------------------------------

def log_time(line: dict) -> float:
    return datetime.datetime.fromisoformat(line["time"]).timestamp()


@dataclass
class WriterRun:
    returncode: int
    stdout: str
    log: list[dict]
    started: float  # wall clock, just before the process was started
    stderr_other: list[str]
    peaks: dict[int, int] = field(default_factory=dict)  # pid -> VmHWM KiB, sampled
    pid: int = 0

    def peak_rss(self) -> tuple[int | None, list[int]]:
        """(supervisor, [workers]) peak RSS in KiB, from VmHWM samples (the worker pids from the log)."""
        workers = [line["worker_pid"] for line in self.all("worker ") if "worker_pid" in line]
        return self.peaks.get(self.pid), [self.peaks[pid] for pid in workers if pid in self.peaks]

    def first(self, message_start: str) -> dict | None:
        return next((line for line in self.log if line.get("message", "").startswith(message_start)), None)

    def all(self, message_start: str) -> list[dict]:
        return [line for line in self.log if line.get("message", "").startswith(message_start)]


def writer_env(database: BenchDatabase, bootstrap: str, topic: str, workers: int, extra: dict | None = None) -> dict:
    env = {
        **database.env(),
        ENV + "BROKER__ADDRESSES": bootstrap,
        ENV + "BROKER__TOPIC": topic,
        ENV + "PROCESSING__WORKERS": str(workers),
        ENV + "METRICS__ADDRESS": "127.0.0.1:0",
    }
    env.update(extra or {})
    return clean_env(env)


def parse_log(text: str) -> tuple[list[dict], list[str]]:
    lines, other = [], []
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            other.append(raw)
            continue
        if isinstance(line, dict):
            lines.append(line)
        else:
            other.append(raw)
    return lines, other


def run_replay(env: dict, group: str, timeout: float, wrap: list[str] | None = None) -> WriterRun:
    """``ccx-notification-writer --replay`` in a session of its own; killed with its workers after ``timeout``."""
    started = time.time()
    process = subprocess.Popen([*(wrap or []), CLI, "--replay", "--group-id", group], env=env, cwd="/tmp",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    sampler = PeakRss(process.pid)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise BenchFailure(f"--replay did not finish within {timeout:.0f} s; its log ends with:\n{stderr[-3000:]}")
    finally:
        sampler.stop()
    lines, other = parse_log(stderr)
    pid = process.pid
    if wrap:  # the writer runs under a wrapper (py-spy): its pid is in the log
        pid = next((line["pid"] for line in lines if line.get("logger") == "writer.supervisor"), pid)
    return WriterRun(process.returncode, stdout, lines, started, other, sampler.peaks, pid)


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
