"""The benchmark on targets it did not start: a broker in a process of its own reached through
--bootstrap-servers, and a PostgreSQL database named with --postgres, used with --schema-only.

Both run the benchmark's quick mode (every section: sweep with ceiling, baseline, latency, scaling)
with a small main backlog (--messages): they check that the benchmark runs and verifies its rows
there, and that it leaves the service's topics and tables alone; speed is its output, not checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from writer.testing.postgres import drop_database, find_or_start_postgres

ROOT = Path(__file__).resolve().parent.parent
SERVICE_TOPICS = ("ccx.ocp.results", "ccx.service.dead-letters", "ccx.service.tracker")


def run_benchmark(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.e2e", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def second_broker():
    """A mock cluster in a process of its own, started the way a user would start any broker."""
    process = subprocess.Popen([sys.executable, "-m", "writer.kafka_mock"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, text=True)
    try:
        bootstrap = process.stdout.readline().strip()
        assert ":" in bootstrap, f"no bootstrap address printed: {bootstrap!r}"
        yield bootstrap
    finally:
        process.terminate()
        process.wait(10)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int] | None:
    """High watermark per partition, or None when the broker has no such topic."""
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    if topic not in metadata.topics:
        return None
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-watermarks"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in metadata.topics[topic].partitions}
    finally:
        consumer.close()


@pytest.mark.timeout(600)
def test_benchmark_on_a_broker_it_did_not_start(second_broker, tmp_path):
    producer = Producer({"bootstrap.servers": second_broker})
    producer.produce(SERVICE_TOPICS[0], b'{"the service": "topic"}')
    assert producer.flush(10) == 0
    before = {topic: end_offsets(second_broker, topic) for topic in SERVICE_TOPICS}
    assert sum(before[SERVICE_TOPICS[0]].values()) == 1

    results = tmp_path / "results.json"
    # The service's own configuration names its topics; the benchmark must use topics of its own.
    service_env = {
        "CCX_NOTIFICATION_WRITER__BROKER__TOPIC": SERVICE_TOPICS[0],
        "CCX_NOTIFICATION_WRITER__BROKER__DEAD_LETTER_TOPIC": SERVICE_TOPICS[1],
        "CCX_NOTIFICATION_WRITER__TRACKER__TOPIC": SERVICE_TOPICS[2],
    }
    # lz4: this broker keeps only 5 MiB of a partition, and its topics get 4 partitions (it cannot create
    # them), too little for the scaling backlogs uncompressed (the default on a given broker, as the real producer).
    result = run_benchmark("--bootstrap-servers", second_broker, "--quick", "--messages", "500", "--workers", "1,2",
                           "--compression", "lz4", "--json", str(results), env=service_env)
    assert result.returncode == 0, result.stderr[-4000:]

    report = json.loads(results.read_text())
    assert second_broker in report["kafka"]["broker"]
    assert report["kafka"]["local_pid_seen"] is True  # the broker process runs here: its CPU is measured
    backlog = report["backlog"]
    assert backlog["messages"] == 500 and backlog["valid"] == 500
    assert backlog["mix"] == "varied" and backlog["compression"] == "lz4"
    assert 1.5 < backlog["compression_ratio"] < 50  # varied messages: compressible, far from uniform ones
    assert backlog["topic"].startswith("ccxw-bench.") and backlog["partitions"] >= 1
    writers = {run["streams"]: run for run in report["runs"] if run["kind"] == "writer"}
    ceilings = {run["streams"]: run for run in report["runs"] if run["kind"] == "ceiling"}
    pipelines = {run["streams"]: run for run in report["runs"] if run["kind"] == "pipeline"}
    assert set(writers) == set(ceilings) == set(pipelines) == {1, 2}
    assert all(run["rows"] == 500 for run in pipelines.values())
    assert len(report["targets"]) == 6
    for workers, run in writers.items():
        assert run["rows"] == 500, run
        assert len(run["worker_rss_kib"]) == workers, run  # the workers were seen in /proc
        # Sampled CPU figures only for windows of 20 sampling intervals (2 s) or more.
        assert (run["cpu_us_per_message"]["workers"] is None) == (run["seconds"] < 2.0), run
    for run in ceilings.values():  # read directly at the ceiling's start and end: the broker runs here
        assert run["cpu_us_per_message"]["broker"] is not None, run
        assert run["cpu_us_per_message"]["postgres"] is not None, run
    assert "| this writer: --replay, 2 workers | 500 |" in result.stdout
    assert [run["messages"] for run in report["runs"] if run["kind"] == "baseline"] == [500]
    assert report["latency"]["messages"] > 0 and report["latency"]["exit_status"] == 0
    assert [(run["messages"], run["prefilled"]) for run in report["scaling"]] == [(1000, 0), (3000, 0), (3000, 20_000)]
    # This broker answers CreateTopics with a timeout waiting for a controller: the benchmark falls back
    # to auto-creation, says so, and names the topics it could not delete.
    assert "auto-created on first produce (CreateTopics answered _TIMED_OUT" in backlog["topic_creation"]
    assert "not deleted (CreateTopics answered _TIMED_OUT" in result.stderr

    after = {topic: end_offsets(second_broker, topic) for topic in SERVICE_TOPICS}
    assert after == before, "the benchmark wrote to the service's topics"


@pytest.fixture
def user_database(tmp_path):
    """A database owned by a role that may not create databases: the benchmark gets only its conninfo."""
    server, embedded = find_or_start_postgres(str(tmp_path))
    role = f"ccxw_benchrole_{uuid.uuid4().hex[:8]}"
    name = f"ccxw_benchuser_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.conninfo(), autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB NOCREATEROLE NOSUPERUSER')
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
    conninfo = f"host={server.host} port={server.port} user={role} dbname={name}"
    try:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            # The service's own table in the same database: must stay exactly as it is.
            connection.execute("CREATE TABLE new_reports (cluster text PRIMARY KEY, report text)")
            connection.execute("INSERT INTO new_reports VALUES ('the-service-row', '{}')")
        yield conninfo
    finally:
        drop_database(server.conninfo(), name)
        with psycopg.connect(server.conninfo(), autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        if embedded is not None:
            embedded.cleanup()


def test_the_user_database_role_may_not_create_databases(user_database):
    """The fixture's premise: a benchmark falling back to CREATE DATABASE would fail with this role."""
    with psycopg.connect(user_database, autocommit=True) as connection, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        connection.execute('CREATE DATABASE "ccxw_bench_never"')


@pytest.mark.timeout(600)
def test_benchmark_in_schemas_of_a_named_database(user_database, tmp_path):
    results = tmp_path / "results.json"
    result = run_benchmark("--postgres", user_database, "--schema-only", "--quick", "--messages", "300",
                           "--workers", "2", "--json", str(results))
    assert result.returncode == 0, result.stderr[-4000:]

    report = json.loads(results.read_text())
    assert "a schema of its own per run" in report["postgres"]["where"]
    writers = [run for run in report["runs"] if run["kind"] == "writer"]
    assert [(run["streams"], run["rows"]) for run in writers] == [(2, 300)]
    assert [run["rows"] for run in report["runs"] if run["kind"] == "baseline"] == [300]
    assert report["latency"]["messages"] > 0 and report["latency"]["exit_status"] == 0
    assert [run["messages"] for run in report["scaling"]] == [1000, 3000, 3000]
    with psycopg.connect(user_database) as connection:
        assert connection.execute("SELECT cluster FROM public.new_reports").fetchall() == [("the-service-row",)]
        schemas = [row[0] for row in connection.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'")]
        assert schemas == ["public"], "the benchmark's schemas were not dropped"
        tables = [row[0] for row in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert tables == ["new_reports"], "the benchmark created tables outside its own schemas"


def test_schema_only_needs_a_named_database():
    result = run_benchmark("--schema-only")
    assert result.returncode == 2
    assert "--schema-only needs --postgres" in result.stderr
