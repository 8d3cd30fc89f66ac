"""Shared fixtures: a real PostgreSQL (local server, else embedded), the Kafka mock (or a real
broker from KAFKA_BOOTSTRAP_SERVERS), a fresh database per test and the console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from writer.testing import postgres
from writer.testing.postgres import PostgresServer, find_or_start_postgres

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Database:
    server: PostgresServer
    name: str

    @property
    def conninfo(self) -> str:
        return self.server.conninfo(self.name)

    def connect(self, autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(self.conninfo, autocommit=autocommit)

    def env(self) -> dict[str, str]:
        """Configuration of the service for this database, through environment variables only."""
        return {
            "CCX_NOTIFICATION_WRITER__STORAGE__PG_HOST": self.server.host,
            "CCX_NOTIFICATION_WRITER__STORAGE__PG_PORT": str(self.server.port),
            "CCX_NOTIFICATION_WRITER__STORAGE__PG_USERNAME": self.server.user,
            "CCX_NOTIFICATION_WRITER__STORAGE__PG_DB_NAME": self.name,
        }


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    server, embedded = find_or_start_postgres(str(tmp_path_factory.mktemp("postgres")))
    yield server
    if embedded is not None:
        embedded.cleanup()


def create_database(server: PostgresServer) -> Database:
    return Database(server, postgres.create_database(server.conninfo()))


def drop_database(database: Database) -> None:
    postgres.drop_database(database.server.conninfo(), database.name)


@pytest.fixture
def database(postgres_server):
    """An empty database of its own for each test, dropped afterwards."""
    database = create_database(postgres_server)
    yield database
    drop_database(database)


@pytest.fixture
def migrated_database(database, cli):
    """A database at the latest schema version, set up through the command line."""
    for args in (["--db-init-migration"], ["--db-init"], ["--migrate", "latest"]):
        result = cli(*args, env=database.env())
        assert result.returncode == 0, result.stderr
    return database


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """A real broker when KAFKA_BOOTSTRAP_SERVERS is set, else librdkafka's mock cluster."""
    real = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if real:
        yield real
        return
    from writer.kafka_mock import MockKafka

    with MockKafka() as kafka:
        yield kafka.bootstrap_servers


@pytest.fixture
def topic():
    """A topic name of this test's own, so tests sharing the broker never see each other's messages."""
    return f"ccx.ocp.results.{uuid.uuid4().hex[:10]}"


def console_script() -> str:
    candidate = Path(sys.executable).parent / "ccx-notification-writer"
    return str(candidate) if candidate.exists() else shutil.which("ccx-notification-writer")


@pytest.fixture
def cli(tmp_path):
    """Run the real console script as a subprocess, in an empty working directory."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: str | None = None):
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith("CCX_NOTIFICATION_WRITER") and k != "ACG_CONFIG"}
        clean.update(env or {})
        return subprocess.run(
            [console_script(), *args], env=clean, cwd=cwd or str(tmp_path),
            capture_output=True, text=True, timeout=timeout,
        )

    return run
