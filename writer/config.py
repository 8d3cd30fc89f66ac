"""Configuration: defaults < TOML file < environment < Clowder (ACG_CONFIG).

Every key, its type and its default is declared once in ``SCHEMA``; the file,
the environment overrides and ``--show-configuration`` are all driven by it,
so a key cannot exist in one place and be missing in another. Code reads the typed, frozen sections
(``config.processing.batch_timeout_ms``), whose fields a unit test checks against SCHEMA.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from typing import Any

# Every setting by section and key, as loaded; where each one came from (file, variable, Clowder).
Values = dict[str, dict[str, Any]]
Origins = dict[tuple[str, str], str]

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
        "disable_api_versions_request": False,
        # Added by this project:
        "auto_offset_reset": "earliest",
        "dead_letter_topic": "",
        # The original's (sarama's default), not librdkafka's 45 s: see writer/kafka_options.py.
        "session_timeout_ms": 10000,
        "max_poll_interval_ms": 300000,
        "partition_assignment_strategy": "cooperative-sticky",
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
        # The original's default is stdout; ours keeps logs apart from command output.
        "use_stderr": True,
        "logging_to_sentry_enabled": False,
        "logging_to_cloud_watch_enabled": False,
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
        # As librdkafka's prefetch queue (queued.max.messages.kbytes): a batch of large reports stays this small.
        "max_batch_bytes": 16 * 1024 * 1024,
        "batch_timeout_ms": 50,
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
# Not secret as a whole, but may hold password=/sslpassword=: those values are hidden.
PARTLY_SECRET_KEYS = {("storage", "pg_params")}
HIDDEN = "<set, not shown>"

CHOICES: dict[tuple[str, str], set[str]] = {
    ("broker", "security_protocol"): {"", "PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"},
    ("broker", "sasl_mechanism"): {"", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"},
    ("broker", "auto_offset_reset"): {"earliest", "latest", "error"},
    ("broker", "partition_assignment_strategy"): {"cooperative-sticky", "range", "roundrobin"},
    ("storage", "db_driver"): {"postgres"},
}
LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"}
# Spelled in lower case by librdkafka / PostgreSQL; the rest are upper case.
_LOWER_CASE_CHOICES = {("broker", "auto_offset_reset"), ("broker", "partition_assignment_strategy"),
                       ("storage", "db_driver")}

NON_NEGATIVE = {
    ("storage", "pg_port"), ("storage", "connect_timeout"), ("storage", "retry_max_seconds"),
    ("processing", "workers"), ("processing", "max_restarts"),
    ("processing", "restart_window_s"), ("processing", "shutdown_timeout_s"),
    ("storage", "write_timeout_s"),
}
POSITIVE = {
    ("processing", "batch_size"), ("processing", "max_batch_bytes"), ("processing", "batch_timeout_ms"),
    ("broker", "session_timeout_ms"), ("broker", "max_poll_interval_ms"),
}

# What each part of the program reads. A value problem of a key is an error only for an
# operation that uses the key's area (SPEC section 6: "a setting an operation does not use
# cannot make that operation fail"); the wrong *type* is an error for every operation.
LOGGING, KAFKA, DATABASE, SERVICE = "logging", "kafka", "database", "service"
AREAS = {"logging": LOGGING, "broker": KAFKA, "storage": DATABASE, "metrics": SERVICE,
         "tracker": SERVICE, "processing": SERVICE, "sentry": LOGGING, "cloudwatch": LOGGING}
_METRIC_NAMESPACE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# A libpq value is quoted ('a b', with \' and \\ escapes; unterminated: to the end) or unquoted, where a
# backslash escapes the next character (password=a\ b is one value "a b").
_PG_SECRET_PARAM = re.compile(r"""(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|(?:[^\s\\&]|\\.)*\\?)""",
                              re.IGNORECASE | re.DOTALL)


# A connection URI (postgresql://user:password@host/db): libpq would read one in pg_params too. Looked for anywhere
# in the value, as a URI after other pairs (refused by libpq, or a dbname) still carries its password.
_URI = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def redact_pg_params(params: str) -> str:
    """pg_params with the values of password= and sslpassword= replaced; one holding a URI (refused anyway) hidden
    whole."""
    if _URI.search(params):
        return HIDDEN
    return _PG_SECRET_PARAM.sub(lambda m: m.group(1) + HIDDEN, params)


# The sections as typed, frozen values: code reads ``config.processing.batch_timeout_ms`` and mypy checks it.
# The fields repeat SCHEMA's keys and types (not its defaults) in SCHEMA's order; tests/unit/test_config_schema.py
# fails when a key, a type or the order differs, so the two cannot drift apart. Secret fields are left out of
# repr (error reporters print objects with it); tests/unit/test_config_secrets.py holds that to SECRET_KEYS.
@dataclasses.dataclass(frozen=True)
class BrokerSettings:
    addresses: str
    security_protocol: str
    cert_path: str
    sasl_mechanism: str
    sasl_username: str
    sasl_password: str = dataclasses.field(repr=False)
    topic: str
    group: str
    enabled: bool
    disable_api_versions_request: bool
    auto_offset_reset: str
    dead_letter_topic: str
    session_timeout_ms: int
    max_poll_interval_ms: int
    partition_assignment_strategy: str


@dataclasses.dataclass(frozen=True)
class StorageSettings:
    db_driver: str
    pg_username: str
    pg_password: str = dataclasses.field(repr=False)
    pg_host: str
    pg_port: int
    pg_db_name: str
    pg_params: str = dataclasses.field(repr=False)  # may hold password= or a URI with one
    log_sql_queries: bool
    connect_timeout: int
    retry_max_seconds: int
    write_timeout_s: int


@dataclasses.dataclass(frozen=True)
class LoggingSettings:
    debug: bool
    log_level: str
    use_stderr: bool
    logging_to_sentry_enabled: bool
    logging_to_cloud_watch_enabled: bool


@dataclasses.dataclass(frozen=True)
class SentrySettings:
    dsn: str = dataclasses.field(repr=False)
    environment: str


@dataclasses.dataclass(frozen=True)
class CloudWatchSettings:
    aws_access_id: str = dataclasses.field(repr=False)
    aws_secret_key: str = dataclasses.field(repr=False)
    aws_session_token: str = dataclasses.field(repr=False)
    aws_region: str
    log_group: str
    stream_name: str
    debug: bool


@dataclasses.dataclass(frozen=True)
class MetricsSettings:
    namespace: str
    address: str


@dataclasses.dataclass(frozen=True)
class TrackerSettings:
    topic: str
    service_name: str
    auto_create_topic: bool


@dataclasses.dataclass(frozen=True)
class ProcessingSettings:
    workers: int
    batch_size: int
    max_batch_bytes: int
    batch_timeout_ms: int
    max_restarts: int
    restart_window_s: int
    shutdown_timeout_s: int


# SCHEMA section -> its typed class, in SCHEMA's order.
SECTIONS: dict[str, type[Any]] = {
    "broker": BrokerSettings,
    "storage": StorageSettings,
    "logging": LoggingSettings,
    "sentry": SentrySettings,
    "cloudwatch": CloudWatchSettings,
    "metrics": MetricsSettings,
    "tracker": TrackerSettings,
    "processing": ProcessingSettings,
}


@dataclasses.dataclass(frozen=True, repr=False)
class Config:
    """The effective configuration: one typed section per SCHEMA section (change it with dataclasses.replace)."""

    broker: BrokerSettings
    storage: StorageSettings
    logging: LoggingSettings
    sentry: SentrySettings
    cloudwatch: CloudWatchSettings
    metrics: MetricsSettings
    tracker: TrackerSettings
    processing: ProcessingSettings
    source_file: str | None = None
    # Unknown keys/variables found while loading: reported in one warning line, never fatal.
    ignored: list[str] = dataclasses.field(default_factory=list)
    # (section, key) -> where its value came from, to name it in a later value error.
    origins: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    # Values replaced by their default while loading (the original ignores them too): one warning line each.
    warnings: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def from_values(cls, values: Values, source_file: str | None = None, ignored: list[str] | None = None,
                    origins: Origins | None = None, warnings: list[str] | None = None) -> Config:
        """The typed form of ``values[section][key]`` (every SCHEMA key present, already coerced)."""
        sections = {section: SECTIONS[section](**values[section]) for section in SCHEMA}
        return cls(**sections, source_file=source_file, ignored=ignored or [], origins=origins or {},
                   warnings=warnings or [])

    def as_dict(self) -> Values:
        """``{section: {key: value}}`` in SCHEMA's order."""
        return {section: dataclasses.asdict(getattr(self, section)) for section in SCHEMA}

    def __repr__(self) -> str:
        # Error reporters (Sentry, tracebacks with locals) print objects with repr: never the secrets.
        return f"Config(values={self.redacted()!r}, source_file={self.source_file!r})"

    def redacted(self) -> dict[str, dict[str, Any]]:
        """The configuration with every secret replaced, for printing and logs."""
        shown = self.as_dict()
        for section, key in SECRET_KEYS:
            if shown[section][key]:
                shown[section][key] = HIDDEN
        for section, key in PARTLY_SECRET_KEYS:
            shown[section][key] = redact_pg_params(shown[section][key])
        return shown

    def problems(self, *areas: str) -> list[str]:
        """One line per value that an operation using ``areas`` would refuse."""
        return [text for area, text in _value_problems(self.as_dict(), self.origins) if area in areas]

    def check(self, *areas: str) -> None:
        """Raise ConfigError (first problem) when a key of these areas has an unusable value."""
        found = self.problems(*areas)
        if found:
            raise ConfigError(found[0])

    @property
    def worker_count(self) -> int:
        if self.processing.workers:
            return self.processing.workers
        from writer.cpu_limits import usable_cpus

        return usable_cpus()


def schema_mismatches() -> list[str]:
    """Where the typed sections differ from SCHEMA (keys, their order, their types); empty when they agree."""
    found = []
    if list(SECTIONS) != list(SCHEMA):
        found.append(f"SECTIONS {list(SECTIONS)} differ from SCHEMA's sections {list(SCHEMA)}")
    config_hints = typing.get_type_hints(Config)
    for section, keys in SCHEMA.items():
        if config_hints.get(section) is not SECTIONS.get(section):
            found.append(f"Config.{section} is not typed {SECTIONS.get(section)}")
        if section not in SECTIONS:
            continue
        fields = [field.name for field in dataclasses.fields(SECTIONS[section])]
        if fields != list(keys):
            found.append(f"[{section}]: fields {fields} differ from SCHEMA's keys {list(keys)}")
        hints = typing.get_type_hints(SECTIONS[section])
        for key, default in keys.items():
            if key in hints and hints[key] is not type(default):
                found.append(f"[{section}] {key}: field typed {hints[key]}, SCHEMA's default is {type(default)}")
    return found


def _value_problems(values: Values, origins: Origins) -> list[tuple[str, str]]:
    found = []

    def problem(section: str, key: str, text: str) -> None:
        found.append((AREAS[section], f"{origins.get((section, key), f'[{section}] {key}')}: {text}"))

    for (section, key), choices in CHOICES.items():
        value = values[section][key]
        sasl = values["broker"]["security_protocol"].startswith("SASL")
        if (section, key) == ("broker", "sasl_mechanism") and not sasl:
            continue  # read only for SASL protocols (the original's config.toml says "not-used")
        if value not in choices:
            problem(section, key, f"must be one of {', '.join(sorted(c for c in choices if c))}, got {value!r}")
    for section, key in sorted(POSITIVE):
        if values[section][key] <= 0:
            problem(section, key, f"must be a positive integer, got {values[section][key]}")
    for section, key in sorted(NON_NEGATIVE):
        if values[section][key] < 0:
            problem(section, key, f"must not be negative, got {values[section][key]}")
    namespace = values["metrics"]["namespace"]
    if namespace and not _METRIC_NAMESPACE.fullmatch(namespace):
        problem("metrics", "namespace", f"not a valid Prometheus metric name prefix (letters, digits, _ and :), "
                                        f"got {namespace!r}")
    try:
        parse_listen_address(values["metrics"]["address"], origins.get(("metrics", "address"), "[metrics] address"))
    except ConfigError as error:
        found.append((SERVICE, str(error)))
    try:
        parse_pg_params(values["storage"]["pg_params"])
    except ConfigError:
        problem("storage", "pg_params", PG_PARAMS_URI if _URI.search(values["storage"]["pg_params"])
                else PG_PARAMS_INVALID)
    return found


PG_PARAMS_INVALID = "not a valid list of libpq key=value pairs (value not shown)"
# A URI would override the pg_* settings and put the password where only pg_password is kept secret.
PG_PARAMS_URI = ("a connection URI is not accepted: give libpq key=value pairs, and the server and credentials in "
                 "the other pg_* settings (value not shown)")


def parse_pg_params(params: str) -> dict[str, str]:
    """pg_params (pairs separated by spaces or '&') as libpq reads them; ConfigError when libpq refuses them.

    The one parser of pg_params: the load-time check and the connection string both use it.
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    if _URI.search(params):
        raise ConfigError(f"[storage] pg_params: {PG_PARAMS_URI}")
    text = params.replace("&", " ").strip()
    if not text:
        return {}
    try:
        pairs = conninfo_to_dict(text)
    except psycopg.ProgrammingError:
        # libpq's parse error quotes the text around the fault, which may be a password= value.
        raise ConfigError(f"[storage] pg_params: {PG_PARAMS_INVALID}") from None
    return {key: str(value) for key, value in pairs.items() if value is not None}


def _coerce(section: str, key: str, value: Any, origin: str) -> Any:
    """Check/convert one value to the type of its default; origin names where it came from."""
    try:
        return _coerce_value(section, key, value, origin)
    except ConfigError:
        if (section, key) in SECRET_KEYS | PARTLY_SECRET_KEYS:  # never echo a (mistyped) secret
            raise ConfigError(f"{origin}: expected a string (value not shown)") from None
        raise


def _coerce_value(section: str, key: str, value: Any, origin: str) -> Any:
    """The type check (an error for every operation) and case normalization; value checks come later."""
    default = SCHEMA[section][key]
    where = f"{origin}: "
    if isinstance(default, bool):
        if isinstance(value, bool):
            result: Any = value
        # Go's strconv.ParseBool spellings (1, t, T, TRUE, true, True, and the false ones), plus yes/on/no/off.
        elif isinstance(value, str) and value.strip().lower() in {"true", "t", "1", "yes", "on"}:
            result = True
        elif isinstance(value, str) and value.strip().lower() in {"false", "f", "0", "no", "off"}:
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
    else:
        if not isinstance(value, str):
            raise ConfigError(f"{where}expected a string, got {value!r}")
        result = value
    if (section, key) == ("logging", "log_level"):
        result = result.strip().upper() or default  # the original's files say log_level = "": the default level
    if (section, key) in CHOICES:
        result = result.strip().lower() if (section, key) in _LOWER_CASE_CHOICES else result.strip().upper()
    return result


def parse_listen_address(address: str, origin: str = "[metrics] address") -> tuple[str, int]:
    """':8080' -> ('0.0.0.0', 8080); 'host:port' -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{origin}: expected [host]:port, got {address!r}")
    return (host.strip("[]") or "0.0.0.0", int(port))


def _apply_file(values: Values, path: str, ignored: list[str], origins: Origins) -> None:
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
            ignored.append(f"{path}: [{section}]")
            continue
        if not isinstance(keys, dict):
            raise ConfigError(f"configuration file {path!r}: [{section}] must be a table")
        for key, value in keys.items():
            if key not in SCHEMA[section]:
                ignored.append(f"{path}: [{section}] {key}")
                continue
            origins[(section, key)] = f"{path}: [{section}] {key}"
            values[section][key] = _coerce(section, key, value, origins[(section, key)])


def _apply_environment(values: Values, environ: dict[str, str], ignored: list[str], origins: Origins) -> None:
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        if raw == "":
            continue  # an empty value counts as unset, as in the original (its manifests set LOGGING__LEVEL='')
        section, sep, key = name[len(ENV_PREFIX):].lower().partition("__")
        if not sep or section not in SCHEMA or key not in SCHEMA[section]:
            ignored.append(name)
            continue
        origins[(section, key)] = f"environment variable {name}"
        values[section][key] = _coerce(section, key, raw, origins[(section, key)])


def _apply_clowder(values: Values, path: str, origins: Origins) -> None:
    """Apply the Clowder app config.

    app-common-python's module import reads ACG_CONFIG eagerly and raises raw
    exceptions, so we call its ``loadConfig`` ourselves to turn failures into
    one-line configuration errors.
    """
    try:
        # The import itself already loads os.environ["ACG_CONFIG"], so it belongs in this try.
        from app_common_python import loadConfig

        clowder = loadConfig(path)  # type: ignore[no-untyped-call]  # app-common-python is not annotated
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

    before = {(section, key): value for section, keys in values.items() for key, value in keys.items()}
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
    _apply_clowder_cloudwatch(values, getattr(getattr(clowder, "logging", None), "cloudwatch", None))
    for (section, key), value in before.items():
        if values[section][key] != value:
            origins[(section, key)] = f"ACG_CONFIG ({section} {key})"


def _apply_clowder_cloudwatch(values: Values, cloudwatch: Any) -> None:
    """Clowder's logging.cloudwatch fills [cloudwatch]; the switch stays [logging] logging_to_cloud_watch_enabled."""
    if cloudwatch is None or not getattr(cloudwatch, "logGroup", None):
        return
    target = values["cloudwatch"]
    target["log_group"] = cloudwatch.logGroup
    for key, attribute in (("aws_access_id", "accessKeyId"), ("aws_secret_key", "secretAccessKey"),
                           ("aws_region", "region")):
        if getattr(cloudwatch, attribute, None):
            target[key] = getattr(cloudwatch, attribute)


def load(environ: dict[str, str] | None = None) -> Config:
    """Build the effective configuration or raise ConfigError."""
    environ = dict(os.environ if environ is None else environ)
    values = {section: dict(keys) for section, keys in SCHEMA.items()}
    named = environ.get(CONFIG_FILE_VARIABLE)
    source = None
    ignored: list[str] = []
    origins: dict[tuple[str, str], str] = {}
    if named:
        _apply_file(values, named, ignored, origins)
        source = named
    elif os.path.exists(DEFAULT_CONFIG_FILE):
        _apply_file(values, DEFAULT_CONFIG_FILE, ignored, origins)
        source = DEFAULT_CONFIG_FILE
    _apply_environment(values, environ, ignored, origins)
    if environ.get("ACG_CONFIG"):
        _apply_clowder(values, environ["ACG_CONFIG"], origins)
    warnings = []
    if values["logging"]["log_level"] not in LOG_LEVELS:
        # The original ignores a level it does not know (e.g. "trace") and logs at its default level.
        origin = origins.get(("logging", "log_level"), "[logging] log_level")
        warnings.append(f"{origin}: unknown level {values['logging']['log_level']!r} ignored, "
                        f"logging at {SCHEMA['logging']['log_level']}")
        values["logging"]["log_level"] = SCHEMA["logging"]["log_level"]
    return Config.from_values(values, source_file=source, ignored=ignored, origins=origins, warnings=warnings)
