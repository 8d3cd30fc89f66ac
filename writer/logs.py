"""Logging: one JSON object per line in production, readable lines when [logging] debug is on."""

from __future__ import annotations

import datetime
import logging
import sys

import orjson

_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
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


def configure(debug: bool, level: str) -> None:
    level = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(level.upper(), level.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ReadableFormatter() if debug else JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel("DEBUG" if debug else level)


def configure_sentry(dsn: str, environment: str) -> None:
    if not dsn:
        return
    import sentry_sdk

    from writer.config import ConfigError

    try:
        sentry_sdk.init(dsn=dsn, environment=environment or None, send_default_pii=False)
    except sentry_sdk.utils.BadDsn:
        raise ConfigError("[sentry] dsn is not a valid Sentry DSN (value not shown)") from None
