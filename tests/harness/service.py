"""The service in tests: the real console script as a subprocess, its environment, what it serves and logs.

The service runs in a session of its own (so a test can signal the supervisor alone or its whole process
group); its output goes to files, never pipes, so that thousands of log lines never block it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import psutil

from tests.harness.kafka import committed_offsets, committed_to_end, end_offsets
from writer.testing.environment import without_writer_settings

PREFIX = "CCX_NOTIFICATION_WRITER__"
T = TypeVar("T")


def console_script() -> str:
    """The ccx-notification-writer script of this virtual environment (else the one on PATH)."""
    candidate = Path(sys.executable).parent / "ccx-notification-writer"
    found = str(candidate) if candidate.exists() else shutil.which("ccx-notification-writer")
    assert found, "the console script is not installed: pip install -e ."
    return found


def run_cli(*args: str, env: Mapping[str, str] | None = None, cwd: str | Path, timeout: float = 120,
            ) -> subprocess.CompletedProcess[str]:
    """One run of the console script: this environment without the service's settings, plus ``env``."""
    return subprocess.run([console_script(), *args], env={**without_writer_settings(), **(env or {})},
                          cwd=str(cwd), capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_env(database_env: Mapping[str, str], bootstrap: str, topic: str, group: str | None = None,
                **settings: object) -> dict[str, str]:
    """The whole environment of the console script: this process's without the service's settings, the
    database, the broker, a consumer group (of its own unless given), a free metrics port, and settings
    small enough for tests; ``settings``: SECTION__KEY=value, case-insensitive, override all of it."""
    env = without_writer_settings()
    env.update(database_env)
    env.update({
        PREFIX + "BROKER__ADDRESSES": bootstrap,
        PREFIX + "BROKER__TOPIC": topic,
        PREFIX + "BROKER__GROUP": group or f"group-{uuid.uuid4().hex[:10]}",
        # A SIGKILLed consumer keeps its partitions until its session times out, and librdkafka's mock
        # coordinator sometimes leaves a member without partitions for the session - 1 s (it refuses a
        # SyncGroup that comes after the leader's; bench/README.md): a short session bounds either.
        PREFIX + "BROKER__SESSION_TIMEOUT_MS": "6000",
        PREFIX + "PROCESSING__WORKERS": "2",
        PREFIX + "PROCESSING__BATCH_SIZE": "200",
        PREFIX + "PROCESSING__BATCH_TIMEOUT_MS": "200",
        PREFIX + "PROCESSING__SHUTDOWN_TIMEOUT_S": "10",
        PREFIX + "METRICS__ADDRESS": f"127.0.0.1:{free_port()}",
    })
    env.update({PREFIX + key.upper(): str(value) for key, value in settings.items()})
    return env


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {'name' or 'name{labels}': value}."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            if match:
                values[match.group(1)] = float(match.group(2))
    return values


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.2, message: str = "condition") -> T:
    """The first true value of ``predicate``, called every ``interval`` s; an assertion error after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {message}"
        time.sleep(interval)


class Service:
    """The console script (supervisor + workers) as a subprocess in its own session, run in ``workdir``
    (its stdout and stderr are <name>.stdout and <name>.stderr there)."""

    def __init__(self, env: dict[str, str], *args: str, workdir: Path, name: str = "service") -> None:
        self.env = env
        self.args = args
        workdir.mkdir(parents=True, exist_ok=True)
        stem, number = name, 1
        while (workdir / f"{stem}.stderr").exists():  # several services in one directory keep their own logs
            number += 1
            stem = f"{name}-{number}"
        self.stdout_path = workdir / f"{stem}.stdout"
        self.stderr_path = workdir / f"{stem}.stderr"
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

    def wait_committed(self, timeout: float = 180) -> dict[int, int]:
        """Until its consumer group's committed offsets reach the end of its topic; returns them. An assertion
        error (with its stderr) at once if the service exits first."""
        bootstrap, topic, group = (self.env[PREFIX + "BROKER__" + key] for key in ("ADDRESSES", "TOPIC", "GROUP"))
        deadline = time.monotonic() + timeout
        while not committed_to_end(bootstrap, topic, group):
            assert self.process.poll() is None, (
                f"the service exited with {self.process.returncode}: {self.stderr()[-3000:]}")
            assert time.monotonic() < deadline, f"offsets not committed to the end of {topic} within {timeout} s"
            time.sleep(0.5)
        return committed_offsets(bootstrap, topic, group, end_offsets(bootstrap, topic))

    def signal(self, sig: int) -> None:
        os.kill(self.process.pid, sig)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        """The exit status; subprocess.TimeoutExpired if it runs for longer than ``timeout``."""
        try:
            return self.process.wait(timeout)
        finally:
            if not self._stdout.closed:
                self._stdout.flush()
                self._stderr.flush()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit status; the whole group is killed if it takes longer than ``timeout``."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            return self.wait(10)

    def close(self) -> None:
        """Make sure nothing of this service is left running (may be called more than once)."""
        if self.process.poll() is None:
            self.kill_group()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        # Workers are in the same process group even if orphaned.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._stdout.close()
        self._stderr.close()

    # -- output
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

    def logged(self, text: str) -> list[dict]:
        """The log records whose message contains ``text``."""
        return [r for r in self.log_records() if text in r.get("message", "")]

    def wait_logged(self, text: str, count: int = 1, timeout: float = 60) -> list[dict]:
        return wait_until(lambda: len(found := self.logged(text)) >= count and found, timeout,
                          message=f"{count} log lines with {text!r}")
