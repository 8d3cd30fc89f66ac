"""Partition bookkeeping of one worker: which partitions it owns, and which offsets it still has to commit. Pure.

Offsets follow Kafka's convention: the offset committed for a partition is the
next one to read, i.e. the offset after the last message done with.

What the book guarantees (``PartitionBook``):

- only partitions this worker owns are committed (``offsets_to_commit``): a
  revoked partition's offsets are its next owner's business;
- the offsets of a stored batch whose commit failed are kept (``keep_uncommitted``)
  and committed with the next batch, or on their own while idle, never lost
  while the partition stays owned; the worker commits them in the revocation
  callback (``uncommitted`` and ``committing``), then ``revoke`` forgets them;
- offsets never go backwards within what the book merges (a higher offset wins);
- offsets handed to a commit are ``committing`` until its answer (or giving up
  on it): neither committed nor uncommitted yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple


class Partition(NamedTuple):
    topic: str
    number: int  # the partition's index in its topic ("index" would hide tuple.index)


# The offset after the last message done with in a partition: where its next reader starts.
NextOffsets = dict[Partition, int]


def merged(older: Mapping[Partition, int], newer: Mapping[Partition, int]) -> NextOffsets:
    """Both sets of offsets, the higher one where both name a partition."""
    result = dict(older)
    for partition, offset in newer.items():
        result[partition] = max(offset, result.get(partition, offset))
    return result


def without(offsets: Mapping[Partition, int], partitions: Iterable[Partition]) -> NextOffsets:
    dropped = set(partitions)
    return {partition: offset for partition, offset in offsets.items() if partition not in dropped}


class PartitionBook:
    """The partitions this worker owns and the offsets of stored batches whose commit failed."""

    def __init__(self) -> None:
        self.assigned: set[Partition] = set()
        self.uncommitted: NextOffsets = {}
        self.committing: NextOffsets = {}  # handed to the commit whose answer is awaited

    def assign(self, partitions: Iterable[Partition]) -> None:
        self.assigned.update(partitions)

    def revoke(self, partitions: Iterable[Partition]) -> None:
        """No longer ours: their uncommitted offsets go too (the next owner reads those messages again)."""
        revoked = set(partitions)
        self.assigned -= revoked
        self.uncommitted = without(self.uncommitted, revoked)
        self.committing = without(self.committing, revoked)

    def owns(self, partition: Partition) -> bool:
        return partition in self.assigned

    def offsets_to_commit(self, batch: Mapping[Partition, int]) -> NextOffsets:
        """What to commit now: ``batch`` merged with earlier uncommitted offsets, for owned partitions only.

        The uncommitted offsets are handed over: call ``keep_uncommitted`` if this commit fails too. Until
        ``commit_ended``, the offsets returned are ``committing``."""
        offsets = merged(self.uncommitted, batch)
        self.uncommitted = {}
        self.committing = {partition: offset for partition, offset in offsets.items() if partition in self.assigned}
        return dict(self.committing)

    def commit_ended(self) -> None:
        """The commit of ``offsets_to_commit``'s offsets was answered, or given up on."""
        self.committing = {}

    def keep_uncommitted(self, offsets: Mapping[Partition, int]) -> None:
        """Keep ``offsets`` for the next commit (theirs failed, or was not tried), except those of partitions
        revoked meanwhile."""
        self.uncommitted = merged(
            self.uncommitted, {partition: offset for partition, offset in offsets.items() if partition in self.assigned}
        )
