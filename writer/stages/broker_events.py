"""What the consumer's own callbacks tell about the broker: reachability (heartbeat) and lag (metrics)."""

from __future__ import annotations

import logging

import orjson
from confluent_kafka import KafkaError

from writer.metrics import Metrics
from writer.partitions import Partition, PartitionBook
from writer.status import WorkerStatus

log = logging.getLogger("writer.worker")


class BrokerEvents:
    def __init__(self, heartbeat: WorkerStatus, metrics: Metrics, book: PartitionBook) -> None:
        self._heartbeat = heartbeat
        self._metrics = metrics
        self._book = book

    def on_error(self, error: KafkaError) -> None:
        # One broker's transport error is no outage while others answer: librdkafka says when all are down.
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._heartbeat.broker_up(False)
        log.warning("Kafka: %s", error.str(), extra={"code": error.name()})

    def on_stats(self, text: str) -> None:
        stats = orjson.loads(text)
        up = any(b.get("state") == "UP" and b.get("nodeid", -1) >= 0 for b in stats.get("brokers", {}).values())
        self._heartbeat.broker_up(up)
        for topic, data in stats.get("topics", {}).items():
            for partition, numbers in data.get("partitions", {}).items():
                lag = numbers.get("consumer_lag", -1)
                if lag >= 0 and self._book.owns(Partition(topic, int(partition))):
                    self._metrics.consumer_lag.labels(topic, partition).set(lag)
