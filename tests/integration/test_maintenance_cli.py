"""Maintenance operations of the command line (SPEC section 5), configured only through
CCX_NOTIFICATION_WRITER__STORAGE__* environment variables, against a real PostgreSQL."""

from __future__ import annotations

import re

import pytest

from writer import migrations
from writer.schema import LATEST_VERSION, TABLES_IN_DROP_ORDER

OLD_CLUSTER = "11111111-1111-4111-8111-111111111111"
NEW_CLUSTER = "99999999-9999-4999-8999-999999999999"
OUR_TABLES = set(TABLES_IN_DROP_ORDER)
PASSWORD = "pg-pw-Vx41-distinctive"


def run(cli, database, *args, **extra_env):
    env = database.env() | {f"CCX_NOTIFICATION_WRITER__STORAGE__{k}": v for k, v in extra_env.items()}
    assert all(name.startswith("CCX_NOTIFICATION_WRITER__STORAGE__") for name in env)
    return cli(*args, env=env)


def ok(cli, database, *args, **extra_env):
    result = run(cli, database, *args, **extra_env)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def one_line_failure(result, status: int) -> str:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def filled(database):
    """Latest schema (set up in-process) with one row dated 1990 and one dated 2990 in each data table."""
    with database.connect() as c:
        migrations.init_migration_info(c)
        migrations.init_schema(c)
        migrations.migrate(c, LATEST_VERSION, report=lambda _line: None)
        for org, cluster, day, offset in ((1, OLD_CLUSTER, "1990-01-01", 5), (2, NEW_CLUSTER, "2990-01-01", 6)):
            c.execute("INSERT INTO new_reports (org_id, account_number, cluster, report, updated_at, kafka_offset) "
                      "VALUES (%s, %s, %s, '{}', %s, %s)", (org, org * 11, cluster, day, offset))
            c.execute("INSERT INTO reported (org_id, account_number, cluster, notification_type, state, report, "
                      "updated_at, notified_at, event_type_id) VALUES (%s, %s, %s, 1, 1, '{}', %s, %s, 1)",
                      (org, org * 11, cluster, day, day))
            c.execute("INSERT INTO read_errors (org_id, cluster, updated_at, error_text, created_at) "
                      "VALUES (%s, %s, %s, 'cannot parse', %s)", (org, cluster, day, day))
    return database


def clusters(database, table: str) -> list[str]:
    with database.connect() as c:
        return sorted(r[0] for r in c.execute(f"SELECT cluster FROM {table}"))


def count(database, table: str) -> int:
    with database.connect() as c:
        return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def our_tables(database) -> set[str]:
    with database.connect() as c:
        return {r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")} & OUR_TABLES


# --- age-based listing and deletion ---------------------------------------------------------------

PRINT_FLAGS = {
    "new_reports": "--print-new-reports-for-cleanup",
    "reported": "--print-old-reports-for-cleanup",
    "read_errors": "--print-read-errors-for-cleanup",
}
CLEANUP_FLAGS = {
    "new_reports": "--new-reports-cleanup",
    "reported": "--old-reports-cleanup",
    "read_errors": "--read-errors-cleanup",
}


def row_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if "cluster=" in line]


@pytest.mark.parametrize("table", list(PRINT_FLAGS))
def test_print_for_cleanup_lists_exactly_the_old_rows(filled, cli, table):
    result = ok(cli, filled, PRINT_FLAGS[table])
    rows = row_lines(result.stdout)
    assert len(rows) == 1, result.stdout
    assert OLD_CLUSTER in rows[0] and "1990-01-01" in rows[0]
    assert "org_id=1" in rows[0]
    assert NEW_CLUSTER not in result.stdout
    assert f"{table}: 1 rows older than 7 days" in result.stdout
    # listing changes nothing
    assert clusters(filled, table) == [OLD_CLUSTER, NEW_CLUSTER]


@pytest.mark.parametrize("table", list(PRINT_FLAGS))
def test_print_for_cleanup_with_max_age(filled, cli, table):
    for max_age, expected in (("10 years", 1), ("100 years", 0)):
        result = ok(cli, filled, PRINT_FLAGS[table], "--max-age", max_age)
        assert len(row_lines(result.stdout)) == expected, result.stdout
        assert f"{table}: {expected} rows older than {max_age}" in result.stdout
        assert NEW_CLUSTER not in result.stdout


def test_new_reports_cleanup_deletes_exactly_the_old_rows(filled, cli):
    result = ok(cli, filled, "--new-reports-cleanup")
    assert "new_reports: 1 rows older than 7 days deleted" in result.stdout
    assert clusters(filled, "new_reports") == [NEW_CLUSTER]
    # read_errors of the deleted report go with it (ON DELETE CASCADE, migration 6)
    assert clusters(filled, "read_errors") == [NEW_CLUSTER]
    assert clusters(filled, "reported") == [OLD_CLUSTER, NEW_CLUSTER]


def test_old_reports_cleanup_deletes_exactly_the_old_rows(filled, cli):
    result = ok(cli, filled, "--old-reports-cleanup")
    assert "reported: 1 rows older than 7 days deleted" in result.stdout
    assert clusters(filled, "reported") == [NEW_CLUSTER]
    assert clusters(filled, "new_reports") == [OLD_CLUSTER, NEW_CLUSTER]
    assert clusters(filled, "read_errors") == [OLD_CLUSTER, NEW_CLUSTER]


def test_read_errors_cleanup_deletes_exactly_the_old_rows(filled, cli):
    result = ok(cli, filled, "--read-errors-cleanup")
    assert "read_errors: 1 rows older than 7 days deleted" in result.stdout
    assert clusters(filled, "read_errors") == [NEW_CLUSTER]
    assert clusters(filled, "new_reports") == [OLD_CLUSTER, NEW_CLUSTER]
    assert clusters(filled, "reported") == [OLD_CLUSTER, NEW_CLUSTER]


@pytest.mark.parametrize("table", list(CLEANUP_FLAGS))
def test_cleanup_with_a_max_age_older_than_the_rows_deletes_nothing(filled, cli, table):
    result = ok(cli, filled, CLEANUP_FLAGS[table], "--max-age", "100 years")
    assert f"{table}: 0 rows older than 100 years deleted" in result.stdout
    assert clusters(filled, table) == [OLD_CLUSTER, NEW_CLUSTER]


@pytest.mark.parametrize("form", [["--max-age", "10 years"], ["-max-age", "10 years"], ["--max-age=10 years"]])
def test_cleanup_with_max_age_10_years(filled, cli, form):
    result = ok(cli, filled, "-old-reports-cleanup", *form)
    assert "reported: 1 rows older than 10 years deleted" in result.stdout
    assert clusters(filled, "reported") == [NEW_CLUSTER]


def test_invalid_max_age_exits_5_with_one_clear_line(filled, cli):
    cases = [(flag, "banana") for flag in [*PRINT_FLAGS.values(), *CLEANUP_FLAGS.values()]]
    cases += [("--new-reports-cleanup", "10 parsecs"), ("--print-old-reports-for-cleanup", "")]
    for flag, max_age in cases:
        line = one_line_failure(run(cli, filled, flag, "--max-age", max_age), 5)
        assert "--max-age" in line and "interval" in line, line
        assert repr(max_age) in line
    for table in PRINT_FLAGS:
        assert count(filled, table) == 2


def test_max_age_is_a_bound_parameter(filled, cli):
    for flag, max_age in [
        ("--new-reports-cleanup", "1 day'; DROP TABLE new_reports; --"),
        ("--print-new-reports-for-cleanup", "1 day'; DROP TABLE new_reports; --"),
        ("--new-reports-cleanup", "1 day'::interval; DELETE FROM new_reports; --"),
        ("--new-reports-cleanup", "0 days') OR ('1'='1"),
    ]:
        one_line_failure(run(cli, filled, flag, "--max-age", max_age), 5)
    assert our_tables(filled) == OUR_TABLES
    assert clusters(filled, "new_reports") == [OLD_CLUSTER, NEW_CLUSTER]
    assert clusters(filled, "read_errors") == [OLD_CLUSTER, NEW_CLUSTER]


def test_cleanup_on_a_database_without_tables_exits_5(database, cli):
    line = one_line_failure(run(cli, database, "--print-new-reports-for-cleanup"), 5)
    assert "new_reports" in line


# --- whole-table operations -----------------------------------------------------------------------


def test_db_cleanup_empties_the_data_tables_and_prints_counts(filled, cli):
    result = ok(cli, filled, "--db-cleanup")
    for table in ("new_reports", "reported", "read_errors"):
        assert f"{table}: 2 rows deleted" in result.stdout
        assert count(filled, table) == 0
    # the schema and its reference data stay usable
    assert our_tables(filled) == OUR_TABLES
    assert count(filled, "notification_types") == 2
    assert count(filled, "states") == 4
    assert count(filled, "event_targets") == 2
    assert ok(cli, filled, "--migration-info").stdout.splitlines()[0] == f"current version: {LATEST_VERSION}"


def test_db_drop_tables_drops_everything_and_the_schema_can_be_rebuilt(filled, cli):
    result = ok(cli, filled, "--db-drop-tables")
    for table in OUR_TABLES:
        assert f"table {table} dropped" in result.stdout
    assert our_tables(filled) == set()
    with filled.connect() as c:
        assert c.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
        # the serial's sequence went with read_errors
        assert c.execute("SELECT count(*) FROM pg_class WHERE relkind = 'S' "
                         "AND relnamespace = 'public'::regnamespace").fetchone()[0] == 0
    assert "no tables to drop" in ok(cli, filled, "--db-drop-tables").stdout
    ok(cli, filled, "--db-init-migration")
    ok(cli, filled, "--db-init")
    ok(cli, filled, "--migrate", "latest")
    assert our_tables(filled) == OUR_TABLES
    assert "current version: 8" in ok(cli, filled, "--migration-info").stdout
    assert count(filled, "new_reports") == 0


def test_truncate_old_reports_empties_reported_only(filled, cli):
    result = ok(cli, filled, "--truncate-old-reports")
    assert "reported" in result.stdout
    assert count(filled, "reported") == 0
    assert count(filled, "new_reports") == 2
    assert count(filled, "read_errors") == 2


# --- storage errors ---------------------------------------------------------------------------------


class Unreachable:
    """Environment of a database nobody listens for (nothing to create)."""

    def env(self):
        return {"CCX_NOTIFICATION_WRITER__STORAGE__PG_HOST": "127.0.0.1",
                "CCX_NOTIFICATION_WRITER__STORAGE__PG_DB_NAME": "notification"}


@pytest.mark.parametrize("args", [
    ["--db-init"], ["--db-init-migration"], ["--migrate", "latest"], ["--migration-info"], ["--db-cleanup"],
    ["--db-drop-tables"], ["--print-new-reports-for-cleanup"], ["--old-reports-cleanup"],
    ["--truncate-old-reports"],
])
def test_unreachable_database_exits_5_without_password(cli, args):
    result = run(cli, Unreachable(), *args, PG_PORT="1", PG_PASSWORD=PASSWORD)
    line = one_line_failure(result, 5)
    assert "127.0.0.1:1" in line or ":1/" in line
    assert PASSWORD not in result.stdout + result.stderr


def test_missing_database_exits_5_without_password(database, cli):
    result = run(cli, database, "--db-init", PG_DB_NAME=database.name + "_missing", PG_PASSWORD=PASSWORD)
    line = one_line_failure(result, 5)
    assert database.name + "_missing" in line
    assert PASSWORD not in result.stdout + result.stderr


def test_password_never_appears_in_successful_output(filled, cli):
    for args in (["--db-cleanup"], ["--print-new-reports-for-cleanup"], ["--migration-info"]):
        result = ok(cli, filled, *args, PG_PASSWORD=PASSWORD)
        assert PASSWORD not in result.stdout + result.stderr


# --- flags --------------------------------------------------------------------------------------------


def test_single_dash_flags(database, cli):
    """Every other test uses two dashes; the original's one-dash spelling must work just the same."""
    dashes = "-"
    ok(cli, database, f"{dashes}db-init-migration")
    ok(cli, database, f"{dashes}db-init")
    ok(cli, database, f"{dashes}migrate", "latest")
    info = ok(cli, database, f"{dashes}migration-info").stdout
    assert f"current version: {LATEST_VERSION}" in info
    with database.connect() as c:
        c.execute("INSERT INTO new_reports (org_id, account_number, cluster, report, updated_at) "
                  "VALUES (1, 1, %s, '{}', '1990-01-01')", (OLD_CLUSTER,))
    listed = ok(cli, database, f"{dashes}print-new-reports-for-cleanup", f"{dashes}max-age", "10 years").stdout
    assert len(row_lines(listed)) == 1
    ok(cli, database, f"{dashes}new-reports-cleanup", f"{dashes}max-age", "10 years")
    assert count(database, "new_reports") == 0
    ok(cli, database, f"{dashes}db-drop-tables")
    assert our_tables(database) == set()


def test_single_dash_version_and_show_configuration(cli):
    assert cli("-version").stdout.startswith("ccx-notification-writer version ")
    shown = cli("-show-configuration", env={"CCX_NOTIFICATION_WRITER__STORAGE__PG_DB_NAME": "single_dash_db"})
    assert shown.returncode == 0
    assert "single_dash_db" in shown.stdout


# SPEC section 5's flags, written out (not taken from the code under test).
SPEC_FLAGS = [
    "version", "authors", "show-configuration", "check-kafka", "db-init", "db-init-migration", "migrate",
    "migration-info", "db-cleanup", "db-drop-tables", "print-new-reports-for-cleanup", "new-reports-cleanup",
    "print-old-reports-for-cleanup", "old-reports-cleanup", "print-read-errors-for-cleanup", "read-errors-cleanup",
    "truncate-old-reports", "max-age",
]


def test_help_lists_every_operation_flag(cli):
    result = cli("--help")
    assert result.returncode == 0
    for flag in SPEC_FLAGS:
        assert re.search(rf"(^|[\s,])--{re.escape(flag)}\b", result.stdout), flag
        assert re.search(rf"(^|[\s,])-{re.escape(flag)}\b", result.stdout), flag


def test_two_operations_at_once_exit_1_and_do_nothing(filled, cli):
    for args in (
        ["--db-init", "--db-cleanup"],
        ["--db-drop-tables", "--db-init"],
        ["--migrate", "0", "--db-cleanup"],
        ["-version", "-authors"],
        ["--new-reports-cleanup", "--print-new-reports-for-cleanup", "--max-age", "1 day"],
    ):
        line = one_line_failure(run(cli, filled, *args), 1)
        assert "one operation" in line
    assert our_tables(filled) == OUR_TABLES
    assert count(filled, "new_reports") == 2


# ---- --max-age of zero or less (issue 9, item 19) ------------------------------------------------------------
# Refused: it would list or delete every row. Exit status 5, as for any invalid --max-age (README "Command
# line"); nothing is deleted.

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
