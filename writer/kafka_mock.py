"""librdkafka's built-in mock Kafka cluster, hosted in a child process.

The mock speaks the real Kafka protocol over TCP, so the service, the tests,
the benchmarks and the quick start use it exactly like a broker: produce
auto-creates topics (4 partitions), consumer groups and offset commits work.
Hosting it in its own process lets tests make the broker unavailable
(``pause``: the process is stopped, connections hang) and available again
(``resume``).

    with MockKafka() as kafka:
        produce(kafka.bootstrap_servers, "topic", [b"..."])

As a command, for a broker in a process of its own (``--help``):

    python -m writer.kafka_mock [BROKERS]      # prints HOST:PORT, runs until SIGTERM / Ctrl-C
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterable

from writer.produce import produce_when_room


class MockKafka:
    def __init__(self, brokers: int = 1, startup_timeout: float = 20.0) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "writer.kafka_mock", str(brokers)],
            stdout=subprocess.PIPE, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert self._process.stdout is not None and self._process.stdin is not None  # both are PIPEs
        line = self._process.stdout.readline().strip()
        if not line:
            self._process.kill()
            raise RuntimeError("the Kafka mock cluster did not start")
        self.bootstrap_servers = line

    def pause(self) -> None:
        """Make the broker unresponsive (the process is stopped; TCP connections hang)."""
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self._process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._process.poll() is None:
            self.resume()
            if self._process.stdin is not None:  # always (a PIPE); the check is for the type checker
                self._process.stdin.close()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> MockKafka:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def produce(
    bootstrap_servers: str, topic: str, values: Iterable[bytes | None], keys: Iterable[bytes | None] | None = None,
    partition: int | None = None, headers=None, timestamps: Iterable[int] | None = None,
) -> list[tuple[int, int]]:
    """Produce messages (spread over partitions by key, or round robin without keys); ``timestamps``: each
    message's Kafka timestamp in milliseconds (default: the time of producing).

    Returns each message's (partition, offset), in the order given, from the
    broker's acknowledgements.
    """
    from confluent_kafka import Producer

    # zstd: the mock keeps only 5 MiB per partition; compressed, a backlog of
    # hundreds of thousands of similar reports fits (real clusters compress too).
    producer = Producer({
        "bootstrap.servers": bootstrap_servers, "compression.type": "zstd", "linger.ms": 100,
        "batch.size": 1_000_000, "batch.num.messages": 100_000, "queue.buffering.max.kbytes": 2_000_000,
        "message.max.bytes": 20_000_000,
    })
    failures = []
    positions: list[tuple[int, int]] = []

    def acknowledged(index: int):
        def record(error, message) -> None:
            if error is not None:
                failures.append(error)
            else:
                positions[index] = (message.partition(), message.offset())
        return record

    key_iter = iter(keys) if keys is not None else None
    timestamp_iter = iter(timestamps) if timestamps is not None else None
    for index, value in enumerate(values):
        positions.append((-1, -1))
        kwargs = {"value": value, "on_delivery": acknowledged(index)}
        if key_iter is not None:
            kwargs["key"] = next(key_iter)
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp_iter is not None:
            kwargs["timestamp"] = next(timestamp_iter)
        if headers is not None:
            kwargs["headers"] = headers
        produce_when_room(producer, topic, **kwargs)
        if index % 10000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failures:
        raise RuntimeError(f"produce to {topic}: {remaining} unacknowledged, failures: {failures[:3]}")
    return positions


def _host(brokers: int) -> None:
    from confluent_kafka import Producer

    from writer.kafka_options import silent_logger

    producer = Producer({"test.mock.num.brokers": brokers, "logger": silent_logger()})
    metadata = producer.list_topics(timeout=10)
    print(",".join(f"{b.host}:{b.port}" for b in metadata.brokers.values()), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
        sys.stdin.read()  # a parent's pipe (MockKafka): until it closes our stdin or dies
    else:
        while True:  # a terminal, /dev/null, a file: until SIGTERM or Ctrl-C
            signal.pause()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m writer.kafka_mock",
        description="Run librdkafka's mock Kafka cluster in this process and print its bootstrap address "
        "(HOST:PORT[,...]) as the first line on stdout. Runs until SIGTERM or Ctrl-C (or, when stdin is "
        "a pipe, until the pipe closes). Topics are created on first produce, 4 partitions each.",
    )
    parser.add_argument("brokers", nargs="?", type=int, default=1, help="number of brokers (default 1)")
    _host(parser.parse_args(argv).brokers)


if __name__ == "__main__":
    main()
