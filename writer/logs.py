"""Logging: one JSON object per line in production, readable lines when [logging] debug is on."""

from __future__ import annotations

import datetime
import logging
import sys
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from writer.config import Config

_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class ReadableFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRIBUTES and not k.startswith("_")}
        if extras:
            text += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return text


# librdkafka's own log lines (connection failures repeat every few seconds during an outage) go
# through this logger: they are kept out of Sentry, which would make an event of each.
LIBRDKAFKA_LOGGER = "librdkafka"


def configure(debug: bool, level: str, use_stderr: bool = True) -> None:
    """Console logging. ``debug`` selects readable lines instead of JSON (not a level, as in the original)."""
    level = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(level.upper(), level.upper()) or "INFO"
    handler = logging.StreamHandler(sys.stderr if use_stderr else sys.stdout)
    handler.setFormatter(ReadableFormatter() if debug else JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def setup(config: Config, announce: bool = True) -> None:
    """Everything logging-related a process needs: console, then Sentry and CloudWatch when switched on.

    Raises ConfigError (one line) when a switched-on destination cannot be set up.
    """
    settings = config.logging
    configure(settings.debug, settings.log_level, settings.use_stderr)
    if sentry_enabled(config):
        configure_sentry(config.sentry.dsn, config.sentry.environment)
    if settings.logging_to_cloud_watch_enabled:
        from writer import cloudwatch

        cloudwatch.attach(config)
    # After every destination is attached, so these lines are shipped too.
    if config.ignored and announce:
        logging.getLogger("writer.config").warning(
            "ignoring unknown configuration keys: %s", ", ".join(config.ignored))
    if announce:
        for text in config.warnings:
            logging.getLogger("writer.config").warning("%s", text)


def sentry_enabled(config: Config) -> bool:
    """As the original: Sentry only when logging_to_sentry_enabled is true and a DSN is set."""
    return bool(config.logging.logging_to_sentry_enabled and config.sentry.dsn)


# What sentry-sdk may collect on its own, as one ``data_collection`` option: 2.75 introduced it
# (superseding send_default_pii and include_local_variables) and 3.0 removed those two, so this one
# setting keeps the same privacy under both majors. Nothing personal, no request data, and no local
# variables: a frame's locals would carry the configuration and connection strings into every event.
SENTRY_DATA_COLLECTION: Any = {
    "user_info": False,
    "cookies": {"mode": "off"},
    "http_headers": {"request": {"mode": "off"}},
    "http_bodies": [],
    "url_query_params": {"mode": "off"},
    "graphql": {"document": False, "variables": False},
    "gen_ai": {"inputs": False, "outputs": False},
    "database_query_data": False,
    "queues": False,
    "stack_frame_variables": False,
}


def configure_sentry(dsn: str, environment: str) -> None:
    if not dsn:
        return
    import sentry_sdk
    from sentry_sdk.integrations import logging as sentry_logging

    from writer.config import ConfigError

    try:
        sentry_sdk.init(dsn=dsn, environment=environment or None, data_collection=SENTRY_DATA_COLLECTION,
                        integrations=[sentry_logging.LoggingIntegration(**_logging_integration_options())])
    except sentry_sdk.utils.BadDsn:
        raise ConfigError("[sentry] dsn is not a valid Sentry DSN (value not shown)") from None
    # 3.x split the ignore list: ignore_logger now silences only Sentry Logs, the new
    # ignore_logger_for_events silences events and breadcrumbs (which ignore_logger did in 2.x).
    ignore_events = getattr(sentry_logging, "ignore_logger_for_events", sentry_logging.ignore_logger)
    ignore_events(LIBRDKAFKA_LOGGER + "*")
    sentry_logging.ignore_logger(LIBRDKAFKA_LOGGER + "*")


def _logging_integration_options() -> dict[str, Any]:
    """ERROR lines become events under both sentry-sdk majors, as the original's error hook did.

    3.x stopped making events of log lines unless ``event_level`` is given, and its ``level`` now
    ships every line at or above it as a Sentry Log: that stays off (it would send the whole INFO log).
    """
    import sentry_sdk

    if int(sentry_sdk.VERSION.split(".")[0]) >= 3:
        return {"event_level": logging.ERROR, "breadcrumb_level": logging.INFO, "level": None}
    return {"event_level": logging.ERROR, "level": logging.INFO}
