"""schema.sql must describe exactly the database that --db-init-migration, --db-init and --migrate latest build."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from writer import migrations
from writer.schema import LATEST_VERSION

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.sql"
AUTO_CONSTRAINT_NAME = re.compile(r"_(pkey|key|fkey|check|excl)\d*$")


def load_schema_file(database) -> None:
    """Load schema.sql the documented way (psql, one transaction, stop on error), or with psycopg."""
    if shutil.which("psql"):
        subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(SCHEMA_FILE), database.conninfo],
            check=True, capture_output=True, text=True, timeout=60,
        )
    else:  # pragma: no cover - psql is normally installed next to the server
        with database.connect(autocommit=False) as connection:
            connection.execute(SCHEMA_FILE.read_text())


def build_with_cli(database, cli) -> None:
    for args in (["--db-init-migration"], ["--db-init"], ["--migrate", "latest"]):
        result = cli(*args, env=database.env())
        assert result.returncode == 0, (args, result.stderr)


def rows(connection, query: str, *params) -> list[tuple]:
    return [tuple(r) for r in connection.execute(query, params).fetchall()]


def catalog(database) -> dict:
    """Everything about the public schema that matters, in comparable form."""
    with database.connect() as c:
        tables = rows(c, "SELECT relname, obj_description(oid, 'pg_class') FROM pg_class "
                         "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v', 'm') "
                         "ORDER BY relname")
        columns = rows(c, """
            SELECT cl.relname, row_number() OVER (PARTITION BY cl.relname ORDER BY a.attnum), a.attname,
                   format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
                   col_description(cl.oid, a.attnum)
            FROM pg_attribute a
            JOIN pg_class cl ON cl.oid = a.attrelid
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE cl.relnamespace = 'public'::regnamespace AND cl.relkind = 'r'
              AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY cl.relname, a.attnum""")
        constraints = rows(c, """
            SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid), conname,
                   condeferrable, condeferred, confupdtype, confdeltype, confmatchtype
            FROM pg_constraint WHERE connamespace = 'public'::regnamespace
            ORDER BY 1, 2, 3""")
        indexes = rows(c, """
            SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text, pg_get_indexdef(i.indexrelid),
                   EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
            FROM pg_index i JOIN pg_class cl ON cl.oid = i.indexrelid
            WHERE cl.relnamespace = 'public'::regnamespace
            ORDER BY 1""")
        sequences = rows(c, """
            SELECT s.sequencename, s.data_type::text, s.start_value, s.increment_by, s.min_value, s.max_value,
                   s.cycle, dep.refobjid::regclass::text, a.attname
            FROM pg_sequences s
            LEFT JOIN pg_depend dep ON dep.objid = format('%%I.%%I', s.schemaname, s.sequencename)::regclass
                 AND dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
                 AND dep.deptype IN ('a', 'i')
            LEFT JOIN pg_attribute a ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
            WHERE s.schemaname = 'public' ORDER BY 1""")
        others = rows(c, """
            SELECT 'view', viewname FROM pg_views WHERE schemaname = 'public'
            UNION ALL SELECT 'function', proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
            UNION ALL SELECT 'trigger', tgname FROM pg_trigger t JOIN pg_class cl ON cl.oid = t.tgrelid
                      WHERE cl.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
            UNION ALL SELECT 'type', typname FROM pg_type WHERE typnamespace = 'public'::regnamespace
                      AND typtype IN ('d', 'e', 'r', 'm')
            ORDER BY 1, 2""")
        data = {
            "notification_types": rows(c, "SELECT * FROM notification_types ORDER BY id"),
            "states": rows(c, "SELECT * FROM states ORDER BY id"),
            "event_targets": rows(c, "SELECT * FROM event_targets ORDER BY id"),
            "migration_info": rows(c, "SELECT * FROM migration_info"),
            "new_reports": rows(c, "SELECT count(*) FROM new_reports"),
            "reported": rows(c, "SELECT count(*) FROM reported"),
            "read_errors": rows(c, "SELECT count(*) FROM read_errors"),
        }
    return {"tables": tables, "columns": columns, "constraints": constraints, "indexes": indexes,
            "sequences": sequences, "others": others, "data": data}


def normalized(snapshot: dict) -> dict:
    """Names PostgreSQL generates itself (…_pkey, …_key, …_fkey) may differ; explicit names may not.

    Constraints are then compared by table, kind and definition (pg_get_constraintdef); the indexes
    behind constraints by table and definition with the index name taken out.
    """
    result = dict(snapshot)
    result["constraints"] = sorted(
        (table, kind, definition, "<generated>" if AUTO_CONSTRAINT_NAME.search(name) else name, *flags)
        for table, kind, definition, name, *flags in snapshot["constraints"]
    )
    result["indexes"] = sorted(
        ("<generated>", table, definition.replace(f"INDEX {name} ON", "INDEX <generated> ON"), True)
        if backs_constraint and AUTO_CONSTRAINT_NAME.search(name) else (name, table, definition, backs_constraint)
        for name, table, definition, backs_constraint in snapshot["indexes"]
    )
    return result


@pytest.fixture
def file_database(postgres_server, database):
    """A second fresh database (next to the ``database`` fixture's), for schema.sql."""
    second = type(database)(postgres_server, f"ccxw_test_{uuid.uuid4().hex[:12]}")
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{second.name}"')
    yield second
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{second.name}" WITH (FORCE)')


def test_schema_file_declares_the_latest_version():
    text = SCHEMA_FILE.read_text()
    assert re.search(r"INSERT INTO migration_info \(version\) VALUES \((\d+)\)", text).group(1) == str(LATEST_VERSION)


def test_schema_file_equals_the_migrated_schema(file_database, database, cli):
    load_schema_file(file_database)
    build_with_cli(database, cli)
    from_file, from_cli = catalog(file_database), catalog(database)
    # sanity: the comparison looks at real content
    assert len(from_cli["tables"]) == 7
    assert len(from_cli["columns"]) == 4 + 3 + 10 + 6 + 1 + 3 + 6
    assert len(from_cli["indexes"]) >= 10
    assert from_cli["data"]["migration_info"] == [(LATEST_VERSION,)]
    a, b = normalized(from_file), normalized(from_cli)
    for part in a:
        assert a[part] == b[part], part


def test_constraint_and_index_names_match_too(file_database, database, cli):
    """Down-migrations drop constraints by name, so even the names must agree."""
    load_schema_file(file_database)
    build_with_cli(database, cli)
    from_file, from_cli = catalog(file_database), catalog(database)
    assert sorted(r[3] for r in from_file["constraints"]) == sorted(r[3] for r in from_cli["constraints"])
    assert [r[:3] for r in from_file["indexes"]] == [r[:3] for r in from_cli["indexes"]]


def test_a_schema_file_database_migrates_down_and_up_again(file_database, database, cli):
    """A database set up from schema.sql is a normal citizen: the command line can migrate it both ways."""
    load_schema_file(file_database)
    build_with_cli(database, cli)
    result = cli("--migration-info", env=file_database.env())
    assert result.returncode == 0 and f"current version: {LATEST_VERSION}" in result.stdout
    assert cli("--db-init", env=file_database.env()).returncode == 0
    with file_database.connect() as connection:
        assert migrations.migrate(connection, 0, report=lambda _line: None) == 0
        assert migrations.migrate(connection, LATEST_VERSION, report=lambda _line: None) == LATEST_VERSION
    assert normalized(catalog(file_database)) == normalized(catalog(database))


def test_comparison_detects_a_difference(file_database, database, cli):
    """The comparison is not vacuous: a dropped index or a changed comment is noticed."""
    load_schema_file(file_database)
    build_with_cli(database, cli)
    with file_database.connect() as connection:
        connection.execute("DROP INDEX idx_reported_updated_at")
        connection.execute("COMMENT ON TABLE states IS 'different'")
    a, b = normalized(catalog(file_database)), normalized(catalog(database))
    assert a["indexes"] != b["indexes"]
    assert a["tables"] != b["tables"]
