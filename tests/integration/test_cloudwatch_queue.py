"""The CloudWatch queue: bounded at MAX_QUEUED_LINES per process, lines beyond it dropped and counted,
and a logging call never waits for CloudWatch, also when the endpoint stops answering after start.

CloudWatch Logs is moto's server on loopback, reached through a proxy the test can make hang (accept
requests and never answer): an outage as a stalled endpoint looks to the sender."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
import weakref

import pytest

from tests.harness.cloudwatch import cloudwatch_settings
from writer import config as config_module
from writer.cloudwatch import MAX_QUEUED_LINES, build_handler


class HangingProxy:
    """Forwards TCP to ``upstream`` while up; while down, holds every request it receives unanswered."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.up = threading.Event()
        self.up.set()
        self.held = threading.Event()  # a request arrived while down
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        try:
            while data := client.recv(65536):
                if not self.up.is_set():
                    self.held.set()
                    self.up.wait()
                    return  # the held request is never answered: the connection closes after the outage
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.up.set()
        self.listener.close()


def all_messages(client, group: str, stream: str) -> list[str]:
    messages, token = [], None
    if not client.describe_log_streams(logGroupName=group, logStreamNamePrefix=stream)["logStreams"]:
        return messages  # not created yet
    while True:
        page = client.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True,
                                     **({"nextToken": token} if token else {}))
        messages += [event["message"] for event in page["events"]]
        if not page["events"] or page["nextForwardToken"] == token:
            return messages
        token = page["nextForwardToken"]


def wait_for(condition, timeout: float = 120):
    """condition()'s first truthy value, polled; None when it never came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    return None


@pytest.fixture
def proxy(cloudwatch_endpoint):
    hanging = HangingProxy(int(cloudwatch_endpoint.rsplit(":", 1)[1]))
    yield hanging
    hanging.close()


def test_an_outage_after_start_drops_and_counts_lines_beyond_the_bound_without_waiting(
        proxy, logs_client, monkeypatch):
    group = f"ccx-queue-{uuid.uuid4().hex[:8]}"
    logs_client.create_log_group(logGroupName=group)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Braces: watchtower keys its queue by the formatted name, which differs from the escaped one it keeps.
    config = config_module.load(cloudwatch_settings(group, "queue-{x}-$HOSTNAME"))
    stream = f"queue-{{x}}-{socket.gethostname()}"
    handler = build_handler(config)
    logger = logging.getLogger(f"test.cloudwatch.{group}")
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(handler)
    try:
        logger.info("before the outage")
        arrived_before = wait_for(lambda: [m for m in all_messages(logs_client, group, stream)
                                           if "before the outage" in m])
        assert arrived_before  # the stream did not exist: created at the first send

        proxy.up.clear()
        logger.info("first line of the outage")
        # The sender has taken that line and now waits for an answer that does not come; it takes
        # nothing more from the queue until the request fails (read timeout and retries, over a minute).
        assert proxy.held.wait(60), "the sender never sent during the outage"
        extra = 7
        logging_calls = threading.Thread(
            target=lambda: [logger.info("line %d", n) for n in range(MAX_QUEUED_LINES + extra)])
        logging_calls.start()
        # Every logging call returned while the endpoint was still held: none waited for CloudWatch.
        logging_calls.join(120)
        assert not logging_calls.is_alive() and not proxy.up.is_set()
        assert handler.dropped == extra
        assert handler.queues[stream].qsize() == MAX_QUEUED_LINES

        # At exit logging.shutdown() calls flush() then close(): flush() returns while the endpoint is
        # held, so the exit waits once (close, CLOSE_TIMEOUT_S), not twice.
        handler.FLUSH_TIMEOUT = 3600  # a flush that waited for the held sender would not return here
        flush = threading.Thread(target=handler.flush, daemon=True)
        flush.start()
        flush.join(120)
        assert not flush.is_alive() and not proxy.up.is_set()
        del handler.FLUSH_TIMEOUT  # close(): the class's bound again
        proxy.up.set()
        warnings = []

        class Recorder(logging.Handler):
            def emit(self, record):
                warnings.append((record.getMessage(), handler.shutting_down))

        recorder = Recorder()
        logging.getLogger("writer.cloudwatch").addHandler(recorder)
        try:
            logging.shutdown([weakref.ref(handler)])
        finally:
            logging.getLogger("writer.cloudwatch").removeHandler(recorder)
        assert handler.shutting_down
        # the count is logged while the handler still takes lines (before it closed)
        assert warnings == [(f"{extra} log lines not sent to CloudWatch (queue full while it did not answer)", False)]
    finally:
        proxy.up.set()
        handler.close()
        logger.removeHandler(handler)
    # After the outage the queued lines arrive; exactly the ones beyond the bound are missing.
    expected = [f"line {n}" for n in range(MAX_QUEUED_LINES)]

    def arrived_lines():
        arrived = [json.loads(m)["message"] for m in all_messages(logs_client, group, stream)]
        return arrived if [m for m in arrived if m.startswith("line ")] == expected else None

    arrived = wait_for(arrived_lines)
    assert arrived is not None, "the queued lines did not arrive after the outage"
    assert "first line of the outage" in arrived
