"""Poll stage: batches of messages from the consumer, and the pauses that keep the group membership.

The consumer is used from one thread only (the worker's main thread): every
poll, pause, resume and commit happens there.

- ``gather`` returns up to ``batch_size`` messages: first those polled
  earlier and carried over (``carry_over``), then fresh ones, waiting at
  most the batch timeout. Between short polls it calls ``between`` (the
  worker finishes a batch whose write ended meanwhile).
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
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.consumer = consumer
        self._polled = polled  # heartbeat: the consumer was polled
        self._resumable = resumable
        self._clock = clock
        self.carry_over: list[Message] = []  # polled, not handled yet: the next batches take them first
        self._pause_reasons: set[str] = set()
        self._gathered: list[Message] = []  # the batch ``gather`` is filling

    def gather(self, batch_size: int, timeout: float, between: Callable[[], None] | None = None) -> list[Message]:
        """Up to ``batch_size`` messages, waiting at most ``timeout`` seconds; see the module docstring."""
        # An attribute, not a local: a revocation inside ``between`` (an offset commit's wait) drops from it too.
        self._gathered = self._take_carried(batch_size)
        deadline = self._clock() + timeout
        while len(self._gathered) < batch_size:
            if between is not None:
                between()
                carried = self._take_carried(batch_size - len(self._gathered))
                self._gathered.extend(carried)
                if len(self._gathered) >= batch_size:
                    break
            left = deadline - self._clock()
            if left <= 0:
                break
            wait = min(left, POLL_SLICE_S) if between is not None else left
            # Fetched first, added after: a revocation inside consume() replaces ``_gathered`` (``drop``), and
            # ``self._gathered += consume()`` would extend the list read before the call, bringing the dropped back.
            fresh = self.consumer.consume(num_messages=batch_size - len(self._gathered), timeout=wait)
            self._gathered.extend(fresh)
            self._polled()
            if between is None:
                break
        messages, self._gathered = self._gathered, []
        return messages

    def _take_carried(self, count: int) -> list[Message]:
        taken, self.carry_over = self.carry_over[:count], self.carry_over[count:]
        return taken

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
