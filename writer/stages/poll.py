"""Poll stage: batches of messages from the consumer, and the pauses that keep the group membership.

The consumer is used from one thread only (the worker's main thread): every
poll, pause, resume and commit happens there.

- ``gather`` returns up to ``batch_size`` messages holding at most
  ``max_batch_bytes`` of values (a batch closes at whichever bound comes
  first; a message larger than the byte bound is a batch of its own): first
  those polled earlier and carried over (``carry_over``), then fresh ones,
  waiting at most the batch timeout. Fresh messages beyond a bound are
  carried over to the next batch. Between short polls it calls ``between``
  (the worker finishes a batch whose write ended meanwhile).
- While a reason to pause holds (a write being retried, a late offset
  commit), every assigned partition is paused and ``poll`` only serves the
  group protocol and callbacks; a message it still returns is carried over
  and its partition paused again. librdkafka drops a pause whose request
  races the start of a new assignment's fetcher (the fetch start's version
  barrier overtakes the pause's, which is then discarded as outdated); the
  pause after such a message comes once the fetcher runs, so it holds, and
  discards what was fetched before it: at most one message per partition
  gets through a lost pause.
- ``drop`` forgets polled messages of revoked partitions not handed out yet
  (carried over, or in the batch being gathered): their next owner reads
  them again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import TopicPartition

from writer.partitions import Partition

Message = Any
# Of the partitions given, those to resume (a replay keeps its finished ones paused).
Resumable = Callable[[list[Any]], list[Any]]

# While a write is in flight, polls last at most this long, so a write that ended is finished promptly.
POLL_SLICE_S = 0.05


class Poller:
    def __init__(self, consumer: Any, polled: Callable[[], None], resumable: Resumable = lambda partitions: partitions,
                 clock: Callable[[], float] = time.monotonic, max_batch_bytes: int | None = None) -> None:
        self.consumer = consumer
        self._max_bytes = max_batch_bytes  # None: batches are bounded by their count only
        self._polled = polled  # heartbeat: the consumer was polled
        self._resumable = resumable
        self._clock = clock
        self.carry_over: list[Message] = []  # polled, not handled yet: the next batches take them first
        self._pause_reasons: set[str] = set()
        self._gathered: list[Message] = []  # the batch ``gather`` is filling
        self._gathered_bytes = 0

    def gather(self, batch_size: int, timeout: float, between: Callable[[], None] | None = None) -> list[Message]:
        """Up to ``batch_size`` messages, waiting at most ``timeout`` seconds; see the module docstring."""
        # An attribute, not a local: a revocation inside ``between`` (an offset commit's wait) drops from it too.
        self._gathered, self._gathered_bytes = [], 0
        full = self._take_carried(batch_size)
        deadline = self._clock() + timeout
        while not full:
            if between is not None:
                between()
                if self._take_carried(batch_size):
                    break
            left = deadline - self._clock()
            if left <= 0:
                break
            wait = min(left, POLL_SLICE_S) if between is not None else left
            # Fetched first, added after: a revocation inside consume() replaces ``_gathered`` (``drop``), and
            # ``self._gathered += consume()`` would extend the list read before the call, bringing the dropped back.
            fresh = self.consumer.consume(num_messages=batch_size - len(self._gathered), timeout=wait)
            self._polled()
            taken = self._fill(fresh, batch_size)
            if taken < len(fresh):
                self.carry_over[:0] = fresh[taken:]  # polled before anything carried over later
            full = len(self._gathered) >= batch_size or taken < len(fresh)
            if between is None:
                break
        messages, self._gathered, self._gathered_bytes = self._gathered, [], 0
        return messages

    def _take_carried(self, batch_size: int) -> bool:
        """Carried messages into the batch while both bounds allow; whether the batch is full."""
        taken = self._fill(self.carry_over, batch_size)
        full = len(self._gathered) >= batch_size or taken < len(self.carry_over)
        del self.carry_over[:taken]
        return full

    def _fill(self, messages: list[Message], batch_size: int) -> int:
        """Add ``messages`` in order to the batch while it holds fewer than ``batch_size`` and their values fit
        ``max_batch_bytes`` (the first message of a batch always fits); returns how many were added."""
        taken = 0
        for message in messages:
            if len(self._gathered) >= batch_size:
                break
            size = _size(message)
            if self._max_bytes is not None and self._gathered and self._gathered_bytes + size > self._max_bytes:
                break
            self._gathered.append(message)
            self._gathered_bytes += size
            taken += 1
        return taken

    def carries_a_batch(self, batch_size: int) -> bool:
        """Whether the carried messages fill a batch, by their count or by their bytes."""
        if len(self.carry_over) >= batch_size:
            return True
        if self._max_bytes is None:
            return False
        held = 0
        for message in self.carry_over:
            held += _size(message)
            if held >= self._max_bytes:
                return True
        return False

    def poll(self, seconds: float) -> None:
        """One poll (serves callbacks); a message it returns is carried over (while paused: see the module
        docstring)."""
        message = self.consumer.poll(max(0.0, seconds))
        self._polled()
        if message is not None:
            self.carry_over.append(message)
            if self._pause_reasons and message.error() is None:
                self.consumer.pause([TopicPartition(message.topic(), message.partition())])

    @property
    def paused(self) -> bool:
        return bool(self._pause_reasons)

    def pause(self, reason: str) -> None:
        if not self._pause_reasons:
            self.consumer.pause(self.consumer.assignment())
        self._pause_reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self._pause_reasons:
            return
        self._pause_reasons.discard(reason)
        if not self._pause_reasons:
            self.consumer.resume(self._resumable(self.consumer.assignment()))

    def drop(self, partitions: set[Partition]) -> None:
        """Forget the polled messages of ``partitions`` not handed out yet."""
        self.carry_over = [m for m in self.carry_over if Partition(m.topic(), m.partition()) not in partitions]
        self._gathered = [m for m in self._gathered if Partition(m.topic(), m.partition()) not in partitions]
        self._gathered_bytes = sum(_size(m) for m in self._gathered)


def _size(message: Message) -> int:
    """What a message holds in memory that grows with its content: its value (a report, up to megabytes)."""
    value = message.value()
    return len(value) if value is not None else 0
