"""Configuration: defaults < TOML file < environment < Clowder (ACG_CONFIG).

Every key, its type and its default is declared once in ``SCHEMA``; the file,
the environment overrides and ``--show-configuration`` are all driven by it,
so a key cannot exist in one place and be missing in another.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from typing import Any

DEFAULT_CONFIG_FILE = "config.toml"
CONFIG_FILE_VARIABLE = "CCX_NOTIFICATION_WRITER_CONFIG_FILE"
ENV_PREFIX = "CCX_NOTIFICATION_WRITER__"


class ConfigError(Exception):
    """A configuration problem; the message is one line meant for the operator."""


# section -> key -> default. The default's type is the key's type.
SCHEMA: dict[str, dict[str, Any]] = {
    "broker": {
        "addresses": "localhost:9092",
        "security_protocol": "",
        "cert_path": "",
        "sasl_mechanism": "",
        "sasl_username": "",
        "sasl_password": "",
        "topic": "ccx.ocp.results",
        "group": "ccx_notification_writer",
        "enabled": True,
        # Added by this project:
        "auto_offset_reset": "earliest",
        "dead_letter_topic": "",
        "session_timeout_ms": 45000,
        "max_poll_interval_ms": 300000,
    },
    "storage": {
        "db_driver": "postgres",
        "pg_username": "postgres",
        "pg_password": "",
        "pg_host": "localhost",
        "pg_port": 5432,
        "pg_db_name": "notification",
        "pg_params": "",
        "log_sql_queries": False,
        # Added by this project:
        "connect_timeout": 10,
        "retry_max_seconds": 0,
        "write_timeout_s": 30,
    },
    "logging": {
        "debug": False,
        "log_level": "INFO",
    },
    "sentry": {
        "dsn": "",
        "environment": "",
    },
    "cloudwatch": {
        "aws_access_id": "",
        "aws_secret_key": "",
        "aws_session_token": "",
        "aws_region": "",
        "log_group": "",
        "stream_name": "",
        "debug": False,
    },
    "metrics": {
        "namespace": "ccx_notification_writer",
        "address": ":8080",
    },
    "tracker": {
        "topic": "",
        "service_name": "ccx-notification-writer",
        "auto_create_topic": True,
    },
    # Section added by this project for its batch design.
    "processing": {
        "workers": 0,
        "batch_size": 1000,
        "batch_timeout_ms": 200,
        "max_restarts": 5,
        "restart_window_s": 60,
        "shutdown_timeout_s": 20,
    },
}

SECRET_KEYS = {
    ("broker", "sasl_password"),
    ("storage", "pg_password"),
    ("sentry", "dsn"),
    ("cloudwatch", "aws_access_id"),
    ("cloudwatch", "aws_secret_key"),
    ("cloudwatch", "aws_session_token"),
}

CHOICES: dict[tuple[str, str], set[str]] = {
    ("broker", "security_protocol"): {"", "PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"},
    ("broker", "sasl_mechanism"): {"", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"},
    ("broker", "auto_offset_reset"): {"earliest", "latest", "error"},
    ("storage", "db_driver"): {"postgres"},
    ("logging", "log_level"): {"DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"},
}

NON_NEGATIVE = {
    ("storage", "pg_port"), ("storage", "connect_timeout"), ("storage", "retry_max_seconds"),
    ("processing", "workers"), ("processing", "max_restarts"),
    ("processing", "restart_window_s"), ("processing", "shutdown_timeout_s"),
    ("storage", "write_timeout_s"),
}
POSITIVE = {
    ("processing", "batch_size"), ("processing", "batch_timeout_ms"),
    ("broker", "session_timeout_ms"), ("broker", "max_poll_interval_ms"),
}


@dataclasses.dataclass
class Config:
    """The effective configuration: ``values[section][key]``, typed as in SCHEMA."""

    values: dict[str, dict[str, Any]]
    source_file: str | None = None

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.values[section]

    def redacted(self) -> dict[str, dict[str, Any]]:
        """The configuration with every secret replaced, for printing and logs."""
        shown = {s: dict(keys) for s, keys in self.values.items()}
        for section, key in SECRET_KEYS:
            if shown[section][key]:
                shown[section][key] = "<set, not shown>"
        return shown

    @property
    def worker_count(self) -> int:
        return self.values["processing"]["workers"] or (os.cpu_count() or 1)


def _coerce(section: str, key: str, value: Any, origin: str) -> Any:
    """Check/convert one value to the type of its default; origin names where it came from."""
    try:
        return _coerce_value(section, key, value, origin)
    except ConfigError:
        if (section, key) in SECRET_KEYS:  # never echo a (mistyped) secret into the error line
            raise ConfigError(f"{origin}: expected a string (value not shown)") from None
        raise


def _coerce_value(section: str, key: str, value: Any, origin: str) -> Any:
    default = SCHEMA[section][key]
    where = f"{origin}: "
    if isinstance(default, bool):
        if isinstance(value, bool):
            result: Any = value
        elif isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on"}:
            result = True
        elif isinstance(value, str) and value.strip().lower() in {"false", "0", "no", "off"}:
            result = False
        else:
            raise ConfigError(f"{where}expected a boolean (true/false), got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool):
            raise ConfigError(f"{where}expected an integer, got {value!r}")
        if isinstance(value, int):
            result = value
        elif isinstance(value, str):
            try:
                result = int(value.strip(), 10)
            except ValueError:
                raise ConfigError(f"{where}expected an integer, got {value!r}") from None
        else:
            raise ConfigError(f"{where}expected an integer, got {value!r}")
        if (section, key) in POSITIVE and result <= 0:
            raise ConfigError(f"{where}must be a positive integer, got {result}")
        if (section, key) in NON_NEGATIVE and result < 0:
            raise ConfigError(f"{where}must not be negative, got {result}")
    else:
        if not isinstance(value, str):
            raise ConfigError(f"{where}expected a string, got {value!r}")
        result = value
    choices = CHOICES.get((section, key))
    if choices is not None:
        normalized = result.upper() if key != "auto_offset_reset" else result.lower()
        if normalized not in choices:
            allowed = ", ".join(sorted(c for c in choices if c))
            raise ConfigError(f"{where}must be one of {allowed}, got {value!r}")
        result = normalized
    if (section, key) == ("metrics", "address"):
        parse_listen_address(result, origin)
    return result


def parse_listen_address(address: str, origin: str = "[metrics] address") -> tuple[str, int]:
    """':8080' -> ('0.0.0.0', 8080); 'host:port' -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{origin}: expected [host]:port, got {address!r}")
    return (host.strip("[]") or "0.0.0.0", int(port))


def _apply_file(values: dict, path: str) -> None:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path!r} not found") from None
    except OSError as error:
        raise ConfigError(f"configuration file {path!r} cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration file {path!r} is not valid TOML: {error}") from None
    for section, keys in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"configuration file {path!r}: unknown section [{section}]")
        if not isinstance(keys, dict):
            raise ConfigError(f"configuration file {path!r}: [{section}] must be a table")
        for key, value in keys.items():
            if key not in SCHEMA[section]:
                raise ConfigError(f"configuration file {path!r}: unknown key {key!r} in [{section}]")
            values[section][key] = _coerce(section, key, value, f"{path}: [{section}] {key}")


def _apply_environment(values: dict, environ: dict[str, str]) -> None:
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        section, sep, key = name[len(ENV_PREFIX):].lower().partition("__")
        if not sep or section not in SCHEMA or key not in SCHEMA[section]:
            raise ConfigError(f"environment variable {name}: no such configuration key")
        values[section][key] = _coerce(section, key, raw, f"environment variable {name}")


def _apply_clowder(values: dict, path: str) -> None:
    """Apply the Clowder app config.

    app-common-python's module import reads ACG_CONFIG eagerly and raises raw
    exceptions, so we call its ``loadConfig`` ourselves to turn failures into
    one-line configuration errors.
    """
    try:
        # The import itself already loads os.environ["ACG_CONFIG"], so it belongs in this try.
        from app_common_python import loadConfig

        clowder = loadConfig(path)
    except ImportError:  # pragma: no cover - it is a runtime dependency
        raise ConfigError("ACG_CONFIG is set but app-common-python is not installed") from None
    except FileNotFoundError:
        raise ConfigError(f"Clowder configuration {path!r} (ACG_CONFIG) not found") from None
    except OSError as error:
        raise ConfigError(f"Clowder configuration {path!r} (ACG_CONFIG) cannot be read: {error.strerror}") from None
    except ValueError as error:
        raise ConfigError(f"Clowder configuration {path!r} (ACG_CONFIG) is not valid JSON: {error}") from None
    except (KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"Clowder configuration {path!r} (ACG_CONFIG) is incomplete: {error!r}") from None

    kafka = getattr(clowder, "kafka", None)
    if kafka is not None and kafka.brokers:
        broker = values["broker"]
        broker["addresses"] = ",".join(
            f"{b.hostname}:{b.port}" if b.port else b.hostname for b in kafka.brokers
        )
        first = kafka.brokers[0]
        auth = getattr(first, "sasl", None)
        if auth is not None and getattr(auth, "username", None):
            broker["sasl_username"] = auth.username
            broker["sasl_password"] = auth.password or ""
            if getattr(auth, "saslMechanism", None):
                broker["sasl_mechanism"] = auth.saslMechanism.upper()
            protocol = getattr(first, "securityProtocol", None) or getattr(auth, "securityProtocol", None)
            broker["security_protocol"] = (protocol or "SASL_SSL").upper()
        elif getattr(first, "securityProtocol", None):
            broker["security_protocol"] = first.securityProtocol.upper()
        if getattr(first, "cacert", None):
            broker["cert_path"] = clowder.kafka_ca()
        topics = {t.requestedName: t.name for t in (kafka.topics or [])}
        for section, key in (("broker", "topic"), ("broker", "dead_letter_topic"), ("tracker", "topic")):
            if values[section][key] in topics:
                values[section][key] = topics[values[section][key]]
    database = getattr(clowder, "database", None)
    if database is not None and getattr(database, "hostname", None):
        storage = values["storage"]
        storage["pg_host"] = database.hostname
        storage["pg_port"] = int(database.port)
        storage["pg_db_name"] = database.name
        storage["pg_username"] = database.username
        storage["pg_password"] = database.password
        if getattr(database, "sslMode", None) and database.sslMode != "disable":
            params = f"sslmode={database.sslMode}"
            if getattr(database, "rdsCa", None):
                params += f" sslrootcert={clowder.rds_ca()}"
            storage["pg_params"] = params
    for section, key in (("broker", "security_protocol"), ("broker", "sasl_mechanism")):
        values[section][key] = _coerce(section, key, values[section][key], f"ACG_CONFIG {section}.{key}")


def load(environ: dict[str, str] | None = None) -> Config:
    """Build the effective configuration or raise ConfigError."""
    environ = dict(os.environ if environ is None else environ)
    values = {section: dict(keys) for section, keys in SCHEMA.items()}
    named = environ.get(CONFIG_FILE_VARIABLE)
    source = None
    if named:
        _apply_file(values, named)
        source = named
    elif os.path.exists(DEFAULT_CONFIG_FILE):
        _apply_file(values, DEFAULT_CONFIG_FILE)
        source = DEFAULT_CONFIG_FILE
    _apply_environment(values, environ)
    if environ.get("ACG_CONFIG"):
        _apply_clowder(values, environ["ACG_CONFIG"])
    return Config(values=values, source_file=source)
