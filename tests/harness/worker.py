"""One Worker in the test's own process, against the Kafka mock and a real PostgreSQL."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from tests.harness.database import Database
from writer import config as config_module
from writer.status import WIDTH, WorkerStatus
from writer.worker import Worker


def make_worker(database: Database, bootstrap: str, topic: str, **settings: object) -> tuple[Worker, list[float]]:
    """A worker of a group of its own; ``settings``: SECTION__KEY=value. Returns it and its status slots."""
    environ = database.env()
    environ |= {"CCX_NOTIFICATION_WRITER__BROKER__ADDRESSES": bootstrap,
                "CCX_NOTIFICATION_WRITER__BROKER__TOPIC": topic,
                "CCX_NOTIFICATION_WRITER__BROKER__GROUP": f"worker-test-{uuid.uuid4().hex[:8]}"}
    environ |= {f"CCX_NOTIFICATION_WRITER__{k.upper()}": str(v) for k, v in settings.items()}
    slots = [0.0] * WIDTH
    return Worker(config_module.load(environ), WorkerStatus(slots, 0)), slots


def rebalance_assign(worker: Worker, partitions: list[TopicPartition]) -> None:
    """What confluent-kafka does on a cooperative assignment: the callback, then incremental_assign unless
    the callback assigned them itself."""
    worker._on_assign(worker.consumer, partitions)
    held = {(tp.topic, tp.partition) for tp in worker.consumer.assignment()}
    if not all((tp.topic, tp.partition) in held for tp in partitions):
        worker.consumer.incremental_assign(partitions)


def fetched(consumer: Consumer, seconds: float) -> int:
    """How many messages ``consumer`` fetches in ``seconds``."""
    deadline, count = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        count += sum(1 for m in consumer.consume(100, 0.2) if m.error() is None)
    return count
