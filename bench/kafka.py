"""Which Kafka the benchmark uses and how: a broker the user names (with the service's own TLS/SASL
settings) or a librdkafka mock cluster it starts; topics of its own; producing a backlog.

Nothing here assumes which kind of broker answers. A topic is created with CreateTopics when the
broker names a controller that can serve it; when it names none, or answers that the request is
unsupported, the topic is created by the first produce (broker auto-creation) and its partition
count is read back from the metadata.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from bench import procfs
from writer.config import ENV_PREFIX as ENV
from writer.kafka_options import silent_logger

SECURITY_KEYS = ("security_protocol", "cert_path", "sasl_mechanism", "sasl_username", "sasl_password")


class BrokerError(Exception):
    """The broker cannot be used for the benchmark (one line for the operator)."""


@dataclass
class Broker:
    options: dict  # librdkafka options every benchmark client uses (bootstrap.servers, TLS, SASL)
    writer_env: dict[str, str]  # the same settings as the writer's environment variables
    label: str
    mock: object | None = None  # the MockKafka the benchmark started, stopped at the end
    created: list[str] = field(default_factory=list)  # topics to delete at the end

    @property
    def bootstrap(self) -> str:
        return str(self.options["bootstrap.servers"])

    @property
    def given(self) -> bool:
        """The user named this broker (so it stores realistic data and may be shared with others)."""
        return self.mock is None

    @classmethod
    def given_by_user(cls, bootstrap: str) -> Broker:
        """``bootstrap`` with the TLS/SASL settings of the service's configuration (file, environment, Clowder)."""
        from writer import config as writer_config
        from writer.kafka_options import common_options

        try:
            loaded = writer_config.load()
        except writer_config.ConfigError as error:
            raise BrokerError(f"the service's configuration: {error}") from None
        options = {**common_options(loaded), "bootstrap.servers": bootstrap, "client.id": "ccxw-bench"}
        env = {ENV + "BROKER__" + key.upper(): str(loaded["broker"][key])
               for key in SECURITY_KEYS if loaded["broker"][key]}
        return cls(options, env, f"{bootstrap} (given; security protocol {options.get('security.protocol', 'PLAINTEXT')})")

    @classmethod
    def own_mock(cls) -> Broker:
        from writer.kafka_mock import MockKafka

        mock = MockKafka()
        return cls({"bootstrap.servers": mock.bootstrap_servers, "client.id": "ccxw-bench"}, {},
                   "librdkafka mock cluster started by the benchmark", mock)

    def admin(self):
        from confluent_kafka.admin import AdminClient

        return AdminClient({**self.options, "logger": silent_logger()})

    def check(self) -> str:
        from confluent_kafka import KafkaException

        try:
            metadata = self.admin().list_topics(timeout=15)
        except KafkaException as error:
            raise BrokerError(f"no Kafka broker answered at {self.bootstrap}: {error.args[0].str()}") from None
        return f"{len(metadata.brokers)} broker(s)"

    def _controller_known(self) -> tuple[bool, str]:
        metadata = self.admin().list_topics(timeout=15)
        if metadata.controller_id in metadata.brokers:
            return True, ""
        return False, f"the broker names no usable controller (controller id {metadata.controller_id})"

    def create_topic(self, name: str, partitions: int, replication_factor: int = -1) -> str:
        """Create ``name``; returns how: "CreateTopics" or "auto-created on first produce (<why>)"."""
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic

        self.created.append(name)
        usable, why = self._controller_known()
        if usable:
            future = self.admin().create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)],
                operation_timeout=30, request_timeout=30,
            )[name]
            try:
                future.result()
                self._wait_for_topic(name)
                return "CreateTopics"
            except KafkaException as error:
                code = error.args[0].code()
                unsupported = (KafkaError.UNSUPPORTED_VERSION, KafkaError._UNSUPPORTED_FEATURE, KafkaError.INVALID_REQUEST)
                if code not in unsupported:
                    raise BrokerError(f"cannot create topic {name}: {error.args[0].str()}") from None
                why = f"CreateTopics refused as unsupported: {error.args[0].str()}"
        return f"auto-created on first produce: {why}"

    def _wait_for_topic(self, name: str, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            topic = self.admin().list_topics(name, timeout=10).topics.get(name)
            if topic is not None and topic.error is None and topic.partitions:
                return
            time.sleep(0.2)
        raise BrokerError(f"topic {name} was created but did not appear in the metadata within {timeout:.0f} s")

    def partitions(self, name: str) -> int:
        return len(self.admin().list_topics(name, timeout=10).topics[name].partitions)

    def delete_created_topics(self, log) -> None:
        if self.mock is not None or not self.created:
            return  # the mock, with every topic in it, goes away when it stops
        from confluent_kafka import KafkaException

        try:
            usable, why = self._controller_known()
            if not usable:
                log(f"topics {', '.join(self.created)} not deleted ({why}); delete them by hand")
                return
            for name, future in self.admin().delete_topics(self.created, operation_timeout=30, request_timeout=30).items():
                try:
                    future.result()
                except KafkaException as error:
                    log(f"topic {name} not deleted: {error.args[0].str()}; delete it by hand")
        except KafkaException as error:  # cleanup must not hide what went wrong before it
            log(f"topics {', '.join(self.created)} not deleted: {error.args[0].str()}; delete them by hand")
        self.created.clear()

    def local_pid(self) -> int | None:
        """The broker process, when it runs on this host and /proc shows it (first bootstrap address)."""
        host, _, port = self.bootstrap.split(",")[0].strip().rpartition(":")
        if not port.isdigit() or not procfs.is_local_host(host.strip("[]")):
            return None
        return procfs.listening_pid(int(port))

    def stop(self) -> None:
        if self.mock is not None:
            self.mock.stop()


class Progress:
    """One progress line on stderr: rewritten in place on a terminal, else one line every 10 s."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total = what, total
        self.tty = sys.stderr.isatty()
        self.started = self.shown = time.time()

    def update(self, done: int, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.shown < (1.0 if self.tty else 10.0):
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9)
        text = f"  {self.what}: {done:,} of {self.total:,} ({100 * done / max(self.total, 1):.0f}%, {rate:,.0f}/s)"
        print(("\r" + text) if self.tty else text, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.tty and self.shown != self.started:
            print(file=sys.stderr, flush=True)


@dataclass
class Produced:
    partitions: list[int]
    offsets: list[int]
    message_bytes: int  # keys and values, uncompressed, as librdkafka counts them
    wire_bytes: int  # bytes sent to the brokers (compressed batches + request overhead)
    compression: str

    @property
    def compression_ratio(self) -> float | None:
        return self.message_bytes / self.wire_bytes if self.wire_bytes else None


# Realistic producing: lz4 (the pipeline's choice for these reports) at librdkafka's default batch
# sizes. For the mock the benchmark starts: zstd and large batches, because the mock keeps only
# ~5 MiB per partition and the uniform messages compress far better that way.
REALISTIC = {"compression.type": "lz4"}
DENSE = {"compression.type": "zstd", "linger.ms": 100, "batch.size": 1_000_000, "batch.num.messages": 100_000,
         "queue.buffering.max.kbytes": 2_000_000}


def produce(broker: Broker, topic: str, values, keys, count: int, producer_settings: dict) -> Produced:
    """Produce ``count`` messages; each one's (partition, offset) from its acknowledgement."""
    from confluent_kafka import Producer

    stats: list[dict] = []
    producer = Producer({
        **broker.options, **producer_settings, "message.max.bytes": 20_000_000, "statistics.interval.ms": 1000,
        "stats_cb": lambda text: stats.append(json.loads(text)), "logger": silent_logger(),
    })
    partitions, offsets = [-1] * count, [-1] * count
    failures: list = []

    def acknowledged(index: int):
        def record(error, message) -> None:
            if error is not None:
                failures.append(error)
            else:
                partitions[index], offsets[index] = message.partition(), message.offset()
        return record

    progress = Progress(f"producing to {topic}", count)
    for index, (key, value) in enumerate(zip(keys, values)):
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=acknowledged(index))
                break
            except BufferError:
                producer.poll(0.1)
        if index % 1000 == 0:
            producer.poll(0)
            progress.update(index)
    remaining = producer.flush(300)
    progress.update(count, force=True)
    progress.finish()
    if remaining or failures:
        raise BrokerError(f"produce to {topic}: {remaining} unacknowledged, failures: {failures[:3]}")
    # One more statistics report after the last acknowledgement, for the byte counts.
    seen = len(stats)
    deadline = time.time() + 5
    while len(stats) == seen and time.time() < deadline:
        producer.poll(0.2)
    message_bytes = wire_bytes = 0
    if stats:
        last = stats[-1]
        message_bytes = sum(p["txbytes"] for p in last["topics"].get(topic, {}).get("partitions", {}).values()
                            if p["partition"] >= 0)
        wire_bytes = sum(b["txbytes"] for b in last["brokers"].values())
    return Produced(partitions, offsets, message_bytes, wire_bytes, producer_settings.get("compression.type", "none"))


def check_retained(broker: Broker, topic: str, produced: Produced) -> None:
    """Every produced message is still on the broker (retention, or the mock's ~5 MiB per partition)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**broker.options, "group.id": "ccxw-bench-watermarks", "logger": silent_logger()})
    try:
        counts = Counter(produced.partitions)
        for partition in sorted(counts):
            mine = [o for p, o in zip(produced.partitions, produced.offsets) if p == partition]
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
            if low > min(mine) or high < max(mine) + 1:
                raise BrokerError(
                    f"the broker did not keep the backlog: {topic}[{partition}] holds offsets {low}..{high - 1}, "
                    f"produced {min(mine)}..{max(mine)} (retention too short? librdkafka's mock keeps only "
                    "~5 MiB per partition: use fewer or smaller messages there)"
                )
    finally:
        consumer.close()


class CommitWatcher:
    """How many messages of a topic a consumer group has committed, for the draining progress line."""

    def __init__(self, broker: Broker, topic: str, group: str, partitions: list[int]) -> None:
        from confluent_kafka import Consumer, TopicPartition

        # A consumer that never subscribes never joins the group: it only reads the group's offsets.
        self._consumer = Consumer({**broker.options, "group.id": group, "logger": silent_logger()})
        self._partitions = [TopicPartition(topic, p) for p in partitions]

    def committed(self) -> int:
        try:
            return sum(max(tp.offset, 0) for tp in self._consumer.committed(self._partitions, timeout=5))
        except Exception:  # noqa: BLE001 - progress only; the run itself reports real failures
            return -1

    def close(self) -> None:
        self._consumer.close()
