"""Payload tracker: status messages for messages that carry a RequestId (SPEC section 7).

Produced asynchronously (no per-message wait) and flushed once per batch; a
tracker failure never holds up storage, it is only logged.
"""

from __future__ import annotations

import datetime
import logging

import orjson
from confluent_kafka import Producer

log = logging.getLogger(__name__)

RECEIVED, PROCESSED, SUCCESS, ERROR = "received", "processed", "success", "error"


def status_message(service: str, request_id: str, status: str, when: datetime.datetime) -> bytes:
    return orjson.dumps(
        {"service": service, "request_id": request_id, "status": status, "date": when.isoformat(timespec="microseconds")}
    )


class PayloadTracker:
    def __init__(self, producer: Producer, topic: str, service_name: str) -> None:
        self._producer = producer
        self._topic = topic
        self._service = service_name
        self._failures = 0

    def _delivered(self, error, message) -> None:
        if error is not None:
            self._failures += 1

    def send(self, request_id: str, statuses: tuple[str, ...]) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        for status in statuses:
            value = status_message(self._service, request_id, status, now)
            try:
                self._producer.produce(self._topic, value=value, key=request_id.encode(), on_delivery=self._delivered)
            except BufferError:
                self._producer.poll(0.1)
                self._failures += 1
            except Exception as error:  # noqa: BLE001 - e.g. NUL in the key; never stops storage
                log.debug("tracker status not sent: %s", error)
                self._failures += 1

    def flush(self, timeout: float = 5.0) -> None:
        self._producer.flush(timeout)
        if self._failures:
            log.warning("payload tracker: %d status messages not delivered to %s", self._failures, self._topic)
            self._failures = 0
