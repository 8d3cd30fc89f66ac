"""The multiprocess metric files: a dead worker's files are folded into an archive (their number does not grow
with restarts, totals never go backwards), and a SIGKILLed supervisor's directory is reclaimed by the next."""

from __future__ import annotations

import glob
import os
import signal
import uuid

from tests.harness.database import RowMonitor
from tests.harness.service import Service, service_env, wait_until
from writer.kafka_mock import produce
from writer.sample_messages import encoded

STORED = "ccx_notification_writer_stored_messages"
CONSUMED = "ccx_notification_writer_consumed_messages"


def metric_dirs(tmpdir) -> list[str]:
    return glob.glob(os.path.join(str(tmpdir), "ccx-writer-metrics-*"))


def test_dead_workers_files_are_archived(migrated_database, kafka_bootstrap, topic, tmp_path):
    produce(kafka_bootstrap, topic, [encoded(n) for n in range(20)])
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = service_env(migrated_database.env(), kafka_bootstrap, topic, f"files-{uuid.uuid4().hex[:8]}",
                      PROCESSING__WORKERS="1", PROCESSING__MAX_RESTARTS="10")
    env["TMPDIR"] = str(temporary)
    service = Service(env, workdir=tmp_path)
    monitor = RowMonitor(migrated_database)
    dead = []
    try:
        service.wait_http()
        monitor.wait_rows(20, timeout=90)
        wait_until(lambda: service.metrics().get(STORED) == 20, 30, message="20 stored in /metrics")
        for _ in range(3):
            worker = service.wait_workers(1, timeout=60)[0]
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            dead.append(worker.pid)
            wait_until(lambda: [w for w in service.workers() if w.pid not in dead], 60, message="a restart")
        wait_until(lambda: service.metrics().get("ccx_notification_writer_worker_restarts_total") == 3, 30,
                   message="3 restarts counted")
        (directory,) = metric_dirs(temporary)
        files = sorted(os.listdir(directory))
        leftovers = [name for name in files for pid in dead if name.endswith(f"_{pid}.db")]
        assert leftovers == [], files
        assert "counter_archive.db" in files
        metrics = service.metrics()
        assert (metrics[STORED], metrics[CONSUMED]) == (20, 20)  # the dead workers' counts are kept
        assert metrics["ccx_notification_writer_workers_alive"] == 1
        assert service.stop() == 0
    finally:
        monitor.stop()
        service.close()
    assert metric_dirs(temporary) == []


def test_directory_of_a_killed_supervisor_is_removed_by_the_next(migrated_database, kafka_bootstrap, topic, tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = service_env(migrated_database.env(), kafka_bootstrap, topic, f"files-{uuid.uuid4().hex[:8]}",
                      PROCESSING__WORKERS="1")
    env["TMPDIR"] = str(temporary)
    first = Service(env, workdir=tmp_path, name="first")
    try:
        first.wait_http()
        first.wait_workers(1)
        first.kill_group()  # SIGKILL: no cleanup runs
        first.wait(10)
    finally:
        first.close()
    (abandoned,) = metric_dirs(temporary)
    second = Service(service_env(migrated_database.env(), kafka_bootstrap, topic, f"files-{uuid.uuid4().hex[:8]}",
                                 PROCESSING__WORKERS="1") | {"TMPDIR": str(temporary)}, workdir=tmp_path,
                     name="second")
    try:
        second.wait_http()
        remaining = metric_dirs(temporary)
        assert abandoned not in remaining and len(remaining) == 1, remaining
        assert second.stop() == 0
    finally:
        second.close()
    assert metric_dirs(temporary) == []


# ---- the directory's lock, without a service --------------------------------------------------------------


def test_a_directory_without_a_lock_file_is_never_removed_whatever_its_age(tmp_path):
    from writer.metrics_dir import remove_abandoned

    old = tmp_path / "ccx-writer-metrics-old-version"
    old.mkdir()
    (old / "counter_1.db").write_bytes(b"")
    two_hours_ago = os.stat(old).st_mtime - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert remove_abandoned(str(tmp_path)) == []
    assert old.is_dir()


def test_a_locked_directory_is_kept_and_an_unlocked_one_removed(tmp_path):
    from writer.metrics_dir import LOCK_FILE, STAGING_PREFIX, MetricsDirectory, remove_abandoned

    running = MetricsDirectory(str(tmp_path))
    try:
        assert os.path.basename(running.path).startswith("ccx-writer-metrics-")
        assert os.path.exists(os.path.join(running.path, LOCK_FILE))
        # What a killed supervisor leaves: a lock file nobody holds, under either name.
        killed = tmp_path / "ccx-writer-metrics-killed"
        staged = tmp_path / f"{STAGING_PREFIX}killed"
        for path in (killed, staged):
            path.mkdir()
            (path / LOCK_FILE).write_bytes(b"")
        assert sorted(remove_abandoned(str(tmp_path))) == sorted([str(killed), str(staged)])
        assert os.path.isdir(running.path)
        assert glob.glob(os.path.join(str(tmp_path), STAGING_PREFIX + "*")) == []
    finally:
        running.remove()
    assert not os.path.exists(running.path)
