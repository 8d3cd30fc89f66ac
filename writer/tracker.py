"""Payload tracker: status messages for messages that carry a RequestId (SPEC section 7).

Statuses are best effort and never hold up storage. The tracker has a
producer of its own (the dead-letter topic's producer is flushed before
every commit; sharing it made a tracker outage cost every batch a 5 s
flush). The batch path only hands statuses to that producer's local queue
and serves its callbacks with ``poll(0)``: it never waits on the tracker.
The queue holds at most ``QUEUE_MESSAGES`` statuses and a status not
delivered within ``DELIVERY_TIMEOUT_MS`` is given up; both are dropped and
counted (``tracker_statuses_dropped_total``), with a warning at most every
``WARNING_INTERVAL_S``. On stop the producer gets at most ``CLOSE_FLUSH_S``.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable

import orjson
from confluent_kafka import Producer

log = logging.getLogger(__name__)

RECEIVED, PROCESSED, SUCCESS, ERROR = "received", "processed", "success", "error"

QUEUE_MESSAGES = 20_000
DELIVERY_TIMEOUT_MS = 10_000
WARNING_INTERVAL_S = 30.0
CLOSE_FLUSH_S = 2.0


def status_message(service: str, request_id: str, status: str, when: datetime.datetime) -> bytes:
    date = when.isoformat(timespec="microseconds")
    return orjson.dumps({"service": service, "request_id": request_id, "status": status, "date": date})


def tracker_producer_options(base: dict, auto_create_topic: bool = True) -> dict:
    """The tracker's own producer: bounded queue, bounded delivery time."""
    return {
        **base,
        "queue.buffering.max.messages": QUEUE_MESSAGES,
        "message.timeout.ms": DELIVERY_TIMEOUT_MS,
        "allow.auto.create.topics": auto_create_topic,
    }


class PayloadTracker:
    def __init__(self, producer: Producer, topic: str, service_name: str,
                 on_dropped: Callable[[int], None] = lambda count: None) -> None:
        self._producer = producer
        self._topic = topic
        self._service = service_name
        self._on_dropped = on_dropped
        self._dropped_since_warning = 0
        self._last_warning = 0.0

    def _delivered(self, error, message) -> None:
        if error is not None:
            self._drop(1, error)

    def _drop(self, count: int, why) -> None:
        self._on_dropped(count)
        self._dropped_since_warning += count
        now = time.monotonic()
        if now - self._last_warning >= WARNING_INTERVAL_S:
            log.warning("payload tracker: %d status messages to %s dropped (%s)",
                        self._dropped_since_warning, self._topic, why)
            self._dropped_since_warning = 0
            self._last_warning = now

    def send(self, request_id: str, statuses: tuple[str, ...]) -> None:
        """Queue the statuses; never waits (a full queue drops them)."""
        now = datetime.datetime.now(datetime.UTC)
        for status in statuses:
            value = status_message(self._service, request_id, status, now)
            try:
                self._producer.produce(self._topic, value=value, key=request_id.encode(), on_delivery=self._delivered)
            except BufferError:
                self._drop(1, "local queue full")
            except Exception as error:  # noqa: BLE001 - e.g. NUL in the key; never stops storage
                self._drop(1, error)

    def serve(self) -> None:
        """Run delivery callbacks without waiting (once per batch)."""
        self._producer.poll(0)

    def close(self, timeout: float = CLOSE_FLUSH_S) -> None:
        left = self._producer.flush(max(0.0, timeout))
        if left:
            self._drop(left, "not delivered before the worker stopped")
