"""librdkafka client options from the [broker] configuration (addresses, TLS, SASL)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from writer.config import Config

# librdkafka consumer options (a JSON object) applied over the ones chosen below, to measure other
# settings side by side (``bench.e2e --consumer-option/--consumer-sweep``); not a configuration setting.
CONSUMER_OPTIONS_VARIABLE = "CCX_NOTIFICATION_WRITER_CONSUMER_OPTIONS"


def common_options(config: Config) -> dict[str, Any]:
    broker = config.broker
    options: dict[str, Any] = {
        "bootstrap.servers": ",".join(a.strip() for a in broker.addresses.split(",") if a.strip()),
        "client.id": "ccx-notification-writer",
    }
    protocol = broker.security_protocol
    if protocol:
        options["security.protocol"] = protocol
    if broker.cert_path:
        options["ssl.ca.location"] = broker.cert_path
    if protocol.startswith("SASL"):  # the SASL keys are read only then (the original's config.toml: "not-used")
        options["sasl.mechanisms"] = broker.sasl_mechanism or "PLAIN"
        options["sasl.username"] = broker.sasl_username
        options["sasl.password"] = broker.sasl_password
    if broker.disable_api_versions_request:
        options["api.version.request"] = False
    return options


def consumer_options(config: Config, group_id: str | None = None) -> dict[str, object]:
    broker = config.broker
    options = common_options(config)
    options.update(
        {
            "group.id": group_id or broker.group,
            # Offsets are committed by hand, after the database commit.
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": broker.auto_offset_reset,
            # cooperative-sticky moves only the partitions that change owner; "range" (eager) is the
            # assignor of the original's sarama consumer, needed to share its group while switching over.
            "partition.assignment.strategy": broker.partition_assignment_strategy,
            # 10 s by default, as the original (librdkafka's default is 45 s): a worker that died without leaving
            # keeps its partitions this long, and librdkafka's mock cluster can leave a joining worker without
            # any for session - 1 s (bench/README.md). No group.instance.id: a static member sends no LeaveGroup
            # when it stops, so each stop would leave its partitions unconsumed for the session.
            "session.timeout.ms": broker.session_timeout_ms,
            "max.poll.interval.ms": broker.max_poll_interval_ms,
            "statistics.interval.ms": 5000,
            # A broker answers a fetch as soon as data arrives; one that holds it for the whole wait
            # (librdkafka's mock) adds up to this much latency. 100 ms (default 500) halved p50/p99
            # produce->commit latency on the mock (bench/README.md). 50 ms, with batch_timeout_ms 50,
            # side by side at a quarter of the 2-worker rate: p99 379/386 -> 217/220 ms (one outlier run
            # 801), p50 ~220 -> 120-160 ms; on a broker it only doubles the idle fetches (20/s a broker).
            # 10 ms drained backlogs faster on the mock only; not taken: 10x the idle fetches on a broker.
            "fetch.wait.max.ms": 50,
            # Once the prefetch queue passes queued.max.messages.kbytes, librdkafka postpones the next
            # fetch of a partition by this much (default 1000 ms), although a worker drains the queue in
            # a fraction of that and then waits in consume(). 10 ms, measured side by side (40k varied
            # messages, best of 3): 1 worker 3,175 -> 7,184 msg/s, 2 workers 5,229 -> 10,621; each
            # worker's idle share 73 -> 40%, 64 -> 50% (bench/README.md, "Consumer settings").
            "fetch.queue.backoff.ms": 10,
            # The prefetch queue (decompressed messages; one queue per consumer): with the short backoff
            # it refills in time, so a small one costs no throughput (16 MiB vs 32 and 64 MiB: equal
            # within run-to-run noise in three sweeps) and bounds memory: worker peak RSS 112-148 MiB
            # vs 160-178 (32 MiB) and 174-269 (64 MiB, the default).
            "queued.max.messages.kbytes": 16384,
            # fetch.max.bytes (50 MiB) and max.partition.fetch.bytes (1 MiB) stay librdkafka's: 8 MiB
            # fetches were no faster (6,510 vs 6,494 msg/s) and used as much memory (222 vs 224 MiB).
        }
    )
    options.update(measured_overrides(os.environ))
    return options


def measured_overrides(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The librdkafka options a measurement sets through ``CONSUMER_OPTIONS_VARIABLE`` (none when unset)."""
    text = environ.get(CONSUMER_OPTIONS_VARIABLE, "")
    if not text:
        return {}
    overrides = json.loads(text)
    if not isinstance(overrides, dict):
        raise ValueError(f"{CONSUMER_OPTIONS_VARIABLE} must hold a JSON object of librdkafka options")
    return {str(key): str(value) for key, value in overrides.items()}


def producer_options(config: Config) -> dict[str, object]:
    options = common_options(config)
    # lz4 lets a large rejected message fit the dead-letter topic's limit, which
    # applies to the compressed batch; the client's own limit is raised to match.
    options.update({"linger.ms": 20, "acks": "all", "compression.type": "lz4", "message.max.bytes": 20_000_000})
    return options


def check_kafka(config: Config, timeout: float = 5.0) -> tuple[bool, str]:
    """Ask the brokers for metadata; (True, description) when one answered in time."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    options = common_options(config)
    options["logger"] = silent_logger()
    admin = AdminClient(options)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as error:
        return False, (f"no Kafka broker answered at {options['bootstrap.servers']} within {timeout:g} s "
                       f"({error.args[0].str()})")
    brokers = ", ".join(str(b) for b in metadata.brokers.values())
    topic = config.broker.topic
    known = "present" if topic in metadata.topics else "not present yet"
    return True, f"Kafka answered: brokers {brokers}; topic {topic} {known}"


def silent_logger() -> logging.Logger:
    """A logger for librdkafka clients whose own log lines would only be noise (checks, tests, benchmarks)."""
    from writer.logs import LIBRDKAFKA_LOGGER

    quiet = logging.getLogger(LIBRDKAFKA_LOGGER + ".silent")
    quiet.setLevel(logging.CRITICAL)
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    return quiet
