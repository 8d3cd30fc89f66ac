"""Base schema and migrations (SPEC section 4) through the real command line, checked in the catalog."""

from __future__ import annotations

import pytest

from writer import migrations
from writer.schema import LATEST_VERSION

OUR_TABLES = {"notification_types", "states", "reported", "new_reports", "migration_info",
              "event_targets", "read_errors"}
EVENT_TARGET_ROWS = [
    (1, "notifications backend", "the target of the report is the ccx notification service back end"),
    (2, "service log", "the target of the report is the ServiceLog"),
]
CLUSTER = "5d5892d3-1f74-4ccf-91af-548dfc9767aa"


def ok(cli, database, *args):
    result = cli(*args, env=database.env())
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def fail(cli, database, status, *args):
    result = cli(*args, env=database.env())
    assert result.returncode == status, (args, result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def base_database(database):
    """migration_info at 0 plus the base schema: the state the original's deployments start from.

    Set up in-process (the same functions --db-init-migration and --db-init call) to keep tests fast;
    the command-line path is covered by test_documented_sequence_gives_the_spec_schema.
    """
    with database.connect() as connection:
        migrations.init_migration_info(connection)
        migrations.init_schema(connection)
    return database


def migrate(database, target: int) -> list[str]:
    """In-process migration (what --migrate runs), one transaction per step; returns the step reports."""
    reports: list[str] = []
    with database.connect() as connection:
        assert migrations.migrate(connection, target, report=reports.append) == target
    return reports


def version(database) -> int:
    with database.connect() as connection:
        return connection.execute("SELECT version FROM migration_info").fetchone()[0]


def one(connection, query, *params):
    return connection.execute(query, params).fetchone()[0]


def state(database) -> dict:
    """The facts each migration step changes, read from the catalog."""
    with database.connect() as c:
        facts = {
            "event_targets": one(c, "SELECT to_regclass('event_targets') IS NOT NULL"),
            "read_errors": one(c, "SELECT to_regclass('read_errors') IS NOT NULL"),
            "event_type_id": one(c, "SELECT count(*) FROM information_schema.columns "
                                    "WHERE table_name = 'reported' AND column_name = 'event_type_id'") == 1,
            "event_type_id_not_null": one(c, "SELECT coalesce(bool_or(attnotnull), false) FROM pg_attribute "
                                             "WHERE attrelid = 'reported'::regclass AND attname = 'event_type_id' "
                                             "AND NOT attisdropped"),
            "event_type_fk": one(c, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'reported'::regclass "
                                    "AND contype = 'f' AND confrelid = to_regclass('event_targets')"),
            "comments": one(c, "SELECT count(*) FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r' "
                               "AND obj_description(oid, 'pg_class') IS NOT NULL", sorted(OUR_TABLES)),
            "new_indexes": sorted(r[0] for r in c.execute(
                "SELECT indexname FROM pg_indexes WHERE indexname IN "
                "('idx_reported_event_state_org_cluster', 'idx_reported_updated_at')").fetchall()),
        }
        facts["event_target_rows"] = (
            [tuple(r) for r in c.execute("SELECT id, name, metainfo FROM event_targets ORDER BY id")]
            if facts["event_targets"] else None
        )
        facts["read_errors_fk_delete"] = (
            one(c, "SELECT confdeltype FROM pg_constraint WHERE conrelid = 'read_errors'::regclass "
                   "AND contype = 'f'") if facts["read_errors"] else None
        )
    return facts


def expected_state(v: int) -> dict:
    return {
        "event_targets": v >= 1,
        "read_errors": v >= 5,
        "event_type_id": v >= 2,
        "event_type_id_not_null": v >= 4,
        "event_type_fk": 1 if v >= 2 else 0,
        "comments": 7 if v >= 7 else 0,
        "new_indexes": ["idx_reported_event_state_org_cluster", "idx_reported_updated_at"] if v >= 8 else [],
        "event_target_rows": None if v < 1 else (EVENT_TARGET_ROWS if v >= 3 else []),
        "read_errors_fk_delete": None if v < 5 else ("c" if v >= 6 else "a"),
    }


def snapshot(database) -> dict:
    """A broader catalog picture for round-trip comparison."""
    with database.connect() as c:
        columns = sorted(tuple(r) for r in c.execute(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attrdef d "
            "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped"))
        constraints = sorted(tuple(r) for r in c.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace"))
        indexes = sorted(tuple(r) for r in c.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"))
        comments = sorted(tuple(r) for r in c.execute(
            "SELECT relname, obj_description(oid, 'pg_class') FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"))
    return {"columns": columns, "constraints": constraints, "indexes": indexes, "comments": comments,
            "version": version(database)}


def test_latest_version_is_8():
    assert LATEST_VERSION == 8


def test_each_step_up_then_each_step_down(base_database, cli):
    db = base_database
    assert state(db) == expected_state(0)
    for target in range(1, LATEST_VERSION + 1):
        result = ok(cli, db, "--migrate", str(target))
        assert f"to {target}" in result.stdout
        assert version(db) == target
        assert state(db) == expected_state(target), target
    for target in range(LATEST_VERSION - 1, -1, -1):  # down in-process (the CLI goes down in the next tests)
        assert migrate(db, target) == [f"migrated from version {target + 1} to {target}: "
                                       f"{migrations.MIGRATIONS[target].description}"]
        assert version(db) == target
        assert state(db) == expected_state(target), target


def test_each_step_round_trips_to_an_identical_catalog(base_database):
    db = base_database
    for v in range(LATEST_VERSION):
        before = snapshot(db)
        assert len(migrate(db, v + 1)) == 1
        assert snapshot(db) != before
        assert len(migrate(db, v)) == 1
        assert snapshot(db) == before, v
        migrate(db, v + 1)


def test_one_call_moves_several_steps_and_reports_each(base_database, cli):
    result = ok(cli, base_database, "--migrate", "latest")
    assert version(base_database) == LATEST_VERSION
    steps = [line for line in result.stdout.splitlines() if line.startswith("migrated from version")]
    assert [line.split()[3] for line in steps] == [str(v) for v in range(LATEST_VERSION)]
    assert "database schema is at version 8" in result.stdout


def test_latest_then_zero_then_latest(base_database, cli):
    db = base_database
    ok(cli, db, "--migrate", "latest")
    at_latest = snapshot(db)
    assert state(db) == expected_state(8)
    ok(cli, db, "--migrate", "0")
    assert version(db) == 0
    assert state(db) == expected_state(0)
    ok(cli, db, "--migrate", "latest")
    assert snapshot(db) == at_latest


def test_migrate_to_current_version_changes_nothing(base_database, cli):
    migrate(base_database, 3)
    before = snapshot(base_database)
    result = ok(cli, base_database, "--migrate", "3")
    assert "migrated from" not in result.stdout
    assert snapshot(base_database) == before


def test_step_4_fills_event_type_id_and_step_back_clears_it(base_database):
    db = base_database
    migrate(db, 3)
    with db.connect() as c:
        c.execute("INSERT INTO reported (org_id, account_number, cluster, notification_type, state, report, "
                  "updated_at, notified_at) VALUES (1, 2, %s, 1, 1, '{}', now(), now())", (CLUSTER,))
        c.execute("INSERT INTO reported (org_id, account_number, cluster, notification_type, state, report, "
                  "updated_at, notified_at, event_type_id) VALUES (1, 2, %s, 1, 1, '{}', now(), "
                  "now() - interval '1 day', 2)", (CLUSTER,))
    migrate(db, 4)
    with db.connect() as c:
        assert sorted(r[0] for r in c.execute("SELECT event_type_id FROM reported")) == [1, 2]
    migrate(db, 3)
    with db.connect() as c:
        assert sorted((r[0] is None, r[0]) for r in c.execute("SELECT event_type_id FROM reported")) == [
            (False, 2), (True, None)]


def test_step_6_cascade_really_deletes_read_errors(base_database):
    db = base_database
    migrate(db, 6)
    with db.connect() as c:
        c.execute("INSERT INTO new_reports (org_id, account_number, cluster, report, updated_at) "
                  "VALUES (1, 2, %s, '{}', '2020-01-01')", (CLUSTER,))
        c.execute("INSERT INTO read_errors (org_id, cluster, updated_at, error_text, created_at) "
                  "VALUES (1, %s, '2020-01-01', 'bad', now())", (CLUSTER,))
        c.execute("DELETE FROM new_reports")
        assert one(c, "SELECT count(*) FROM read_errors") == 0


def test_a_failing_step_is_rolled_back_and_earlier_steps_stay(base_database, cli):
    """Step 3 down (delete event_targets) fails while reported references target 2: version stays 3."""
    db = base_database
    migrate(db, LATEST_VERSION)
    with db.connect() as c:
        c.execute("INSERT INTO reported (org_id, account_number, cluster, notification_type, state, report, "
                  "updated_at, notified_at, event_type_id) VALUES (1, 2, %s, 1, 1, '{}', now(), now(), 2)",
                  (CLUSTER,))
    line = fail(cli, db, 7, "--migrate", "0")
    assert "3 -> 2" in line
    assert version(db) == 3
    assert state(db) == expected_state(3)  # steps 8..4 were undone, step 3 was not half done


def test_migrate_without_base_schema_fails_at_the_step_needing_it(database, cli):
    ok(cli, database, "--db-init-migration")
    line = fail(cli, database, 7, "--migrate", "latest")
    assert "1 -> 2" in line
    assert version(database) == 1  # step 1 (create event_targets) committed on its own
    with database.connect() as c:
        assert one(c, "SELECT to_regclass('event_targets') IS NOT NULL")


@pytest.mark.parametrize("target", ["99", "9", "-1", "abc", "", "1.5"])
def test_invalid_migration_target_exits_7(base_database, cli, target):
    migrate(base_database, 2)
    line = fail(cli, base_database, 7, "--migrate", target)
    assert "--migrate" in line
    assert version(base_database) == 2


def test_migration_info_without_table_exits_7(database, cli):
    line = fail(cli, database, 7, "--migration-info")
    assert "migration_info" in line


def test_migrate_without_migration_info_exits_7(database, cli):
    ok(cli, database, "--db-init")
    line = fail(cli, database, 7, "--migrate", "latest")
    assert "--db-init-migration" in line


def test_migration_info_with_two_rows_exits_7(base_database, cli):
    with base_database.connect() as c:
        c.execute("INSERT INTO migration_info VALUES (0)")
    line = fail(cli, base_database, 7, "--migration-info")
    assert "2" in line


def test_migration_info_prints_current_and_latest(base_database, cli):
    migrate(base_database, 5)
    lines = ok(cli, base_database, "--migration-info").stdout.splitlines()
    assert "current version: 5" in lines
    assert "latest version: 8" in lines


def test_db_init_twice_is_fine_and_keeps_data(base_database, cli):
    db = base_database
    migrate(db, LATEST_VERSION)
    with db.connect() as c:
        c.execute("INSERT INTO new_reports (org_id, account_number, cluster, report, updated_at) "
                  "VALUES (1, 2, %s, '{}', '2020-01-01')", (CLUSTER,))
        c.execute("UPDATE states SET comment = 'changed by operator' WHERE id = 4")
    before = snapshot(db)
    ok(cli, db, "--db-init")
    ok(cli, db, "--db-init")
    assert snapshot(db) == before
    with db.connect() as c:
        assert one(c, "SELECT count(*) FROM new_reports") == 1
        assert one(c, "SELECT comment FROM states WHERE id = 4") == "changed by operator"
        assert one(c, "SELECT count(*) FROM notification_types") == 2
        assert one(c, "SELECT count(*) FROM states") == 4


def test_db_init_migration_twice_keeps_the_version(base_database, cli):
    migrate(base_database, 3)
    result = ok(cli, base_database, "--db-init-migration")
    assert "already exists" in result.stdout
    assert version(base_database) == 3
    with base_database.connect() as c:
        assert one(c, "SELECT count(*) FROM migration_info") == 1


def test_db_init_migration_creates_version_0(database, cli):
    result = ok(cli, database, "--db-init-migration")
    assert "version 0" in result.stdout
    assert version(database) == 0
    with database.connect() as c:
        assert one(c, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 1


# --- the exact documented sequence gives the SPEC section 4 schema -------------------------------

SPEC_COLUMNS = {
    "notification_types": [
        ("id", "integer", True), ("value", "character varying", True),
        ("frequency", "character varying", True), ("comment", "character varying", False)],
    "states": [("id", "integer", True), ("value", "character varying", True),
               ("comment", "character varying", False)],
    "reported": [
        ("org_id", "integer", True), ("account_number", "integer", True), ("cluster", "character(36)", True),
        ("notification_type", "integer", True), ("state", "integer", True),
        ("report", "character varying", True), ("updated_at", "timestamp without time zone", True),
        ("notified_at", "timestamp without time zone", True), ("error_log", "character varying", False),
        ("event_type_id", "integer", True)],
    "new_reports": [
        ("org_id", "integer", True), ("account_number", "integer", True), ("cluster", "character(36)", True),
        ("report", "character varying", True), ("updated_at", "timestamp without time zone", True),
        ("kafka_offset", "bigint", True)],
    "migration_info": [("version", "integer", True)],
    "event_targets": [("id", "integer", True), ("name", "character varying", True),
                      ("metainfo", "character varying", True)],
    "read_errors": [
        ("error_id", "integer", True), ("org_id", "integer", True), ("cluster", "character(36)", True),
        ("updated_at", "timestamp without time zone", True), ("error_text", "character varying(1000)", True),
        ("created_at", "timestamp without time zone", True)],
}
SPEC_PRIMARY_KEYS = {
    "notification_types": "PRIMARY KEY (id)",
    "states": "PRIMARY KEY (id)",
    "reported": "PRIMARY KEY (org_id, cluster, notified_at)",
    "new_reports": "PRIMARY KEY (org_id, cluster, updated_at)",
    "event_targets": "PRIMARY KEY (id)",
    "read_errors": "PRIMARY KEY (error_id)",
}
SPEC_FOREIGN_KEYS = {
    ("reported", "FOREIGN KEY (notification_type) REFERENCES notification_types(id)"),
    ("reported", "FOREIGN KEY (state) REFERENCES states(id)"),
    ("reported", "FOREIGN KEY (event_type_id) REFERENCES event_targets(id)"),
    ("read_errors", "FOREIGN KEY (org_id, cluster, updated_at) REFERENCES new_reports(org_id, cluster, updated_at) "
                    "ON DELETE CASCADE"),
}
SPEC_UNIQUE = {
    ("event_targets", "UNIQUE (name)"),
    ("event_targets", "UNIQUE (metainfo)"),
    ("read_errors", "UNIQUE (error_id, org_id, cluster, updated_at)"),
}
SPEC_INDEXES = {
    "report_kafka_offset_btree_idx": ("new_reports", "(kafka_offset)"),
    "new_reports_org_id_idx": ("new_reports", "(org_id)"),
    "new_reports_cluster_idx": ("new_reports", "(cluster)"),
    "new_reports_updated_at_asc_idx": ("new_reports", "(updated_at)"),
    "new_reports_updated_at_desc_idx": ("new_reports", "(updated_at DESC)"),
    "notified_at_desc_idx": ("reported", "(notified_at DESC)"),
    "updated_at_desc_idx": ("reported", "(updated_at)"),
    "notification_types_id_idx": ("notification_types", "(id)"),
    "idx_reported_event_state_org_cluster": ("reported", "(event_type_id, state, org_id, cluster)"),
    "idx_reported_updated_at": ("reported", "(updated_at)"),
}


def test_documented_sequence_gives_the_spec_schema(database, cli):
    for args in (["--db-init-migration"], ["--db-init"], ["--migrate", "latest"]):
        ok(cli, database, *args)
    assert version(database) == 8
    with database.connect() as c:
        tables = {r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert tables == OUR_TABLES
        for table, columns in SPEC_COLUMNS.items():
            found = [tuple(r) for r in c.execute(
                "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (table,))]
            assert found == columns, table
        assert one(c, "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'new_reports'::regclass "
                      "AND adnum = (SELECT attnum FROM pg_attribute WHERE attrelid = 'new_reports'::regclass "
                      "AND attname = 'kafka_offset')") == "0"
        assert "nextval" in one(c, "SELECT column_default FROM information_schema.columns "
                                   "WHERE table_name = 'read_errors' AND column_name = 'error_id'")
        constraints = {(r[0], r[1], r[2]) for r in c.execute(
            "SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace")}
        assert {(t, d) for t, kind, d in constraints if kind == "p"} == set(SPEC_PRIMARY_KEYS.items())
        assert {(t, d) for t, kind, d in constraints if kind == "f"} == SPEC_FOREIGN_KEYS
        assert {(t, d) for t, kind, d in constraints if kind == "u"} == SPEC_UNIQUE
        indexes = {r[0]: (r[1], r[2]) for r in c.execute(
            "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'")}
        for name, (table, columns) in SPEC_INDEXES.items():
            assert name in indexes, name
            assert indexes[name][0] == table, name
            assert indexes[name][1].endswith(f"USING btree {columns}"), indexes[name]
        assert [tuple(r) for r in c.execute("SELECT id, value, frequency, comment FROM notification_types "
                                            "ORDER BY id")] == [
            (1, "instant", "* * * * * *", "instant notifications performed ASAP"),
            (2, "weekly", "@weekly", "weekly summary")]
        assert [tuple(r) for r in c.execute("SELECT id, value, comment FROM states ORDER BY id")] == [
            (1, "sent", "notification has been sent to user"),
            (2, "same", "skipped, report is the same as previous one"),
            (3, "lower", "skipped, all issues has low priority"),
            (4, "error", "notification delivery error")]
        assert [tuple(r) for r in c.execute("SELECT id, name, metainfo FROM event_targets ORDER BY id")] == \
            EVENT_TARGET_ROWS
        assert one(c, "SELECT count(*) FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r' "
                      "AND obj_description(oid, 'pg_class') IS NOT NULL", sorted(OUR_TABLES)) == 7


def test_migrated_database_fixture_matches_the_documented_sequence(migrated_database):
    assert version(migrated_database) == LATEST_VERSION
    assert state(migrated_database) == expected_state(LATEST_VERSION)
