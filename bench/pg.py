"""Where the benchmark writes: a PostgreSQL server it creates databases on, or (``--schema-only``)
one database it creates schemas in. Either way the benchmark's tables are its own: a fresh
database or schema per run, dropped afterwards; the service's tables are never touched.

The writer is pointed at a schema through ``pg_params``: ``options=-csearch_path=<schema>``
(its SQL names tables unqualified, so they resolve in that schema only).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench import procfs
from writer.config import ENV_PREFIX as ENV
from writer.testing.postgres import create_database, drop_database, find_or_start_postgres


class TargetError(Exception):
    """The PostgreSQL the user named cannot be used (one line for the operator)."""


def merge_params(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """``base`` with ``extra`` on top, except ``options``: the user's are kept and ``extra``'s appended."""
    merged = {**base, **extra}
    if base.get("options") and extra.get("options"):
        merged["options"] = f"{base['options']} {extra['options']}"
    return merged


@dataclass
class PgTarget:
    params: dict[str, str]  # libpq parameters without dbname (host, port, user, sslmode, ...)
    dbname: str  # where to connect to create databases, or the database the schemas go into
    schema_only: bool
    embedded: object | None = None
    workdir: str | None = None  # the embedded server's data lives here; removed by cleanup()

    @classmethod
    def from_conninfo(cls, conninfo: str, schema_only: bool) -> PgTarget:
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as error:
            raise TargetError(f"--postgres is not a valid conninfo or URI: {str(error).splitlines()[0]}") from None
        try:
            with psycopg.connect(conninfo, connect_timeout=10) as connection:
                info = connection.info
                dbname = info.dbname
                # Pin what libpq resolved from defaults and PG* variables, so every client agrees.
                params.update(host=info.host, port=str(info.port), user=info.user)
        except psycopg.Error as error:
            raise TargetError(f"cannot connect to --postgres: {str(error).strip().splitlines()[0]}") from None
        params.pop("dbname", None)
        return cls({k: str(v) for k, v in params.items()}, dbname, schema_only)

    @classmethod
    def local(cls, schema_only: bool) -> PgTarget:
        workdir = tempfile.mkdtemp(prefix="ccxw-bench-")
        try:
            server, embedded = find_or_start_postgres(workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return cls({"host": server.host, "port": str(server.port), "user": server.user}, "postgres", schema_only,
                   embedded, workdir)

    def conninfo(self, dbname: str | None = None, **extra: str) -> str:
        return make_conninfo(**merge_params(self.params, {"dbname": dbname or self.dbname, **extra}))

    @property
    def local_host(self) -> bool:
        return procfs.is_local_host(self.params.get("host", ""))

    def describe(self) -> str:
        where = f"{self.params.get('user')}@{self.params.get('host')}:{self.params.get('port')}"
        if self.schema_only:
            return f"{where}/{self.dbname}, a schema of its own per run"
        return f"{where}, a database of its own per run"

    def version(self) -> str:
        with psycopg.connect(self.conninfo(), autocommit=True) as connection:
            return connection.execute("SHOW server_version").fetchone()[0]

    def new_store(self, label: str) -> Store:
        if not self.schema_only:
            return Store(self, create_database(self.conninfo(), f"ccxw_bench_{label}_"), None)
        name = f"ccxw_bench_{label}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.conninfo(), autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{name}"')
        return Store(self, self.dbname, name)

    def cleanup(self) -> None:
        if self.embedded is not None:
            self.embedded.cleanup()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class Store:
    """One run's tables: a database of its own, or a schema of its own in the user's database."""

    target: PgTarget
    database: str
    schema: str | None

    @property
    def name(self) -> str:
        return f"{self.database}.{self.schema}" if self.schema else self.database

    def session_params(self, application_name: str) -> dict[str, str]:
        params = {"application_name": application_name}
        if self.schema:
            params["options"] = f"-csearch_path={self.schema}"
        return params

    def conninfo(self, application_name: str = "ccxw-bench") -> str:
        return self.target.conninfo(self.database, **self.session_params(application_name))

    def env(self, application_name: str) -> dict[str, str]:
        """The writer's [storage] configuration for this store, through environment variables."""
        params = dict(self.target.params)
        env = {
            ENV + "STORAGE__PG_HOST": params.pop("host", ""),
            ENV + "STORAGE__PG_PORT": params.pop("port", "5432"),
            ENV + "STORAGE__PG_USERNAME": params.pop("user", ""),
            ENV + "STORAGE__PG_DB_NAME": self.database,
        }
        password = params.pop("password", None)
        if password:
            env[ENV + "STORAGE__PG_PASSWORD"] = password
        env[ENV + "STORAGE__PG_PARAMS"] = make_conninfo(**merge_params(params, self.session_params(application_name)))
        return env

    def drop(self) -> None:
        if not self.schema:
            drop_database(self.target.conninfo(), self.database)
            return
        with psycopg.connect(self.target.conninfo(self.database), autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
