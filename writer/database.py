"""Connecting to PostgreSQL: conninfo from the configuration, one helper for every command."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from writer.config import Config, parse_pg_params

log = logging.getLogger(__name__)


def conninfo(config: Config) -> str:
    """The libpq connection string for [storage]; pg_params may use spaces or '&' between pairs."""
    storage = config.storage
    params = parse_pg_params(storage.pg_params)
    kwargs: dict[str, Any] = {
        "host": storage.pg_host,
        "port": storage.pg_port,
        "dbname": storage.pg_db_name,
        "user": storage.pg_username,
        "connect_timeout": storage.connect_timeout or None,
        "application_name": "ccx-notification-writer",
    }
    if storage.pg_password:
        kwargs["password"] = storage.pg_password
    kwargs.update(_DEAD_PEER_DETECTION)
    kwargs.update(params)
    # Reports are UTF-8 JSON: any other client encoding (PGCLIENTENCODING, pg_params) would make the
    # server re-encode them, silently. Not overridable.
    kwargs["client_encoding"] = "UTF8"
    return make_conninfo(**{k: v for k, v in kwargs.items() if v is not None})


# A peer that vanished without a RST (failover, network partition) is noticed within about a minute
# instead of the kernel's ~15 min to 2 h: keepalives while waiting for an answer, tcp_user_timeout while
# sent data stays unacknowledged. pg_params may override them. (A peer that acknowledges but never
# answers is the write watchdog's job, writer.watchdog.)
_DEAD_PEER_DETECTION = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60000,
}


def describe(config: Config) -> str:
    """Where we connect, for messages: never includes the password."""
    storage = config.storage
    return f"{storage.pg_username}@{storage.pg_host}:{storage.pg_port}/{storage.pg_db_name}"


def connect(config: Config, autocommit: bool = False) -> psycopg.Connection:
    connection = psycopg.connect(conninfo(config), autocommit=autocommit)
    if config.storage.log_sql_queries:
        connection.add_notice_handler(lambda notice: log.info("postgres notice: %s", notice.message_primary))
    return connection


def safe_error_text(error: BaseException) -> str:
    """First line of a database error: libpq never puts the password in it, psycopg never the DSN."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
