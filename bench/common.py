"""Shared pieces of the benchmarks: stores, messages, backlogs, running the writer, verifying.

Everything here is measurement plumbing; nothing in ``writer/`` depends on it.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg

from bench import kafka, messages, procfs
from bench.pg import PgTarget, Store
from writer import sample_messages
from writer.config import ENV_PREFIX as ENV
from writer.copy_rows import encode_rows
from writer.message import Row, parse_message
from writer.testing.environment import without_writer_settings

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "ccx-notification-writer")
LATEST_SCHEMA_VERSION = 8


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class BenchFailure(Exception):
    """A run produced a wrong result (row count, duplicates, offsets) or could not run: exit 1."""


_private_dir: str | None = None


def private_cwd() -> str:
    """An empty directory of this process's own (mode 0700), removed at exit: the writer's working
    directory, so it reads no ./config.toml (a shared /tmp may hold anybody's)."""
    global _private_dir
    if _private_dir is None:
        _private_dir = tempfile.mkdtemp(prefix="ccxw-bench-cwd-")
        atexit.register(shutil.rmtree, _private_dir, True)
    return _private_dir


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without the service's configuration (file, variables, Clowder)."""
    return {**without_writer_settings(), **extra}


# ---- PostgreSQL ----------------------------------------------------------------------------

# Benchmark-only changes applied to every store after the migrations (e.g. --report-compression).
EXTRA_SCHEMA_SQL: list[str] = []


def migrated_store(target: PgTarget, label: str) -> Store:
    """A fresh database (or schema) at the latest schema version, set up through the writer's command line."""
    store = target.new_store(label)
    try:
        for args in (["--db-init-migration"], ["--db-init"], ["--migrate", "latest"]):
            result = subprocess.run([CLI, *args], env=clean_env(store.env("ccxw-bench-migrate")), capture_output=True,
                                    text=True, cwd=private_cwd(), timeout=120)
            if result.returncode != 0:
                raise BenchFailure(f"{' '.join(args)} failed: {result.stderr.strip()}")
        with psycopg.connect(store.conninfo()) as connection:
            version = connection.execute("SELECT version FROM migration_info").fetchone()[0]
        if version != LATEST_SCHEMA_VERSION:
            raise BenchFailure(f"--migrate latest reached version {version}, expected {LATEST_SCHEMA_VERSION}")
        if EXTRA_SCHEMA_SQL:
            with psycopg.connect(store.conninfo(), autocommit=True) as connection:
                for statement in EXTRA_SCHEMA_SQL:
                    connection.execute(statement)
    except BaseException:
        store.drop()
        raise
    return store


def prefill(store: Store, rows: int, size: str) -> float:
    """Put ``rows`` rows (keys and times disjoint from the benchmark's messages) into new_reports; returns seconds."""
    report = shrunk_report(size).decode()
    started = time.perf_counter()
    with psycopg.connect(store.conninfo(), autocommit=True) as connection:
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


def digest(report: bytes) -> str:
    return hashlib.md5(report).hexdigest()  # noqa: S324 - a fingerprint, compared with PostgreSQL's md5()


def message_values(count: int, mix: str, size: str, invalid_every: int = 0):
    """Messages 0..count-1, generated on the fly (100k middle-size messages are 1.4 GB): ``uniform``
    is the same ``size`` report every time, ``varied`` production-like (bench/messages.py); every
    ``invalid_every``-th one is replaced by an invalid message, cycling through the kinds."""
    encode = MessageFactory(size).encoded if mix == "uniform" else messages.varied
    invalid = sample_messages.invalid_messages(10)
    for number in range(count):
        if is_valid(number, invalid_every):
            yield encode(number)
        else:
            yield invalid[(number // invalid_every) % len(invalid)][0]


def is_valid(number: int, invalid_every: int) -> bool:
    return not (invalid_every and number % invalid_every == invalid_every - 1)


@dataclass
class Backlog:
    """Messages produced to one topic of the benchmark's own: where each landed (not the bodies)."""

    topic: str
    mix: str
    size: str
    invalid_every: int
    count: int
    partitions: list[int]
    offsets: list[int]
    partition_count: int
    topic_creation: str
    produced: kafka.Produced
    expected: dict[tuple[str, int], str] = field(default_factory=dict)  # (cluster, offset) -> md5 of report

    @property
    def valid_count(self) -> int:
        return sum(is_valid(i, self.invalid_every) for i in range(self.count))

    def values(self):
        return message_values(self.count, self.mix, self.size, self.invalid_every)

    def prepare(self, batch_size: int, build_batches: bool, keep_messages: bool = False) -> Prepared:
        """Fill ``expected`` and, if asked, build the COPY data the writer would send (the COPY ceiling's
        input: ``parse_message`` + ``encode_rows`` per batch of valid messages) and keep every message's
        value and offset (the pipeline ceiling's input)."""
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        batches, rows = [], []
        kept: list[tuple[bytes, int]] = []
        for number, (value, offset) in enumerate(zip(self.values(), self.offsets, strict=False)):
            if keep_messages:
                kept.append((value, offset))
            row = parse_message(value, offset, now)
            if type(row) is not Row:
                if is_valid(number, self.invalid_every):
                    raise BenchFailure(f"generated message {number} is invalid: {row}")
                continue
            self.expected[(row.cluster, offset)] = digest(row.report)
            if build_batches:
                rows.append(row)
                if len(rows) == batch_size:
                    batches.append(encode_rows(rows))
                    rows = []
        if rows:
            batches.append(encode_rows(rows))
        return Prepared(batches, kept)


@dataclass
class Prepared:
    batches: list[bytes]  # COPY data per batch (the COPY ceiling's input)
    messages: list[tuple[bytes, int]]  # (value, offset) of every message (the pipeline ceiling's input)


def produce_backlog(broker: kafka.Broker, topic: str, count: int, mix: str, size: str, invalid_every: int,
                    partitions: int, compression: str | None = None) -> Backlog:
    """A topic of the benchmark's own with ``count`` messages, keyed for an even spread; checks the
    broker kept every message. ``compression``: the producer's compression.type instead of the default
    (the real producer's on a given broker, zstd on the benchmark's own mock)."""
    creation = broker.create_topic(topic, partitions)
    settings = dict(kafka.REALISTIC if broker.given else kafka.DENSE)
    if compression:
        settings["compression.type"] = compression
    try:
        produced = kafka.produce(broker, topic, message_values(count, mix, size, invalid_every),
                                 (b"%d" % i for i in range(count)), count, settings)
        kafka.check_retained(broker, topic, produced)
        partition_count = broker.partitions(topic)
    except kafka.BrokerError as error:
        raise BenchFailure(str(error)) from None
    if partition_count != partitions:
        log(f"warning: topic {topic} has {partition_count} partitions, not --partitions {partitions} ({creation})")
    return Backlog(topic, mix, size, invalid_every, count, produced.partitions, produced.offsets, partition_count,
                   creation, produced)


# ---- verification --------------------------------------------------------------------------

def verify(store: Store, expected: dict[tuple[str, int], str], prefilled: int = 0) -> int:
    """Rows == valid messages, nothing stored twice, the stored (cluster, kafka_offset) set is the produced
    one, every report is the expected shrunk report (by md5)."""
    where = "WHERE updated_at >= '2026-01-01'" if prefilled else ""
    with psycopg.connect(store.conninfo()) as connection:
        total, distinct = connection.execute(
            f"SELECT count(*), count(DISTINCT (org_id, cluster, updated_at)) FROM new_reports {where}"
        ).fetchone()
        stored = {(cluster, offset): md5 for cluster, offset, md5 in
                  connection.execute(f"SELECT cluster, kafka_offset, md5(report) FROM new_reports {where}")}
        if prefilled:
            kept = connection.execute("SELECT count(*) FROM new_reports WHERE updated_at < '2026-01-01'").fetchone()[0]
            if kept != prefilled:
                raise BenchFailure(f"{kept} pre-filled rows left, expected {prefilled}")
    if total != len(expected):
        raise BenchFailure(f"{store.name}: {total} rows stored, expected {len(expected)}")
    if distinct != total:
        raise BenchFailure(f"{store.name}: {total - distinct} rows stored twice")
    if stored.keys() != expected.keys():
        missing, extra = len(expected.keys() - stored.keys()), len(stored.keys() - expected.keys())
        raise BenchFailure(f"{store.name}: stored (cluster, kafka_offset) set differs: "
                           f"{missing} missing, {extra} unexpected")
    wrong = sum(stored[key] != value for key, value in expected.items())
    if wrong:
        raise BenchFailure(f"{store.name}: {wrong} rows with a report other than the expected shrunk report")
    return total


# ---- watching PostgreSQL -------------------------------------------------------------------

class SessionSampler:
    """Samples pg_stat_activity every ``interval`` s for the sessions named ``application_name``:
    what they are doing, and their backend pids (for CPU from /proc when PostgreSQL is local)."""

    def __init__(self, store: Store, application_name: str, interval: float = 0.05) -> None:
        self.monitor_conninfo = store.target.conninfo(store.database, application_name="ccxw-bench-monitor")
        self.application_name = application_name
        self.interval = interval
        self.samples: Counter = Counter()
        self.backend_pids: set[int] = set()
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SessionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        try:
            with psycopg.connect(self.monitor_conninfo, autocommit=True) as connection:
                while not self._stop.is_set():
                    for pid, state, wait_type, wait, query in connection.execute(
                        "SELECT pid, state, wait_event_type, wait_event, left(query, 40) FROM pg_stat_activity"
                        " WHERE application_name = %s", (self.application_name,),
                    ):
                        self.backend_pids.add(pid)
                        if state == "active":
                            verb = (query or "").split(None, 1)[0].upper() if query else "?"
                            self.samples[f"{verb}:{wait_type or 'CPU'}:{wait or '-'}"] += 1
                        else:
                            self.samples[f"{state}"] += 1
                    self._stop.wait(self.interval)
        except psycopg.Error as error:  # e.g. a role that may not see other sessions: figures show "-"
            self.error = str(error).splitlines()[0]

    def summary(self, top: int = 6) -> str:
        total = sum(self.samples.values()) or 1
        return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in self.samples.most_common(top))

    def local_backends(self) -> dict[int, str]:
        """The sampled backend pids that /proc shows as PostgreSQL processes on this host."""
        return {pid: "postgres" for pid in list(self.backend_pids)
                if procfs.command_name(pid) in ("postgres", "postmaster")}


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
    sampler: procfs.ProcessSampler
    pid: int = 0

    def first(self, message_start: str) -> dict | None:
        return next((line for line in self.log if line.get("message", "").startswith(message_start)), None)

    def all(self, message_start: str) -> list[dict]:
        return [line for line in self.log if line.get("message", "").startswith(message_start)]


def writer_env(store: Store, broker: kafka.Broker, topic: str, workers: int, application_name: str,
               extra: dict | None = None) -> dict:
    """The writer's configuration for one run: this store, this topic, the broker's TLS/SASL settings;
    no dead-letter topic and no payload tracker (the service's topics are never written)."""
    env = {
        **store.env(application_name),
        **broker.writer_env,
        ENV + "BROKER__ADDRESSES": broker.bootstrap,
        ENV + "BROKER__TOPIC": topic,
        ENV + "BROKER__DEAD_LETTER_TOPIC": "",
        ENV + "TRACKER__TOPIC": "",
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


def stop_process_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a process started with ``start_new_session`` and every process in its group (the writer's
    workers): SIGTERM, then SIGKILL for what is left after ``grace`` seconds. Nothing left: no-op."""
    try:
        os.killpg(process.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.time() + grace
    while time.time() < deadline:
        process.poll()  # reap the leader, or its zombie keeps the group alive
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


def run_replay(env: dict, group: str, timeout: float, extra_pids=None, wrap: list[str] | None = None,
               progress: tuple[kafka.CommitWatcher, int] | None = None, command: tuple[str, ...] = (CLI,)) -> WriterRun:
    """``ccx-notification-writer --replay`` in a session of its own; killed with its workers after
    ``timeout``. Its processes (and ``extra_pids()``) are sampled for CPU and peak RSS meanwhile."""
    started = time.time()
    process = subprocess.Popen([*(wrap or []), *command, "--replay", "--group-id", group], env=env, cwd=private_cwd(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    sampler = procfs.ProcessSampler(process.pid, extra_pids).__enter__()
    line = kafka.Progress("draining", progress[1]) if progress else None
    try:
        while True:
            try:
                stdout, stderr = process.communicate(timeout=2)
                break
            except subprocess.TimeoutExpired:
                if time.time() - started > timeout:
                    stop_process_group(process, grace=0)
                    stdout, stderr = process.communicate()
                    raise BenchFailure(f"--replay did not finish within {timeout:.0f} s; "
                                       f"its log ends with:\n{stderr[-3000:]}") from None
                if line is not None and progress is not None:
                    committed = progress[0].committed()
                    if committed >= 0:
                        line.update(committed)
    finally:
        # Ctrl-C or SIGTERM (SystemExit) while it runs: its session got no signal, so stop it here.
        stop_process_group(process)
        sampler.stop()
        if line is not None:
            line.finish()
    lines, other = parse_log(stderr)
    # Workers are the children the supervisor logs as such; any other (multiprocessing's resource
    # tracker) is the supervisor's machinery.
    sampler.assign({line["worker_pid"]: "workers" for line in lines if "worker_pid" in line}, "supervisor")
    pid = process.pid
    if wrap:  # the writer runs under a wrapper (py-spy): its pid is in the log
        pid = next((line["pid"] for line in lines if line.get("logger") == "writer.supervisor"), pid)
    return WriterRun(process.returncode, stdout, lines, started, other, sampler, pid)


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
