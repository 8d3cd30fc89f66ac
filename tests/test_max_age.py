"""--max-age of zero or less is refused (issue 9, item 19): it would list or delete every row.
Exit status 5, as for any invalid --max-age (README "Command line"); nothing is deleted."""

from __future__ import annotations

import pytest

from test_maintenance_cli import (  # noqa: F401
    CLEANUP_FLAGS,
    NEW_CLUSTER,
    OLD_CLUSTER,
    PRINT_FLAGS,
    clusters,
    filled,
    ok,
    one_line_failure,
    run,
)

TABLES = list(CLEANUP_FLAGS)


@pytest.mark.parametrize("index,max_age", list(enumerate(["0 days", "-1 second", "1 month -40 days"])))
def test_max_age_zero_or_negative_is_refused_and_deletes_nothing(filled, cli, index, max_age):
    table = TABLES[index % len(TABLES)]
    for flag in (CLEANUP_FLAGS[table], PRINT_FLAGS[table]):
        line = one_line_failure(run(cli, filled, flag, "--max-age", max_age), 5)
        assert repr(max_age) in line and "greater than zero" in line, line
    for table in PRINT_FLAGS:
        assert clusters(filled, table) == [OLD_CLUSTER, NEW_CLUSTER]


def test_a_small_positive_max_age_still_works(filled, cli):
    ok(cli, filled, CLEANUP_FLAGS["new_reports"], "--max-age", "1 second")
    assert clusters(filled, "new_reports") == [NEW_CLUSTER]
