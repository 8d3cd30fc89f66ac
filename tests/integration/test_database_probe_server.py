"""The database probe against the real PostgreSQL: its statement timeout, and the TEMPORARY privilege it needs
(how it reads refusals, and its thread: tests/unit/test_database_probe.py)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from writer.database_probe import NOT_WRITABLE, OK, probe_conninfo, probe_once


def test_a_probe_query_cannot_hang(migrated_database):
    with psycopg.connect(probe_conninfo(migrated_database.conninfo), autocommit=True) as connection:
        assert connection.execute("SHOW statement_timeout").fetchone()[0] == "5s"
        with pytest.raises(psycopg.errors.QueryCanceled):
            connection.execute("SELECT pg_sleep(60)")


@pytest.fixture
def probe_role(postgres_server, migrated_database):
    name = f"ccxw_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as connection:
        connection.execute(f'CREATE ROLE "{name}" LOGIN')
    with migrated_database.connect() as connection:
        connection.execute(f'GRANT INSERT ON new_reports TO "{name}"')
    yield name
    with migrated_database.connect() as connection:
        connection.execute(f'REVOKE ALL ON new_reports FROM "{name}"')
        connection.execute(f'GRANT TEMPORARY ON DATABASE "{migrated_database.name}" TO PUBLIC')
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as connection:
        connection.execute(f'DROP ROLE IF EXISTS "{name}"')


def test_probe_requires_the_temporary_privilege(postgres_server, migrated_database, probe_role):
    conninfo = (f"host={postgres_server.host} port={postgres_server.port} user={probe_role} "
                f"dbname={migrated_database.name}")
    assert probe_once(conninfo) == (OK, "")
    with migrated_database.connect() as connection:
        connection.execute(f'REVOKE TEMPORARY ON DATABASE "{migrated_database.name}" FROM PUBLIC')
    state, detail = probe_once(conninfo)
    assert (state, "TEMPORARY" in detail) == (NOT_WRITABLE, True)
