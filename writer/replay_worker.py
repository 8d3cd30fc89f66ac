"""A worker's part in a replay: which partitions it reads from where, and which messages it keeps.

Contract (``ReplayScope.admits``, called for every message of a batch, in order):

- a message at or after its partition's end offset seen at start, or after
  its partition finished, is not part of the replay: dropped, not counted,
  its offset not committed;
- a message before ``--since`` (or without a timestamp while a window is
  set) is skipped and counted; its offset is committed with the batch;
- the first message at or after ``--until`` is skipped and counted and
  finishes its partition; its offset is not committed, so a later replay in
  the same group starts there;
- every other message is replayed.

``reached_end`` (an end-of-partition event, ``enable.partition.eof``) at or
past a partition's end offset finishes it: its position becomes the end
offset, which is committed with the batch in a group. The last offsets of a
partition may hold no message a consumer receives (transaction markers,
aborted messages; or the data is gone and the consumer was reset to the
end), so waiting for the message at ``end - 1`` could last for ever.

``batch_finished`` publishes the partitions' positions and finished flags to
the supervisor once the batch is stored and committed (or, in a dry run,
counted); a worker that dies before that leaves them where they were, and the
partition is read again from there.
"""

from __future__ import annotations

import logging

from confluent_kafka import TopicPartition
from prometheus_client import Counter

from writer.replay import ReplayPlan, partition_done

log = logging.getLogger("writer.replay")


def skipped_counter(namespace: str) -> Counter:
    name = f"{namespace}_replay_skipped_outside_window" if namespace else "replay_skipped_outside_window"
    return Counter(name, "Replayed messages skipped because their Kafka timestamp is outside --since/--until",
                   registry=None)


class ReplayScope:
    def __init__(self, plan: ReplayPlan, slot: int, workers: int, namespace: str) -> None:
        self.plan = plan
        self.slot = slot
        self.workers = workers
        self.skipped = skipped_counter(namespace)
        self._positions: dict[int, int] = {}  # this batch: partition -> offset after its last handled message
        self._finishing: set[int] = set()
        self._skipped = 0  # counted once the batch is done, like the other counters

    @property
    def self_assigned(self) -> bool:
        return self.plan.self_assigned

    def own_partitions(self) -> list[int]:
        """This worker's share of a self-assigned replay: every ``workers``-th partition from its slot."""
        return sorted(self.plan.ends)[self.slot::self.workers]

    def assign(self, consumer) -> int:
        """Assign this worker's share directly (no group join), each partition from its current position."""
        mine = [TopicPartition(self.plan.topic, p, self.plan.positions[p]) for p in self.own_partitions()
                if not self._done(p)]
        consumer.assign(mine)
        log.info("replay: reading partitions %s without joining a group",
                 ", ".join(f"{tp.partition} from offset {tp.offset}" for tp in mine) or "none (all done)")
        return len(mine)

    def starting_offsets(self, partitions: list) -> list:
        """For a group member: the partitions it was given, each from the replay's position, not the committed one."""
        return [TopicPartition(tp.topic, tp.partition, self.plan.positions[tp.partition])
                if tp.partition in self.plan.ends else tp for tp in partitions]

    def _done(self, partition: int) -> bool:
        return partition_done(self.plan, partition)

    def unfinished(self, partitions: list) -> list:
        """Those of ``partitions`` the replay still reads (a finished one stays paused)."""
        return [tp for tp in partitions if tp.partition in self.plan.ends and not self._done(tp.partition)]

    def reached_end(self, event, next_offsets: dict) -> None:
        """An end-of-partition event (its offset: where the consumer stands); see the module docstring."""
        partition, offset = event.partition(), event.offset()
        end = self.plan.ends.get(partition)
        if end is None or offset < end or self.plan.finished[partition] or partition in self._finishing:
            return
        self._positions[partition] = max(end, self._positions.get(partition, 0))
        next_offsets[(event.topic(), partition)] = end

    def admits(self, message, next_offsets: dict) -> bool:
        """Whether to replay this message; see the module docstring."""
        partition, offset = message.partition(), message.offset()
        end = self.plan.ends.get(partition)
        if end is None or offset >= end or partition in self._finishing or self.plan.finished[partition]:
            return False
        place = self.plan.window.place(message.timestamp()[1])
        if place == 0:
            self._positions[partition] = offset + 1
            return True
        self._skipped += 1
        self._positions[partition] = offset + 1
        if place < 0:
            next_offsets[(message.topic(), partition)] = offset + 1
        else:
            self._finishing.add(partition)
            log.info("replay: partition %d reached the end of the window at offset %d", partition, offset)
        return False

    def batch_finished(self, consumer) -> None:
        """Publish this batch's positions; stop fetching partitions that are done."""
        for partition, position in self._positions.items():
            if position > self.plan.positions[partition]:
                self.plan.positions[partition] = position
        for partition in self._finishing:
            self.plan.finished[partition] = 1
        if self._skipped:
            self.skipped.inc(self._skipped)
            self._skipped = 0
        done = [TopicPartition(self.plan.topic, p) for p in self._positions if self._done(p)]
        self._positions.clear()
        self._finishing.clear()
        if done:
            try:
                consumer.pause(done)
            except Exception as error:  # noqa: BLE001 - a partition revoked meanwhile; its messages are dropped anyway
                log.debug("pausing finished partitions failed: %s", error)
