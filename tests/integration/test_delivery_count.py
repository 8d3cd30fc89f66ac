"""The fault scenarios' duplicated figure (tests/harness/scenario.py): rows written again for a key already stored,
counted by a test-only trigger. Reading the primary keys back can never show one (a key is stored once); the
deliveries do, and only those of committed writes."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.harness.database import count_deliveries, delivered_keys, execute, stored_keys
from tests.harness.scenario import compare
from tests.harness.storage import END_OUTAGE, OUTAGE, make_rows
from writer.storage import TransientDatabaseError


def keys(rows) -> set:
    return {(row.org_id, row.cluster, row.updated_at) for row in rows}


def test_a_message_written_again_is_counted_as_duplicated(migrated_database, writer):
    count_deliveries(migrated_database)
    first, again = make_rows(range(10)), make_rows(range(5, 15))
    assert writer.write(first).stored == 10
    outcome = writer.write(again)
    assert (outcome.stored, outcome.duplicates) == (5, 5)
    expected = keys(first) | keys(again)
    stored = stored_keys(migrated_database)
    assert compare(expected, stored, delivered_keys(migrated_database)) == {
        "lost": 0, "duplicated": 5, "unexpected": 0}
    assert compare(expected, stored)["duplicated"] == 0  # the primary keys read back cannot show it


def test_a_write_rolled_back_counts_nothing(migrated_database, writer):
    count_deliveries(migrated_database)
    rows = make_rows(range(4))
    execute(migrated_database, OUTAGE)
    with pytest.raises(TransientDatabaseError):
        writer.write(rows)
    execute(migrated_database, END_OUTAGE)
    assert writer.write(rows).stored == 4  # the retry of the same batch
    assert set(delivered_keys(migrated_database).values()) == {1}


def test_a_key_produced_twice_by_design_is_no_duplicate(migrated_database, writer):
    count_deliveries(migrated_database)
    rows = make_rows(range(3))
    writer.write(rows)
    writer.write(rows[:1])  # the same message produced again, e.g. a hostile case repeated in every round
    expected = keys(rows)
    first = next(iter(keys(rows[:1])))
    delivered = delivered_keys(migrated_database)
    assert compare(expected, stored_keys(migrated_database), delivered)["duplicated"] == 1
    assert compare(expected, stored_keys(migrated_database), delivered, Counter({first: 2}))["duplicated"] == 0
