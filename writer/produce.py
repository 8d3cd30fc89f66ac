"""Producing one message through a confluent_kafka Producer whose local queue may be full."""

from __future__ import annotations

from typing import Any

# How long one wait for deliveries lasts while the local queue is full; short, so producing resumes
# as soon as the queue has room again.
QUEUE_FULL_POLL_S = 0.1


def produce_when_room(producer: Any, topic: str, **message: Any) -> None:
    """``producer.produce(topic, **message)``, serving delivery callbacks while the local queue is full
    (BufferError) until the message is queued."""
    while True:
        try:
            producer.produce(topic, **message)
            return
        except BufferError:
            producer.poll(QUEUE_FULL_POLL_S)
