"""A worker's part in a replay: which partitions it reads from where, and which messages it keeps.

Contract (``ReplayScope.admits``, called for every message of a batch, in order, with the batch's
``ReplayProgress``):

- a message at or past its partition's end offset seen at start finishes
  the partition (it is not replayed): its position becomes the end offset,
  which is committed with the batch in a group. On a busy topic that is how
  a partition ends: the message at ``end - 1`` may never come (a transaction
  marker, a compaction gap), nor an end-of-partition event (new messages
  keep coming);
- a message after its partition finished is dropped, not counted;
- a message before ``--since`` (or without a timestamp while a window is
  set) is skipped and counted; its offset is committed with the batch;
- the first message at or after ``--until`` is skipped and counted and
  finishes its partition; its offset is not committed, so a later replay in
  the same group starts there;
- every other message is replayed.

``reached_end`` (an end-of-partition event, ``enable.partition.eof``) at or
past a partition's end offset finishes it the same way. The last offsets of
a partition may hold no message a consumer receives (transaction markers,
aborted messages; or the data is gone and the consumer was reset to the
end), so waiting for the message at ``end - 1`` could last for ever.

``batch_finished`` publishes the partitions' positions, finished flags and
skipped counts of one batch (its ``ReplayProgress``) to the supervisor once
the batch is stored and its offsets committed (or, in a dry run, counted); a
worker that dies before that leaves them where they were, and the partition
is read again from there. The worker holds back the progress of a partition
until a commit of its offsets succeeded: published earlier, the replay could
end (judged from the positions) with those offsets never committed. A batch
is parsed while the one before it is still written, so each batch keeps its
own progress; a partition whose window ended in a batch not yet finished
admits nothing more meanwhile (``_ending``). The progress of a partition
revoked before it was published is given up (``forget``), skipped counts
included: its next owner reads those messages again and counts them, unless the
revocation's own commit of those offsets succeeded (a replay from committed
offsets then starts past them, and their skipped messages go uncounted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from confluent_kafka import TopicPartition
from prometheus_client import Counter

from writer.partitions import Partition
from writer.replay import ReplayPlan, partition_done

log = logging.getLogger("writer.replay")


def skipped_counter(namespace: str) -> Counter:
    name = f"{namespace}_replay_skipped_outside_window" if namespace else "replay_skipped_outside_window"
    return Counter(name, "Replayed messages skipped because their Kafka timestamp is outside --since/--until",
                   registry=None)


@dataclass
class ReplayProgress:
    """What one batch did to the replay, published when it is done (``ReplayScope.batch_finished``)."""

    positions: dict[int, int] = field(default_factory=dict)  # partition -> offset after its last handled message
    finishing: set[int] = field(default_factory=set)  # partitions whose window ended in this batch
    # Partition -> messages skipped outside the window: counted with the partition's progress, given up with it.
    skipped: dict[int, int] = field(default_factory=dict)

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.positions.pop(partition, None)
            self.skipped.pop(partition, None)
        self.finishing -= partitions

    def add(self, later: ReplayProgress) -> None:
        """Fold a later batch's progress into this one."""
        for partition, position in later.positions.items():
            self.positions[partition] = max(position, self.positions.get(partition, position))
        self.finishing |= later.finishing
        for partition, count in later.skipped.items():
            self.skipped[partition] = self.skipped.get(partition, 0) + count

    def take(self, partitions: set[int]) -> ReplayProgress:
        """Hand over the progress of ``partitions``, keeping the rest."""
        taken = ReplayProgress({p: o for p, o in self.positions.items() if p in partitions},
                               self.finishing & partitions,
                               {p: n for p, n in self.skipped.items() if p in partitions})
        self.forget(partitions)
        return taken


class ReplayScope:
    def __init__(self, plan: ReplayPlan, slot: int, workers: int, namespace: str) -> None:
        self.plan = plan
        self.slot = slot
        self.workers = workers
        self.skipped = skipped_counter(namespace)
        self._ending: set[int] = set()  # window ended in a batch not finished yet: nothing more admitted

    @property
    def self_assigned(self) -> bool:
        return self.plan.self_assigned

    def new_progress(self) -> ReplayProgress:
        return ReplayProgress()

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

    def reached_end(self, event, next_offsets: dict[Partition, int], progress: ReplayProgress) -> None:
        """An end-of-partition event (its offset: where the consumer stands); see the module docstring."""
        self._past_end(event, next_offsets, progress)

    def _past_end(self, message, next_offsets: dict[Partition, int], progress: ReplayProgress) -> bool:
        """Whether ``message`` (or end-of-partition event) stands at or past its partition's end offset; if so the
        partition is finished at that end offset, unless it was already."""
        partition, offset = message.partition(), message.offset()
        end = self.plan.ends.get(partition)
        if end is None or offset < end:
            return False
        if not self.plan.finished[partition] and partition not in self._ending:
            progress.positions[partition] = max(end, progress.positions.get(partition, 0))
            next_offsets[Partition(message.topic(), partition)] = end
        return True

    def admits(self, message, next_offsets: dict[Partition, int], progress: ReplayProgress) -> bool:
        """Whether to replay this message; see the module docstring."""
        partition, offset = message.partition(), message.offset()
        if partition not in self.plan.ends or self._past_end(message, next_offsets, progress):
            return False
        if partition in self._ending or self.plan.finished[partition]:
            return False
        place = self.plan.window.place(message.timestamp()[1])
        progress.positions[partition] = offset + 1
        if place == 0:
            return True
        progress.skipped[partition] = progress.skipped.get(partition, 0) + 1
        if place < 0:
            next_offsets[Partition(message.topic(), partition)] = offset + 1
        else:
            progress.finishing.add(partition)
            self._ending.add(partition)
            log.info("replay: partition %d reached the end of the window at offset %d", partition, offset)
        return False

    def forget(self, progress: ReplayProgress, partitions: set[int]) -> None:
        """A batch's messages of ``partitions`` were dropped unwritten (revoked): they are read again."""
        self._ending -= progress.finishing & partitions
        progress.forget(partitions)

    def batch_finished(self, consumer, progress: ReplayProgress) -> None:
        """Publish a batch's progress once it is stored; stop fetching partitions that are done."""
        for partition, position in progress.positions.items():
            if position > self.plan.positions[partition]:
                self.plan.positions[partition] = position
        for partition in progress.finishing:
            self.plan.finished[partition] = 1
        self._ending -= progress.finishing
        skipped = sum(progress.skipped.values())
        if skipped:
            self.skipped.inc(skipped)
        done = [TopicPartition(self.plan.topic, p) for p in progress.positions if self._done(p)]
        if done:
            try:
                consumer.pause(done)
            except Exception as error:  # noqa: BLE001 - a partition revoked meanwhile; its messages are dropped anyway
                log.debug("pausing finished partitions failed: %s", error)
