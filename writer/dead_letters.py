"""Dead-letter topic: rejected messages, unchanged, with headers telling why and where from.

Contract: ``flush`` returns only when every dead letter sent since the last
flush is acknowledged by the broker, and raises ``DeadLetterError`` otherwise
(as ``send`` does when the producer refuses a dead letter at once); the worker
commits the source offsets only after a successful flush. Headers the client
cannot decode are left out of the dead letter, which says so.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from writer.message import Rejection

REASON_HEADER = "ccx-rejection-reason"
DETAIL_HEADER = "ccx-rejection-detail"
SOURCE_TOPIC_HEADER = "ccx-source-topic"
SOURCE_PARTITION_HEADER = "ccx-source-partition"
SOURCE_OFFSET_HEADER = "ccx-source-offset"
VALUE_DROPPED_HEADER = "ccx-dead-letter-value-dropped"
HEADERS_DROPPED_HEADER = "ccx-dead-letter-headers-dropped"
# The wait for acknowledgements is one producer flush per slice, so a shorter bound set meanwhile (a stop) holds.
_FLUSH_SLICE_S = 0.5


class DeadLetterError(Exception):
    pass


def dead_letter_headers(rejection: Rejection, topic: str, partition: int, offset: int) -> list:
    """Ours, sent after the original headers (Kafka headers are a list; repeats are allowed)."""
    return [
        (REASON_HEADER, rejection.reason.encode()),
        (DETAIL_HEADER, rejection.detail.encode("utf-8", "replace")[:1000]),
        (SOURCE_TOPIC_HEADER, topic.encode()),
        (SOURCE_PARTITION_HEADER, str(partition).encode()),
        (SOURCE_OFFSET_HEADER, str(offset).encode()),
    ]


def original_headers(message) -> tuple[list, list]:
    """The message's headers and ours to add: when the client cannot decode them, none and one saying why.

    confluent-kafka decodes every header name as UTF-8 and then fails for the whole list (a ``SystemError`` from
    the ``UnicodeDecodeError``), while other producers may name a header with any bytes. Call it once per message:
    after that failure the client caches a list with a NULL name, which a second ``headers()`` returns and which
    crashes the process (SIGSEGV) when read."""
    try:
        return list(message.headers() or []), []
    except (SystemError, UnicodeDecodeError) as error:
        cause = error if isinstance(error, UnicodeDecodeError) else error.__cause__ or error.__context__
        if not isinstance(cause, UnicodeDecodeError):
            raise
        return [], [(HEADERS_DROPPED_HEADER, "the original headers are left out: a header name is not valid "
                     f"UTF-8 ({cause}); read them at the source topic/partition/offset".encode())]


class DeadLetters:
    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self.topic = topic
        self._pending = 0
        self._failures: list[str] = []

    def _delivered(self, error, message, own) -> None:
        # ``own``: our headers as sent (a delivery report carries no headers: message.headers() is None there).
        if error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE and message.value() is not None:
            self._produce(None, message.key(), [], _value_dropped(own, len(message.value())))
            return  # still pending: the slim copy is on its way
        self._pending -= 1
        if error is not None:
            self._failures.append(str(error))

    def send(self, message, rejection: Rejection) -> None:
        """Queue the dead letter of ``message``; ``DeadLetterError`` if the producer refuses it at once."""
        originals, notes = original_headers(message)
        own = dead_letter_headers(rejection, message.topic(), message.partition(), message.offset()) + notes
        self._pending += 1
        self._produce(message.value(), message.key(), originals, own)

    def _produce(self, value, key, originals: list, own: list) -> None:
        while True:
            try:
                self._producer.produce(
                    self.topic, value=value, key=key, headers=originals + own,
                    on_delivery=functools.partial(self._delivered, own=own),
                )
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.1)
            except KafkaException as error:
                # Too large for the producer (or, in _delivered, the broker): a dead letter without the value
                # (it stays readable at its source topic/partition/offset) instead of a worker crash loop.
                if value is None or error.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                    self._pending -= 1
                    # A producer error (exit status 3), not the consumer's: e.g. an unknown dead-letter topic.
                    raise DeadLetterError(f"dead-letter topic {self.topic}: {error}") from error
                value, originals, own = None, [], _value_dropped(own, len(value))

    def flush(self, timeout: float = 30.0, time_left: Callable[[float], float] | None = None) -> int:
        """Wait for all acknowledgements, at most ``timeout`` seconds; returns how many were delivered.

        ``time_left(seconds)``: of those seconds, how many may still be spent (asked again between slices of
        ``_FLUSH_SLICE_S``: a stop requested during the wait shortens it)."""
        sent = self._pending
        until = time.monotonic() + timeout
        while True:
            left = until - time.monotonic()
            if time_left is not None:
                left = time_left(left)
            self._producer.flush(max(0.0, min(left, _FLUSH_SLICE_S)))
            if not self._pending or left <= _FLUSH_SLICE_S:
                break
        failures, self._failures = self._failures, []
        if self._pending or failures:
            pending, self._pending = self._pending, 0
            raise DeadLetterError(
                f"dead-letter topic {self.topic}: {len(failures)} failed, {pending} unacknowledged"
                + (f" ({failures[0]})" if failures else "")
            )
        return sent


def _value_dropped(own: list, size: int) -> list:
    """Our headers only (the original ones may be what is too large), saying why the value is missing."""
    return own + [
        (VALUE_DROPPED_HEADER, f"value of {size} bytes (and the original headers) too large for the dead-letter "
                               "topic; read it at the source topic/partition/offset".encode()),
    ]
