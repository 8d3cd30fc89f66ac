"""PostgreSQL in tests: a database of a test's own, what it holds, the service's connections to it."""

from __future__ import annotations

import collections
import contextlib
import tempfile
import threading
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from tests.harness.service import run_cli
from writer.testing import postgres
from writer.testing.postgres import PostgresServer

APPLICATION_NAME = "ccx-notification-writer"  # the application_name of every connection the service opens
SCHEMA_SETUP = (["--db-init-migration"], ["--db-init"], ["--migrate", "latest"])  # the operators' commands

Key = tuple  # (org_id, cluster, updated_at naive UTC): the primary key of new_reports


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


def create_database(server: PostgresServer) -> Database:
    """An empty database with a fresh name."""
    return Database(server, postgres.create_database(server.conninfo()))


def clone_database(template: Database) -> Database:
    """A copy of ``template`` (nobody may be connected to it) under a fresh name: much faster than migrating."""
    clone = Database(template.server, postgres.fresh_name())
    with psycopg.connect(template.server.conninfo(), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(clone.name), sql.Identifier(template.name)))
    return clone


def drop_database(database: Database) -> None:
    postgres.drop_database(database.server.conninfo(), database.name)


def set_up_schema(database: Database) -> None:
    """The latest schema, set up through the command line as operators do."""
    with tempfile.TemporaryDirectory() as workdir:
        for args in SCHEMA_SETUP:
            result = run_cli(*args, env=database.env(), cwd=workdir)
            assert result.returncode == 0, (args, result.stderr)


def execute(database: Database, statement: str) -> None:
    with database.connect() as connection:
        connection.execute(statement)


def execute_on_server(database: Database, statement: str) -> None:
    """From the server's maintenance database (the test database's own sessions may be read-only)."""
    with psycopg.connect(database.server.conninfo(), autocommit=True) as connection:
        connection.execute(statement)


# ---- what the database holds ----------------------------------------------------------------------------


def row_count(database: Database) -> int:
    with database.connect() as connection:
        return connection.execute("SELECT count(*) FROM new_reports").fetchone()[0]


def stored_keys(database: Database) -> collections.Counter[Key]:
    """How many times each primary key of new_reports is stored (always once, unless something is wrong)."""
    with database.connect() as connection:
        rows = connection.execute("SELECT org_id, cluster, updated_at FROM new_reports").fetchall()
    return collections.Counter((org, cluster, when) for org, cluster, when in rows)


# ---- deliveries: every row a committed write inserted or skipped ----------------------------------------------

# A test-only trigger, fired last (triggers fire by name): a BEFORE INSERT row trigger sees every row a write proposes,
# the ones ON CONFLICT DO NOTHING then skips as duplicates included, and what it notes is rolled back with the write
# (a retried or split batch, the canary) exactly as the rows are. So each key counts the writes that carried it.
COUNT_DELIVERIES = """
CREATE UNLOGGED TABLE test_deliveries AS SELECT org_id, cluster, updated_at FROM new_reports WITH NO DATA;
CREATE FUNCTION test_count_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test_deliveries VALUES (NEW.org_id, NEW.cluster, NEW.updated_at);
    RETURN NEW;
END $$;
CREATE TRIGGER zz_test_count_delivery BEFORE INSERT ON new_reports FOR EACH ROW
    EXECUTE FUNCTION test_count_delivery();
"""


def count_deliveries(database: Database) -> None:
    """From now on, note every row a committed write of new_reports inserts or skips (``delivered_keys``)."""
    execute(database, COUNT_DELIVERIES)


def delivered_keys(database: Database) -> collections.Counter[Key]:
    """How many committed writes carried each primary key: more than once means written again after it was
    stored (a redelivered message, skipped as a duplicate)."""
    with database.connect() as connection:
        rows = connection.execute("SELECT org_id, cluster, updated_at FROM test_deliveries").fetchall()
    return collections.Counter((org, cluster, when) for org, cluster, when in rows)


# ---- the service's connections ----------------------------------------------------------------------------


def writer_backends(database: Database) -> list[int]:
    """The backend pids of the service's connections to this database (never another test's)."""
    with database.connect() as connection:
        return [pid for (pid,) in connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s"
            " AND pid <> pg_backend_pid()", (database.name, APPLICATION_NAME),
        )]


def terminate_writer_backends(database: Database, wait_ms: int = 30_000) -> int:
    """pg_terminate_backend on the service's connections to this database, waiting up to ``wait_ms`` for each
    to be gone; returns how many were terminated (a backend that ended by itself meanwhile is not counted)."""
    with database.connect() as connection:
        return connection.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, %s)) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
            (wait_ms, database.name, APPLICATION_NAME),
        ).fetchone()[0]


# ---- progress, sampled ------------------------------------------------------------------------------------------


class RowMonitor:
    """Samples count(*) of new_reports in the background: (monotonic time, rows)."""

    def __init__(self, database: Database, interval: float = 0.1) -> None:
        self.database = database
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        connection = None
        while not self._stop.is_set():
            try:
                if connection is None or connection.closed:
                    connection = self.database.connect()
                count = connection.execute("SELECT count(*) FROM new_reports").fetchone()[0]
                self.samples.append((time.monotonic(), count))
            except Exception:  # noqa: BLE001 - the database may be down on purpose
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.close()
                connection = None
            self._stop.wait(self.interval)
        if connection is not None:
            connection.close()

    @property
    def rows(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def wait_rows(self, at_least: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.rows < at_least:
            assert time.monotonic() < deadline, f"rows stayed at {self.rows}, expected at least {at_least}"
            time.sleep(0.05)

    def progress_after(self, moment: float | None) -> float | None:
        """Seconds from ``moment`` until the row count first grew beyond its value at ``moment``."""
        if moment is None:
            return None
        before = [c for t, c in self.samples if t <= moment]
        base = before[-1] if before else 0
        for t, c in self.samples:
            if t > moment and c > base:
                return round(t - moment, 2)
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
