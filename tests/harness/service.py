"""Running the real service (console script) in tests, and reading what it did."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

from confluent_kafka import Consumer, TopicPartition

from tests.conftest import console_script


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_env(database, bootstrap: str, topic: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCX_NOTIFICATION_WRITER") and k != "ACG_CONFIG"}
    env.update(database.env())
    env.update({
        "CCX_NOTIFICATION_WRITER__BROKER__ADDRESSES": bootstrap,
        "CCX_NOTIFICATION_WRITER__BROKER__TOPIC": topic,
        "CCX_NOTIFICATION_WRITER__BROKER__GROUP": f"group-{uuid.uuid4().hex[:8]}",
        "CCX_NOTIFICATION_WRITER__PROCESSING__WORKERS": "2",
        "CCX_NOTIFICATION_WRITER__PROCESSING__BATCH_SIZE": "250",
        # The mock's group coordinator sometimes leaves a member unsynced until a
        # session times out; a short session keeps such a stall short.
        "CCX_NOTIFICATION_WRITER__BROKER__SESSION_TIMEOUT_MS": "6000",
        "CCX_NOTIFICATION_WRITER__METRICS__ADDRESS": f"127.0.0.1:{free_port()}",
    })
    env.update({f"CCX_NOTIFICATION_WRITER__{k.upper()}": v for k, v in overrides.items()})
    return env


def metrics_url(env: dict[str, str], path: str = "/metrics") -> str:
    return f"http://{env['CCX_NOTIFICATION_WRITER__METRICS__ADDRESS']}{path}"


class Service:
    """The supervisor and its workers, as a subprocess."""

    def __init__(self, env: dict[str, str], *args: str, cwd: str | None = None) -> None:
        self.env = env
        # Files, not pipes: an unread pipe fills up and blocks the service's logging.
        self._out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - read for as long as the object lives
        self._err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - likewise
        self.process = subprocess.Popen(
            [console_script(), *args], env=env, cwd=cwd, stdout=self._out, stderr=self._err, text=True,
            start_new_session=True,
        )

    @property
    def stdout(self) -> str:
        self._out.seek(0)
        return self._out.read()

    @property
    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read()

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(metrics_url(self.env, path), timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def wait_for_http(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.get("/metrics")
                return
            except OSError:
                assert self.process.poll() is None, self.finish()
                time.sleep(0.2)
        raise AssertionError("metrics endpoint did not come up")

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.finish(timeout)

    def finish(self, timeout: float = 120) -> int:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        return self.process.returncode

    def kill_all(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.finish(10)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "inspector"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, topic: str, group: str, partitions) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in committed}
    finally:
        consumer.close()


def wait_until_committed(bootstrap: str, topic: str, group: str, service: Service | None = None,
                         timeout: float = 180) -> dict[int, int]:
    """Wait until the group's committed offsets reach the end of every partition."""
    ends = end_offsets(bootstrap, topic)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        committed = committed_offsets(bootstrap, topic, group, ends)
        if all(committed[p] >= ends[p] for p in ends if ends[p] > 0):
            return committed
        if service is not None and service.process.poll() is not None:
            service.finish()
            raise AssertionError(f"service exited with {service.process.returncode}:\n{service.stderr[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"offsets not committed in time: committed {committed}, ends {ends}")


def read_topic(bootstrap: str, topic: str, timeout: float = 30) -> list:
    """Every message of a topic, read from the beginning of each partition without a group."""
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    messages = []
    remaining = sum(ends.values())
    deadline = time.monotonic() + timeout
    while remaining > 0 and time.monotonic() < deadline:
        batch = consumer.consume(1000, 0.5)
        for message in batch:
            if message.error() is None:
                messages.append(message)
                remaining -= 1
    consumer.close()
    return messages


def parse_metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values
