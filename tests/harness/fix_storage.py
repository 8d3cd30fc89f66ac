"""Fixtures: a BatchWriter on a migrated database of the test's own, and a database that refuses some rows."""

from __future__ import annotations

import pytest

from tests.harness.database import APPLICATION_NAME
from tests.harness.storage import REFUSE_ORG_666
from writer.storage import BatchWriter


@pytest.fixture
def writer_conninfo(migrated_database) -> str:
    """The migrated database's conninfo, under the service's application_name."""
    return f"{migrated_database.conninfo} application_name={APPLICATION_NAME}"


@pytest.fixture
def writer(writer_conninfo):
    writer = BatchWriter(writer_conninfo)
    yield writer
    writer.close()


@pytest.fixture
def refusing_database(migrated_database):
    """The migrated database, refusing the rows of organization 666 (a trigger)."""
    with migrated_database.connect() as connection:
        connection.execute(REFUSE_ORG_666)
    return migrated_database
