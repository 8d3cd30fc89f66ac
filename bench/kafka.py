"""Which Kafka the benchmark uses and how: a broker the user names (with the service's own TLS/SASL
settings) or a librdkafka mock cluster it starts; topics of its own; producing a backlog.

Nothing here assumes which kind of broker answers a given address. A topic is created with
CreateTopics; when the broker's answer is a timeout (librdkafka's mock: "waiting for controller")
or that the request is unsupported, the first produce creates it (broker auto-creation), its
partition count is read back from the metadata, and later topics go the same way.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from bench import procfs
from bench.mock_host import MockHost
from writer.config import ENV_PREFIX as ENV
from writer.kafka_options import silent_logger
from writer.produce import produce_when_room

SECURITY_KEYS = ("security_protocol", "cert_path", "sasl_mechanism", "sasl_username", "sasl_password")


class BrokerError(Exception):
    """The broker cannot be used for the benchmark (one line for the operator)."""


# What a broker answers to CreateTopics when the benchmark should let the first produce create the
# topic instead. _TIMED_OUT is what librdkafka's mock cluster gives ("Failed while waiting for
# controller": it names controller 0 while its only broker is 1), seen in this repository's tests.
# The other three are what an old or restricted broker is expected to answer; no test has seen them.
FALLBACK_CODES = ("_TIMED_OUT", "UNSUPPORTED_VERSION", "_UNSUPPORTED_FEATURE", "INVALID_REQUEST")


# Processes that listen on a port for a broker elsewhere (a container, a pod, another host).
PORT_FORWARDERS = frozenset({"docker-proxy", "rootlessport", "rootlesskit", "slirp4netns", "pasta", "socat",
                             "kubectl", "oc", "ssh", "haproxy", "envoy", "nginx"})


@dataclass
class Broker:
    options: dict  # librdkafka options every benchmark client uses (bootstrap.servers, TLS, SASL)
    writer_env: dict[str, str]  # the same settings as the writer's environment variables
    label: str
    mock: MockHost | None = None  # the mock cluster the benchmark started, stopped at the end
    created: list[str] = field(default_factory=list)  # topics of the benchmark's that exist: to delete
    no_admin: str = ""  # why topics are left to auto-creation (what the broker answered), once known
    admin_timeout: float = 10.0  # seconds for CreateTopics/DeleteTopics, waiting for a controller included
    _admin: object | None = field(default=None, repr=False)

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
        env = {ENV + "BROKER__" + key.upper(): str(getattr(loaded.broker, key))
               for key in SECURITY_KEYS if getattr(loaded.broker, key)}
        protocol = options.get("security.protocol", "PLAINTEXT")
        return cls(options, env, f"{bootstrap} (given; security protocol {protocol})")

    @classmethod
    def own_mock(cls) -> Broker:
        from bench.mock_host import MockHost

        mock = MockHost()
        return cls({"bootstrap.servers": mock.bootstrap_servers, "client.id": "ccxw-bench"}, {},
                   "librdkafka mock cluster started by the benchmark", mock)

    def partitions_for(self, count: int, mix: str, wanted: int) -> int:
        """Partitions for a topic of ``count`` messages: ``wanted`` on a given broker; on the benchmark's own
        mock, as many more as the backlog needs to fit (the mock keeps the newest 5 MiB of each partition)."""
        if self.given:
            return wanted
        return max(wanted, -(-count // MOCK_MESSAGES_PER_PARTITION[mix]))

    def admin(self):
        """One AdminClient for every metadata and topic request of this run."""
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            self._admin = AdminClient({**self.options, "logger": silent_logger()})
        return self._admin

    def check(self) -> str:
        from confluent_kafka import KafkaException

        try:
            metadata = self.admin().list_topics(timeout=15)
        except KafkaException as error:
            raise BrokerError(f"no Kafka broker answered at {self.bootstrap}: {error.args[0].str()}") from None
        return f"{len(metadata.brokers)} broker(s)"

    def create_topic(self, name: str, partitions: int, replication_factor: int = -1) -> str:
        """Create ``name``; returns how: "CreateTopics" or "auto-created on first produce (<why>)".

        A topic CreateTopics made is recorded for deletion at once; one left to auto-creation only
        when a produce to it succeeded (``record_produced``)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import NewTopic

        if self.mock is not None:
            try:
                self.mock.create_topic(name, partitions)
            except RuntimeError as error:
                raise BrokerError(str(error)) from None
            self.created.append(name)
            return "created by the benchmark's mock host"
        if not self.no_admin:
            future = self.admin().create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)],
                operation_timeout=self.admin_timeout, request_timeout=self.admin_timeout,
            )[name]
            try:
                future.result()
            except KafkaException as error:
                answer = error.args[0]
                if answer.name() not in FALLBACK_CODES:
                    raise BrokerError(f"cannot create topic {name}: {answer.str()}") from None
                if not self._topic_exists(name):  # a timeout may still have created it
                    self.no_admin = f"CreateTopics answered {answer.name()}: {answer.str()}"
                    return f"auto-created on first produce ({self.no_admin})"
            self.created.append(name)
            self._wait_for_topic(name)
            return "CreateTopics"
        return f"auto-created on first produce ({self.no_admin})"

    def record_produced(self, name: str) -> None:
        """A produce to ``name`` succeeded: the topic exists (auto-created if need be) and is the benchmark's."""
        if name not in self.created:
            self.created.append(name)

    def _topic_exists(self, name: str) -> bool:
        # Metadata for all topics: asking for this one by name would let the broker auto-create it.
        topic = self.admin().list_topics(timeout=10).topics.get(name)
        return topic is not None and topic.error is None and bool(topic.partitions)

    def _wait_for_topic(self, name: str, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self._topic_exists(name):
                return
            time.sleep(0.2)
        raise BrokerError(f"topic {name} was created but did not appear in the metadata within {timeout:.0f} s")

    def partitions(self, name: str) -> int:
        return len(self.admin().list_topics(name, timeout=10).topics[name].partitions)

    def delete_topics(self, names: list[str], log) -> None:
        """Delete those of ``names`` the benchmark created; never raises (cleanup must not hide an earlier
        failure): what it cannot delete it names for deletion by hand."""
        from confluent_kafka import KafkaException

        mine = [name for name in names if name in self.created]
        if not mine:
            return
        for name in mine:
            self.created.remove(name)
        if self.mock is not None:
            return  # the mock, with every topic in it, goes away when it stops
        if self.no_admin:
            log(f"topic(s) {', '.join(mine)} not deleted ({self.no_admin}); delete them by hand")
            return
        try:
            futures = self.admin().delete_topics(mine, operation_timeout=self.admin_timeout,
                                                 request_timeout=self.admin_timeout)
            for name, future in futures.items():
                try:
                    future.result()
                except KafkaException as error:
                    log(f"topic {name} not deleted: {error.args[0].str()}; delete it by hand")
        except KafkaException as error:
            log(f"topic(s) {', '.join(mine)} not deleted: {error.args[0].str()}; delete them by hand")

    def delete_created_topics(self, log) -> None:
        self.delete_topics(list(self.created), log)

    def local_pid(self) -> int | None:
        """The broker process, when it runs on this host and /proc shows it (first bootstrap address);
        None when what listens there is a port forwarder (its CPU is not the broker's)."""
        host, _, port = self.bootstrap.split(",")[0].strip().rpartition(":")
        if not port.isdigit() or not procfs.is_local_host(host.strip("[]")):
            return None
        pid = procfs.listening_pid(int(port))
        if pid is not None and procfs.command_name(pid) in PORT_FORWARDERS:
            return None
        return pid

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


# Realistic producing, as the real producer does: no compression, librdkafka's default batching. The
# producer of ccx.ocp.results is ccx-data-pipeline's RuleProcessingPublisher (insights-ccx-messaging,
# publishers/kafka_publisher.py), a confluent-kafka Producer built from its deployment's kwargs, which
# set only the topic and bootstrap.servers (data-pipeline deploy/clowdapp.yaml; Clowder adds TLS/SASL):
# librdkafka's default compression.type "none". For the mock the benchmark starts: zstd in large
# batches, because the mock keeps only the newest 5 MiB of each partition (uncompressed, ~320 varied
# messages; bench/README.md).
REALISTIC = {"compression.type": "none"}
DENSE = {"compression.type": "zstd", "linger.ms": 100, "batch.size": 1_000_000, "batch.num.messages": 100_000,
         "queue.buffering.max.kbytes": 2_000_000}
# Messages a partition of the benchmark's mock holds, produced DENSE (5 MiB of zstd batches): measured
# ~6,000 varied middle-size messages and ~98,000 uniform ones; kept well below that for the batches' spread
# (at 3,500 a 300k backlog lost a partition's first messages: a partition held offsets 11..3381).
MOCK_MESSAGES_PER_PARTITION = {"varied": 2_500, "uniform": 50_000}


def produce(broker: Broker, topic: str, values, keys, count: int, producer_settings: dict) -> Produced:
    """Produce ``count`` messages; each one's (partition, offset) from its acknowledgement."""
    from confluent_kafka import Producer

    # librdkafka reports cumulative statistics every second: only the latest one is kept (and parsed).
    stats = {"reports": 0, "last": ""}

    def keep_latest(text: str) -> None:
        stats["reports"] += 1
        stats["last"] = text

    producer = Producer({
        **broker.options, **producer_settings, "message.max.bytes": 20_000_000, "statistics.interval.ms": 1000,
        "stats_cb": keep_latest, "logger": silent_logger(),
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
    for index, (key, value) in enumerate(zip(keys, values, strict=False)):
        produce_when_room(producer, topic, key=key, value=value, on_delivery=acknowledged(index))
        if index % 1000 == 0:
            producer.poll(0)
            progress.update(index)
    remaining = producer.flush(300)
    progress.update(count, force=True)
    progress.finish()
    if any(offset >= 0 for offset in offsets):
        broker.record_produced(topic)
    if remaining or failures:
        raise BrokerError(f"produce to {topic}: {remaining} unacknowledged, failures: {failures[:3]}")
    # One more statistics report after the last acknowledgement, for the byte counts.
    seen = stats["reports"]
    deadline = time.time() + 5
    while stats["reports"] == seen and time.time() < deadline:
        producer.poll(0.2)
    message_bytes = wire_bytes = 0
    if stats["last"]:
        last = json.loads(stats["last"])
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
            mine = [o for p, o in zip(produced.partitions, produced.offsets, strict=False) if p == partition]
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
