"""SIGTERM in the middle of a benchmark run: the writer it started and its schemas go with it."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from bench import procfs
from writer.testing.postgres import create_database, drop_database, find_or_start_postgres

ROOT = Path(__file__).resolve().parent.parent


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.fixture
def bench_database(tmp_path):
    """A database of the test's own, so the schemas in it are the benchmark's and nobody else's."""
    server, embedded = find_or_start_postgres(str(tmp_path))
    name = create_database(server.conninfo(), "ccxw_benchsig_")
    yield server.conninfo(name)
    drop_database(server.conninfo(), name)
    if embedded is not None:
        embedded.cleanup()


@pytest.mark.timeout(300)
def test_sigterm_stops_the_writer_and_drops_the_schemas(bench_database):
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.e2e", "--postgres", bench_database, "--schema-only", "--messages", "20000",
         "--workers", "2", "--skip", "baseline,ceiling"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    try:
        # Wait for the writer's workers: the writer runs in a session of its own, under the benchmark.
        writer_pids: list[int] = []
        deadline = time.time() + 240
        while time.time() < deadline and process.poll() is None:
            below = procfs.descendants(process.pid)
            writers = [pid for pid in below if "--replay" in cmdline(pid)]
            if writers and procfs.descendants(writers[0]):
                writer_pids = [writers[0], *procfs.descendants(writers[0])]
                break
            time.sleep(0.05)
        assert writer_pids, "no writer with workers seen:\n" + "".join(lines[-20:])
        with psycopg.connect(bench_database) as connection:
            schemas = connection.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ccxw_bench_%'").fetchone()[0]
        assert schemas == 1  # the writer's run, mid-way

        process.send_signal(signal.SIGTERM)
        assert process.wait(120) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(10)

    deadline = time.time() + 5  # orphans of a killed group are reaped by init, not instantly
    while time.time() < deadline and any(alive(pid) for pid in writer_pids):
        time.sleep(0.1)
    assert [pid for pid in writer_pids if alive(pid)] == [], "writer processes survived the benchmark's SIGTERM"
    with psycopg.connect(bench_database) as connection:
        left = connection.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ccxw_bench_%'").fetchall()
    assert left == [], "the benchmark's schemas were not dropped"
