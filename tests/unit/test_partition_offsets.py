"""Partition bookkeeping (writer.partitions): what is committed, what a revocation drops, what a failed commit keeps."""

from __future__ import annotations

from writer.partitions import Partition, PartitionBook, merged, without

A0, A1, B0 = Partition("a", 0), Partition("a", 1), Partition("b", 0)


def test_a_partition_equals_its_plain_tuple():
    # The consumer's callbacks and older code speak (topic, partition) tuples: both name the same dict entry.
    assert Partition("a", 0) == ("a", 0) and {Partition("a", 0): 1}[("a", 0)] == 1
    assert A1.topic == "a" and A1.number == 1


def test_merged_keeps_the_higher_offset_of_each_partition():
    assert merged({A0: 5, A1: 9}, {A0: 7, A1: 3, B0: 1}) == {A0: 7, A1: 9, B0: 1}
    assert merged({}, {A0: 2}) == {A0: 2} and merged({A0: 2}, {}) == {A0: 2}


def test_without_drops_the_named_partitions_only():
    assert without({A0: 5, A1: 9, B0: 1}, {A1, Partition("c", 4)}) == {A0: 5, B0: 1}


def test_only_owned_partitions_are_committed():
    book = PartitionBook()
    book.assign([A0, B0])
    assert book.offsets_to_commit({A0: 3, A1: 8, B0: 2}) == {A0: 3, B0: 2}


def test_a_failed_commit_is_merged_into_the_next_one():
    book = PartitionBook()
    book.assign([A0, A1])
    first = book.offsets_to_commit({A0: 3, A1: 4})
    book.keep_uncommitted(first)
    assert book.uncommitted == {A0: 3, A1: 4}
    # The next batch moved A0 further and did not touch A1: both go with it.
    assert book.offsets_to_commit({A0: 6}) == {A0: 6, A1: 4}
    assert book.uncommitted == {}  # handed over: kept again only if this commit fails too


def test_a_partition_revoked_during_the_commit_is_not_kept_for_a_retry():
    book = PartitionBook()
    book.assign([A0, A1])
    offsets = book.offsets_to_commit({A0: 3, A1: 4})
    book.revoke([A1])  # the rebalance came while the commit's answer was waited for
    book.keep_uncommitted(offsets)
    assert book.uncommitted == {A0: 3}


def test_a_revocation_drops_the_uncommitted_offsets_of_its_partitions():
    book = PartitionBook()
    book.assign([A0, A1, B0])
    book.keep_uncommitted({A0: 3, A1: 4, B0: 1})
    book.revoke([A0, B0])
    assert book.uncommitted == {A1: 4}
    assert book.assigned == {A1}
    assert not book.owns(A0) and book.owns(A1)
    book.assign([A0])  # back again: its old offsets are not, the next owner may have moved on
    assert book.offsets_to_commit({}) == {A1: 4}


def test_offsets_never_go_back_when_a_failed_commit_meets_an_older_batch():
    book = PartitionBook()
    book.assign([A0])
    book.keep_uncommitted({A0: 10})
    assert book.offsets_to_commit({A0: 7}) == {A0: 10}


def test_offsets_handed_to_a_commit_are_committing_until_it_ended():
    book = PartitionBook()
    book.assign([A0, A1])
    book.keep_uncommitted({A0: 4})
    assert book.offsets_to_commit({A1: 2}) == {A0: 4, A1: 2}
    assert book.uncommitted == {} and book.committing == {A0: 4, A1: 2}
    book.revoke([A1])
    assert book.committing == {A0: 4}
    book.commit_ended()
    assert book.committing == {}
