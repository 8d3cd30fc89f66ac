"""BatchWriter findings of the issue-9 review (items 3, 5, 6, 9): the canary when part of a batch was a
duplicate, timeouts in force from the connection's first statement, a connection broken by the idle
timeout, a canary whose key is taken. Real PostgreSQL."""

from __future__ import annotations

import pytest
from test_storage_faults import REFUSE_EVERYTHING

from test_storage import count, make_rows, migrated_database, migrated_template, writer, writer_conninfo  # noqa: F401
from writer.storage import FatalDatabaseError


def test_a_batch_with_a_duplicate_and_every_new_row_refused_is_fatal(migrated_database, writer):
    stored = make_rows([1000])
    assert writer.write(stored).stored == 1
    with migrated_database.connect() as connection:
        # AFTER: the duplicate is skipped by ON CONFLICT DO NOTHING before any trigger runs.
        connection.execute(REFUSE_EVERYTHING.replace("BEFORE INSERT", "AFTER INSERT"))
    with pytest.raises(FatalDatabaseError, match="refused all"):
        writer.write(stored + make_rows([1, 2]))
    assert count(migrated_database) == 1
