"""Builds a worker's stages and collaborators from the configuration: the one place the worker reads it."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer

from writer.config import Config
from writer.database import conninfo
from writer.dead_letters import DeadLetters
from writer.kafka_options import consumer_options, producer_options
from writer.logs import LIBRDKAFKA_LOGGER
from writer.metrics import Metrics
from writer.partitions import PartitionBook
from writer.replay_worker import ReplayScope
from writer.stages.broker_events import BrokerEvents
from writer.stages.commit import CommitAnswers, OffsetCommitter
from writer.stages.poll import Poller
from writer.stages.stop import StopRequest
from writer.stages.write import RetryingWrite
from writer.status import WorkerStatus
from writer.storage import BatchWriter
from writer.tracker import PayloadTracker, tracker_producer_options
from writer.worker import Worker

log = logging.getLogger("writer.worker")


def build_worker(config: Config, heartbeat: WorkerStatus, group_id: str | None = None,
                 replay: ReplayScope | None = None, wrap_consumer: Callable[[Any], Any] | None = None) -> Worker:
    """``wrap_consumer``: tests wrap the real consumer (e.g. to make its calls fail)."""
    broker, processing, storage, tracking = config.broker, config.processing, config.storage, config.tracker
    namespace = config.metrics.namespace
    metrics = Metrics(namespace)
    book = PartitionBook()
    stop = StopRequest(processing.shutdown_timeout_s)
    answers = CommitAnswers()
    events = BrokerEvents(heartbeat, metrics, book)

    if replay is not None and replay.plan.private_group:
        group_id = replay.plan.private_group  # self-assigned: never the live group, even by mistake
    options = consumer_options(config, group_id)
    options.update({"error_cb": events.on_error, "stats_cb": events.on_stats, "on_commit": answers.on_commit,
                    "logger": logging.getLogger(LIBRDKAFKA_LOGGER)})
    if replay is not None:
        options["enable.partition.eof"] = True  # a replay's partition may end on offsets no message fills
    consumer = Consumer(options)
    if wrap_consumer is not None:
        consumer = wrap_consumer(consumer)

    # Two producers: dead letters are guaranteed (flushed before the commit), tracker updates are
    # best effort; sharing one made a tracker outage cost every batch the dead letters' flush.
    # A dry run writes nothing anywhere: no rows, no dead letters, no tracker updates.
    dry_run = replay is not None and replay.plan.dry_run
    dead_letter_producer = None
    dead_letters = None
    if broker.dead_letter_topic and not dry_run:
        dead_letter_producer = Producer({**producer_options(config), "error_cb": events.on_error,
                                         "logger": logging.getLogger(LIBRDKAFKA_LOGGER)})
        dead_letters = DeadLetters(dead_letter_producer, broker.dead_letter_topic)
    tracker = None
    if tracking.topic and not dry_run:
        tracker_producer = Producer({
            **tracker_producer_options(producer_options(config), tracking.auto_create_topic),
            "error_cb": lambda error: log.warning("Kafka (payload tracker): %s", error.str()),
            "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
        })
        tracker = PayloadTracker(tracker_producer, tracking.topic, tracking.service_name,
                                 metrics.tracker_dropped.inc)

    writer: BatchWriter
    if dry_run:
        from writer.dry_run import DryRunWriter

        writer = DryRunWriter(conninfo(config), namespace, storage.write_timeout_s)
    else:
        writer = BatchWriter(conninfo(config), storage.log_sql_queries, storage.write_timeout_s)
    writes = RetryingWrite(writer, storage.retry_max_seconds, is_stopping=lambda: stop.requested, sleep=stop.sleep,
                           on_retry=metrics.db_retries.inc, waiting_for_database=heartbeat.waiting_for_database)

    batch_size = processing.batch_size
    poller = Poller(consumer, heartbeat.polled, resumable=replay.unfinished if replay is not None else _all,
                    max_batch_bytes=processing.max_batch_bytes)
    committer = OffsetCommitter(consumer, answers, book, poller, stop, metrics, batch_size, heartbeat.waiting_for_kafka)
    return Worker(
        consumer=consumer, poller=poller, committer=committer, book=book, writes=writes, dead_letters=dead_letters,
        dead_letter_producer=dead_letter_producer, tracker=tracker, metrics=metrics, heartbeat=heartbeat, stop=stop,
        topic=broker.topic, batch_size=batch_size, batch_timeout_s=processing.batch_timeout_ms / 1000,
        # range and roundrobin revoke everything at each rebalance and take assign(); cooperative-sticky takes
        # incremental_assign(). (This client version has no rebalance_protocol(): the configuration says.)
        eager_rebalancing=not broker.partition_assignment_strategy.startswith("cooperative"),
        replay=replay, parent_pid=os.getppid(),
    )


def _all(partitions: list[Any]) -> list[Any]:
    return partitions
