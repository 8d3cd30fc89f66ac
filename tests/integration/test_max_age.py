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


@pytest.mark.parametrize(("max_age", "now", "refused"), [
    ("1 month -29 days", "2026-03-01 00:00+00", True),  # Feb 1 + 29 days: 2 March, in the future
    ("1 month -29 days", "2026-11-29 00:00+00", False),  # Oct 29 + 29 days: 27 November, in the past
    ("1 month -40 days", "2026-11-29 00:00+00", True),
    ("1 second", "2026-03-01 00:00+00", False),
])
def test_max_age_is_checked_on_the_moment_it_reaches(filled, max_age, now, refused):
    import datetime

    from writer.maintenance import NonPositiveMaxAge, check_max_age

    moment = datetime.datetime.fromisoformat(now)
    with filled.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")  # month arithmetic on timestamptz follows the session's zone
        if refused:
            with pytest.raises(NonPositiveMaxAge):
                check_max_age(connection, max_age, moment)
        else:
            check_max_age(connection, max_age, moment)
