"""Fixtures: the PostgreSQL server (the local one, else embedded), an empty database per test, and a migrated
one per test (a copy of one template per session, migrated through the command line)."""

from __future__ import annotations

import pytest

from tests.harness.database import clone_database, create_database, drop_database, set_up_schema
from writer.schema import LATEST_VERSION
from writer.testing.postgres import find_or_start_postgres


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    server, embedded = find_or_start_postgres(str(tmp_path_factory.mktemp("postgres")))
    yield server
    if embedded is not None:
        embedded.cleanup()


@pytest.fixture
def database(postgres_server):
    """An empty database of its own for each test, dropped afterwards."""
    database = create_database(postgres_server)
    yield database
    drop_database(database)


@pytest.fixture(scope="session")
def migrated_template(postgres_server):
    """One database at the latest schema version, set up through the command line; never connected to
    after that, so that it can be copied."""
    template = create_database(postgres_server)
    try:
        set_up_schema(template)
        yield template
    finally:
        drop_database(template)


@pytest.fixture
def migrated_database(migrated_template):
    """A database of its own at the latest schema version (a copy of the template), dropped afterwards."""
    database = clone_database(migrated_template)
    with database.connect() as connection:
        assert connection.execute("SELECT version FROM migration_info").fetchone() == (LATEST_VERSION,)
    yield database
    drop_database(database)
