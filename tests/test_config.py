"""Configuration (SPEC section 6): defaults < TOML file < environment < Clowder, and its errors.

Everything goes through the real console script and ``--show-configuration``,
whose output (``[section]`` lines and ``  key = repr(value)`` lines) is parsed
back into a dictionary.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from writer.config import SCHEMA

PREFIX = "CCX_NOTIFICATION_WRITER__"


def parse_shown(stdout: str) -> tuple[str, dict[str, dict[str, object]]]:
    """(configuration file line, {section: {key: value}}) from --show-configuration."""
    lines = stdout.splitlines()
    assert lines[0].startswith("configuration file: "), stdout
    source = lines[0][len("configuration file: "):]
    shown: dict[str, dict[str, object]] = {}
    section = None
    for line in lines[1:]:
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            shown[section] = {}
            continue
        assert section is not None and line.startswith("  ") and " = " in line, line
        key, _, value = line.strip().partition(" = ")
        shown[section][key] = ast.literal_eval(value)
    return source, shown


def show(cli, env=None, cwd=None):
    result = cli("--show-configuration", env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return parse_shown(result.stdout)


def assert_one_line_error(result, status: int = 1, *fragments: str) -> str:
    """The operation failed with ``status`` and exactly one stderr line, no traceback, no stdout dump."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "[storage]" not in result.stdout  # the configuration was not printed
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- defaults and sources ----------------------------------------------------------------------


# The defaults as README's configuration table documents them, written out (not taken from the code).
DOCUMENTED_DEFAULTS = {
    "broker": {"addresses": "localhost:9092", "security_protocol": "", "cert_path": "", "sasl_mechanism": "",
               "sasl_username": "", "sasl_password": "", "topic": "ccx.ocp.results", "group": "ccx_notification_writer",
               "enabled": True, "disable_api_versions_request": False, "auto_offset_reset": "earliest",
               "dead_letter_topic": "", "session_timeout_ms": 45000, "max_poll_interval_ms": 300000,
               "partition_assignment_strategy": "cooperative-sticky"},
    "storage": {"db_driver": "postgres", "pg_username": "postgres", "pg_password": "", "pg_host": "localhost",
                "pg_port": 5432, "pg_db_name": "notification", "pg_params": "", "log_sql_queries": False,
                "connect_timeout": 10, "retry_max_seconds": 0, "write_timeout_s": 30},
    "logging": {"debug": False, "log_level": "INFO", "use_stderr": True, "logging_to_sentry_enabled": False,
                "logging_to_cloud_watch_enabled": False},
    "sentry": {"dsn": "", "environment": ""},
    "cloudwatch": {"aws_access_id": "", "aws_secret_key": "", "aws_session_token": "", "aws_region": "",
                   "log_group": "", "stream_name": "", "debug": False},
    "metrics": {"namespace": "ccx_notification_writer", "address": ":8080"},
    "tracker": {"topic": "", "service_name": "ccx-notification-writer", "auto_create_topic": True},
    "processing": {"workers": 0, "batch_size": 1000, "batch_timeout_ms": 200, "max_restarts": 5,
                   "restart_window_s": 60, "shutdown_timeout_s": 20},
}


def test_defaults_without_any_file_or_environment(cli):
    source, shown = show(cli)
    assert source.startswith("(none")
    assert shown == DOCUMENTED_DEFAULTS
    # a few the original documents, spelled out
    assert shown["broker"]["topic"] == "ccx.ocp.results"
    assert shown["storage"]["pg_port"] == 5432
    assert shown["broker"]["enabled"] is True


def test_config_toml_in_working_directory_is_read(cli, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    write_toml(workdir / "config.toml", '[storage]\npg_host = "from-default-file"\npg_port = 6000\n')
    source, shown = show(cli, cwd=str(workdir))
    assert source == "config.toml"
    assert shown["storage"]["pg_host"] == "from-default-file"
    assert shown["storage"]["pg_port"] == 6000
    assert shown["storage"]["pg_db_name"] == SCHEMA["storage"]["pg_db_name"]


def test_named_file_is_read_and_default_file_ignored(cli, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    write_toml(workdir / "config.toml", '[storage]\npg_host = "from-default-file"\n')
    named = write_toml(tmp_path / "elsewhere.toml", '[storage]\npg_db_name = "named_db"\n')
    source, shown = show(cli, env={"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(named)}, cwd=str(workdir))
    assert source == str(named)
    assert shown["storage"]["pg_db_name"] == "named_db"
    # the default file in the working directory was not read at all
    assert shown["storage"]["pg_host"] == SCHEMA["storage"]["pg_host"]


def test_precedence_defaults_file_environment(cli, tmp_path):
    named = write_toml(
        tmp_path / "c.toml",
        """
        [broker]
        addresses = "file-kafka:9092"
        topic = "file.topic"
        [storage]
        pg_host = "file-host"
        pg_db_name = "file_db"
        [logging]
        log_level = "WARNING"
        [metrics]
        namespace = "file_ns"
        """.replace("        ", ""),
    )
    env = {
        "CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(named),
        PREFIX + "STORAGE__PG_HOST": "env-host",
        PREFIX + "BROKER__TOPIC": "env.topic",
        PREFIX + "TRACKER__SERVICE_NAME": "env-service",
    }
    _, shown = show(cli, env=env)
    assert shown["storage"]["pg_host"] == "env-host"  # env beats file
    assert shown["broker"]["topic"] == "env.topic"  # env beats file
    assert shown["tracker"]["service_name"] == "env-service"  # env beats default
    assert shown["storage"]["pg_db_name"] == "file_db"  # file beats default
    assert shown["broker"]["addresses"] == "file-kafka:9092"
    assert shown["logging"]["log_level"] == "WARNING"
    assert shown["metrics"]["namespace"] == "file_ns"
    assert shown["storage"]["pg_username"] == SCHEMA["storage"]["pg_username"]  # untouched default


def test_every_key_can_be_set_from_the_environment(cli):
    """Each key of the SPEC's sections has its CCX_NOTIFICATION_WRITER__SECTION__KEY variable."""
    spec_keys = {
        "broker": ["addresses", "security_protocol", "cert_path", "sasl_mechanism", "sasl_username",
                   "topic", "group"],
        "storage": ["pg_username", "pg_host", "pg_db_name", "pg_params"],
        "logging": ["log_level"],
        "sentry": ["environment"],
        "cloudwatch": ["aws_region", "log_group", "stream_name"],
        "metrics": ["namespace", "address"],
        "tracker": ["topic", "service_name"],
    }
    chosen = {
        ("broker", "security_protocol"): "SASL_SSL",
        ("broker", "sasl_mechanism"): "SCRAM-SHA-512",
        ("logging", "log_level"): "DEBUG",
        ("metrics", "address"): "127.0.0.1:9999",
    }
    env = {}
    expected = {}
    for section, keys in spec_keys.items():
        for key in keys:
            value = chosen.get((section, key), f"env-{section}-{key}")
            env[f"{PREFIX}{section.upper()}__{key.upper()}"] = value
            expected[(section, key)] = value
    _, shown = show(cli, env=env)
    for (section, key), value in expected.items():
        assert shown[section][key] == value, (section, key)


@pytest.mark.parametrize(
    "variable, raw, section, key, expected",
    [
        ("STORAGE__PG_PORT", "6543", "storage", "pg_port", 6543),
        ("STORAGE__PG_PORT", " 15432 ", "storage", "pg_port", 15432),
        ("PROCESSING__BATCH_SIZE", "25", "processing", "batch_size", 25),
        ("STORAGE__LOG_SQL_QUERIES", "true", "storage", "log_sql_queries", True),
        ("STORAGE__LOG_SQL_QUERIES", "1", "storage", "log_sql_queries", True),
        ("STORAGE__LOG_SQL_QUERIES", "TRUE", "storage", "log_sql_queries", True),
        ("BROKER__ENABLED", "false", "broker", "enabled", False),
        ("BROKER__ENABLED", "0", "broker", "enabled", False),
        ("LOGGING__DEBUG", "yes", "logging", "debug", True),
        ("CLOUDWATCH__DEBUG", "off", "cloudwatch", "debug", False),
    ],
)
def test_environment_ints_and_booleans_are_parsed(cli, variable, raw, section, key, expected):
    _, shown = show(cli, env={PREFIX + variable: raw})
    assert shown[section][key] == expected
    assert type(shown[section][key]) is type(expected)


def test_toml_native_types_are_kept(cli, tmp_path):
    named = write_toml(
        tmp_path / "c.toml",
        "[storage]\npg_port = 7777\nlog_sql_queries = true\n[broker]\nenabled = false\n",
    )
    _, shown = show(cli, env={"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(named)})
    assert shown["storage"]["pg_port"] == 7777
    assert shown["storage"]["log_sql_queries"] is True
    assert shown["broker"]["enabled"] is False


# --- errors: exit status 1, one line on stderr, no traceback ----------------------------------


@pytest.mark.parametrize(
    "variable, raw",
    [
        ("STORAGE__PG_PORT", "abc"),
        ("STORAGE__PG_PORT", "54.32"),
        ("BROKER__ENABLED", "maybe"),
        ("STORAGE__LOG_SQL_QUERIES", "2"),
        ("LOGGING__USE_STDERR", "sometimes"),
    ],
)
def test_wrong_typed_environment_value_is_rejected_naming_the_variable(cli, variable, raw):
    result = cli("--show-configuration", env={PREFIX + variable: raw})
    assert_one_line_error(result, 1, PREFIX + variable)


# (variable, value, an operation that uses it and must refuse it, an operation that does not use it)
VALUE_USED_BY = [
    ("STORAGE__PG_PORT", "-1", ["--db-init"], ["--check-kafka"]),
    ("STORAGE__DB_DRIVER", "sqlite3", ["--db-init"], ["--check-kafka"]),
    ("STORAGE__DB_DRIVER", "mysql", [], ["--check-kafka"]),  # the service needs a database too
    ("BROKER__SECURITY_PROTOCOL", "TLS", ["--check-kafka"], ["--db-init"]),
    ("PROCESSING__BATCH_SIZE", "0", [], ["--db-init"]),
    ("METRICS__ADDRESS", "no-port-here", [], ["--db-init"]),
    ("METRICS__NAMESPACE", "notification-writer", [], ["--db-init"]),
    ("BROKER__PARTITION_ASSIGNMENT_STRATEGY", "sticky-ish", [], ["--db-init"]),
]


@pytest.mark.parametrize("variable, raw, refusing, indifferent", VALUE_USED_BY)
def test_a_bad_value_fails_only_the_operations_that_use_it(cli, database, kafka_bootstrap, variable, raw,
                                                           refusing, indifferent):
    env = {**database.env(), PREFIX + "BROKER__ADDRESSES": kafka_bootstrap, PREFIX + variable: raw}
    # --show-configuration prints it and names it in a warning line, exit 0
    shown = cli("--show-configuration", env=env)
    assert shown.returncode == 0, shown.stderr
    assert PREFIX + variable in shown.stderr and "refused by the operations that use it" in shown.stderr
    # the service (no flag) uses every section: one line, exit 1, before anything starts
    assert_one_line_error(cli(env=env, timeout=60), 1, PREFIX + variable)
    for flag in refusing:
        assert_one_line_error(cli(flag, env=env), 1, PREFIX + variable)
    for flag in indifferent:
        result = cli(flag, env=env)
        assert result.returncode == 0, (flag, result.stdout, result.stderr)


def test_sasl_mechanism_is_read_only_for_sasl_protocols(cli, kafka_bootstrap):
    plain = {PREFIX + "BROKER__ADDRESSES": kafka_bootstrap, PREFIX + "BROKER__SECURITY_PROTOCOL": "PLAINTEXT",
             PREFIX + "BROKER__SASL_MECHANISM": "not-used"}
    result = cli("--check-kafka", env=plain)
    assert result.returncode == 0, result.stderr
    sasl = {**plain, PREFIX + "BROKER__SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    line = assert_one_line_error(cli("--check-kafka", env=sasl), 1, PREFIX + "BROKER__SASL_MECHANISM")
    assert "not-used" in line.lower()


@pytest.mark.parametrize("spelling", ["postgres", "Postgres", "POSTGRES"])
def test_db_driver_postgres_in_any_case(cli, database, spelling):
    env = {**database.env(), PREFIX + "STORAGE__DB_DRIVER": spelling}
    _, shown = show(cli, env=env)
    assert shown["storage"]["db_driver"] == "postgres"
    result = cli("--db-init", env=env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "variable",
    [
        PREFIX + "STORAGE__PG_HOSTNAME",  # unknown key
        PREFIX + "DATABASE__PG_HOST",  # unknown section
        PREFIX + "STORAGE",  # no key at all
        PREFIX + "STORAGE_PG_HOST",  # single underscore between section and key
        PREFIX + "LOGGING__LEVEL",  # set by the original's own manifests
        PREFIX + "BROKER__ADDRESS",  # set by the original's behavioural test runner
    ],
)
def test_unknown_environment_variable_is_named_in_one_warning_line(cli, variable):
    result = cli("--show-configuration", env={variable: "x", PREFIX + "STORAGE__PG_HOST": "still-read"})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "unknown configuration keys" in line]
    assert len(warnings) == 1 and variable in warnings[0], result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    _, shown = parse_shown(result.stdout)
    assert shown["storage"]["pg_host"] == "still-read"


def test_unknown_keys_of_file_and_environment_share_one_warning_line(cli, tmp_path):
    path = write_toml(tmp_path / "c.toml", '[storage]\nno_such_key = "x"\npg_host = "h"\n[nosuchsection]\nkey = 1\n')
    result = cli("--show-configuration", env={"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(path),
                                               PREFIX + "BROKER__ADDRESS": "k:1"})
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    for name in ("no_such_key", "[nosuchsection]", PREFIX + "BROKER__ADDRESS"):
        assert name in lines[0]
    _, shown = parse_shown(result.stdout)
    assert shown["storage"]["pg_host"] == "h"


def test_empty_environment_value_counts_as_unset(cli, tmp_path):
    path = write_toml(tmp_path / "c.toml", '[storage]\npg_host = "from-file"\npg_port = 6000\n'
                                           '[logging]\nlog_level = "ERROR"\n')
    env = {"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(path), PREFIX + "STORAGE__PG_HOST": "",
           PREFIX + "STORAGE__PG_PORT": "", PREFIX + "LOGGING__LOG_LEVEL": "", PREFIX + "BROKER__ENABLED": ""}
    _, shown = show(cli, env=env)
    assert shown["storage"]["pg_host"] == "from-file"
    assert shown["storage"]["pg_port"] == 6000
    assert shown["logging"]["log_level"] == "ERROR"
    assert shown["broker"]["enabled"] is True


def test_empty_log_level_in_a_file_is_the_default_level(cli, tmp_path):
    path = write_toml(tmp_path / "c.toml", '[logging]\nlog_level = ""\n')
    _, shown = show(cli, env={"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(path)})
    assert shown["logging"]["log_level"] == "INFO"


def test_missing_named_file_is_an_error(cli, tmp_path):
    missing = tmp_path / "does-not-exist.toml"
    result = cli("--show-configuration", env={"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(missing)})
    line = assert_one_line_error(result, 1, str(missing))
    assert "not found" in line


def test_missing_named_file_is_an_error_for_database_operations_too(cli, tmp_path):
    missing = tmp_path / "nope.toml"
    result = cli("--db-init", env={"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(missing)})
    assert_one_line_error(result, 1, str(missing))


def test_toml_syntax_error_is_an_error(cli, tmp_path):
    broken = write_toml(tmp_path / "broken.toml", '[storage\npg_host = "x"\n')
    result = cli("--show-configuration", env={"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(broken)})
    line = assert_one_line_error(result, 1, str(broken))
    assert "TOML" in line


def test_toml_syntax_error_in_default_file_is_an_error(cli, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    write_toml(workdir / "config.toml", "pg_host = = 1\n")
    result = cli("--show-configuration", cwd=str(workdir))
    assert_one_line_error(result, 1, "config.toml")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[storage]\npg_port = "abc"\n', "pg_port"),
        ("[storage]\npg_port = true\n", "pg_port"),
        ('[broker]\nenabled = "sometimes"\n', "enabled"),
        ("[broker]\ntopic = 42\n", "topic"),
        ('[broker]\nsecurity_protocol = 2\n', "security_protocol"),
        ('storage = "not a table"\n', "storage"),
    ],
)
def test_invalid_value_in_file_is_an_error(cli, tmp_path, text, fragment):
    path = write_toml(tmp_path / "c.toml", text)
    result = cli("--show-configuration", env={"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(path)})
    assert_one_line_error(result, 1, fragment)


def test_config_file_that_is_a_directory_is_an_error(cli, tmp_path):
    result = cli("--show-configuration", env={"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(tmp_path)})
    assert_one_line_error(result, 1, str(tmp_path))


def test_lower_case_choices_are_normalized(cli):
    _, shown = show(cli, env={PREFIX + "BROKER__SECURITY_PROTOCOL": "sasl_ssl",
                              PREFIX + "BROKER__SASL_MECHANISM": "scram-sha-256",
                              PREFIX + "LOGGING__LOG_LEVEL": "debug"})
    assert shown["broker"]["security_protocol"] == "SASL_SSL"
    assert shown["broker"]["sasl_mechanism"] == "SCRAM-SHA-256"
    assert shown["logging"]["log_level"] == "DEBUG"


# --- Clowder ------------------------------------------------------------------------------------

CA_TEXT = "-----BEGIN CERTIFICATE-----\nMIIBclowderTESTca\n-----END CERTIFICATE-----\n"
RDS_CA_TEXT = "-----BEGIN CERTIFICATE-----\nMIIBrdsTESTca\n-----END CERTIFICATE-----\n"


def clowder_json(tmp_path: Path, document: dict) -> str:
    path = tmp_path / "cdappconfig.json"
    path.write_text(json.dumps(document))
    return str(path)


def full_clowder_document() -> dict:
    return {
        "publicPort": 8000,
        "metricsPort": 9000,
        "metricsPath": "/metrics",
        "logging": {"type": "null"},
        "kafka": {
            "brokers": [
                {
                    "hostname": "clowder-kafka-0.example",
                    "port": 9096,
                    "authtype": "sasl",
                    "cacert": CA_TEXT,
                    "securityProtocol": "SASL_SSL",
                    "sasl": {
                        "username": "clowder-user",
                        "password": "clowder-kafka-secret-9f3a",
                        "saslMechanism": "SCRAM-SHA-512",
                        "securityProtocol": "SASL_SSL",
                    },
                },
                {"hostname": "clowder-kafka-1.example", "port": 9097},
            ],
            "topics": [
                {"requestedName": "ccx.ocp.results", "name": "ccx.ocp.results-env-1234"},
                {"requestedName": "platform.payload-status", "name": "platform.payload-status-env-1234"},
                {"requestedName": "unrelated.topic", "name": "unrelated-env-1234"},
            ],
        },
        "database": {
            "name": "clowder_db",
            "username": "clowder_db_user",
            "password": "clowder-db-secret-77c1",
            "hostname": "clowder-db.example",
            "port": 5433,
            "adminUsername": "admin",
            "adminPassword": "clowder-admin-secret",
            "rdsCa": None,
            "sslMode": "disable",
        },
    }


def test_clowder_overrides_file_and_environment(cli, tmp_path):
    named = write_toml(
        tmp_path / "c.toml",
        """
        [broker]
        addresses = "file-kafka:9092"
        security_protocol = "PLAINTEXT"
        sasl_username = "file-user"
        [storage]
        pg_host = "file-host"
        pg_port = 1111
        pg_db_name = "file_db"
        pg_username = "file_user"
        [tracker]
        topic = "platform.payload-status"
        """.replace("        ", ""),
    )
    env = {
        "CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(named),
        PREFIX + "STORAGE__PG_HOST": "env-host",
        PREFIX + "STORAGE__PG_PASSWORD": "env-password",
        PREFIX + "BROKER__ADDRESSES": "env-kafka:9092",
        PREFIX + "BROKER__GROUP": "env-group",
        "ACG_CONFIG": clowder_json(tmp_path, full_clowder_document()),
    }
    source, shown = show(cli, env=env)
    assert source == str(named)
    broker, storage = shown["broker"], shown["storage"]
    assert broker["addresses"] == "clowder-kafka-0.example:9096,clowder-kafka-1.example:9097"
    assert broker["security_protocol"] == "SASL_SSL"
    assert broker["sasl_mechanism"] == "SCRAM-SHA-512"
    assert broker["sasl_username"] == "clowder-user"
    assert broker["sasl_password"] not in ("", "clowder-kafka-secret-9f3a")  # set, not shown
    assert broker["topic"] == "ccx.ocp.results-env-1234"  # requestedName -> name
    assert shown["tracker"]["topic"] == "platform.payload-status-env-1234"
    assert broker["group"] == "env-group"  # not something Clowder provides: the environment stays
    cert_path = Path(broker["cert_path"])
    assert cert_path.is_file()
    assert cert_path.read_text() == CA_TEXT
    assert storage["pg_host"] == "clowder-db.example"
    assert storage["pg_port"] == 5433
    assert storage["pg_db_name"] == "clowder_db"
    assert storage["pg_username"] == "clowder_db_user"
    assert storage["pg_password"] not in ("", "env-password", "clowder-db-secret-77c1")


def test_clowder_password_really_replaces_the_environment_password(tmp_path):
    """The Clowder database password is the one used to connect (checked via the conninfo)."""
    import subprocess
    import sys

    document = full_clowder_document()
    code = (
        "from writer import config, database; "
        "print(database.conninfo(config.load()))"
    )
    env = {
        "ACG_CONFIG": clowder_json(tmp_path, document),
        PREFIX + "STORAGE__PG_PASSWORD": "env-password",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp_path),
                         capture_output=True, text=True, check=True).stdout
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(out.strip())
    assert info["password"] == "clowder-db-secret-77c1"
    assert info["host"] == "clowder-db.example"
    assert info["port"] == "5433"
    assert info["dbname"] == "clowder_db"
    assert info["user"] == "clowder_db_user"


def test_clowder_topic_mapping_leaves_unmapped_topics_alone(cli, tmp_path):
    document = full_clowder_document()
    env = {
        PREFIX + "BROKER__TOPIC": "my.own.topic",
        "ACG_CONFIG": clowder_json(tmp_path, document),
    }
    _, shown = show(cli, env=env)
    assert shown["broker"]["topic"] == "my.own.topic"
    assert shown["tracker"]["topic"] == ""


def test_clowder_ssl_without_sasl(cli, tmp_path):
    document = {
        "kafka": {
            "brokers": [{"hostname": "tls-kafka.example", "port": 9093, "cacert": CA_TEXT,
                         "securityProtocol": "SSL"}],
            "topics": [],
        }
    }
    _, shown = show(cli, env={"ACG_CONFIG": clowder_json(tmp_path, document),
                              PREFIX + "STORAGE__PG_HOST": "env-host"})
    assert shown["broker"]["addresses"] == "tls-kafka.example:9093"
    assert shown["broker"]["security_protocol"] == "SSL"
    assert shown["broker"]["sasl_mechanism"] == ""
    assert shown["broker"]["sasl_username"] == ""
    assert Path(shown["broker"]["cert_path"]).read_text() == CA_TEXT
    # no database section in the Clowder document: storage stays as configured
    assert shown["storage"]["pg_host"] == "env-host"


def test_clowder_plain_broker_without_port_or_auth(cli, tmp_path):
    document = {"kafka": {"brokers": [{"hostname": "plain-kafka.example"}], "topics": []}}
    _, shown = show(cli, env={"ACG_CONFIG": clowder_json(tmp_path, document),
                              PREFIX + "BROKER__CERT_PATH": "/etc/env-ca.pem"})
    assert shown["broker"]["addresses"] == "plain-kafka.example"
    assert shown["broker"]["security_protocol"] == ""
    assert shown["broker"]["cert_path"] == "/etc/env-ca.pem"


def test_clowder_database_ssl_mode_and_rds_ca_go_to_pg_params(cli, tmp_path):
    document = full_clowder_document()
    document["database"]["sslMode"] = "verify-full"
    document["database"]["rdsCa"] = RDS_CA_TEXT
    _, shown = show(cli, env={"ACG_CONFIG": clowder_json(tmp_path, document)})
    params = dict(pair.split("=", 1) for pair in shown["storage"]["pg_params"].split())
    assert params["sslmode"] == "verify-full"
    assert Path(params["sslrootcert"]).read_text() == RDS_CA_TEXT


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "not found"),
        ("{not json", "JSON"),
        ("[1, 2]", "ACG_CONFIG"),
    ],
)
def test_broken_clowder_file_is_a_configuration_error(cli, tmp_path, content, fragment):
    path = tmp_path / "cdappconfig.json"
    if content is not None:
        path.write_text(content)
    result = cli("--show-configuration", env={"ACG_CONFIG": str(path)})
    line = assert_one_line_error(result, 1, fragment)
    assert "ACG_CONFIG" in line


# --- secrets ------------------------------------------------------------------------------------

SECRETS = {
    "STORAGE__PG_PASSWORD": "pg-pw-Zq81secret",
    "BROKER__SASL_PASSWORD": "sasl-pw-Xk27secret",
    "SENTRY__DSN": "https://dsnkey4471@sentry.example/42",
    "CLOUDWATCH__AWS_ACCESS_ID": "AKIAEXAMPLE5521",
    "CLOUDWATCH__AWS_SECRET_KEY": "aws-secret-Qm90secret",
    "CLOUDWATCH__AWS_SESSION_TOKEN": "aws-token-Lp33secret",
}


def test_show_configuration_never_prints_secrets_from_environment(cli):
    result = cli("--show-configuration", env={PREFIX + k: v for k, v in SECRETS.items()})
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for value in SECRETS.values():
        assert value not in output
    assert "dsnkey4471" not in output
    _, shown = parse_shown(result.stdout)
    # it still says they are set (different from the empty default)
    assert shown["storage"]["pg_password"] != ""
    assert shown["broker"]["sasl_password"] != ""
    assert shown["sentry"]["dsn"] != ""
    assert shown["cloudwatch"]["aws_secret_key"] != ""


def test_show_configuration_never_prints_secrets_from_file_or_clowder(cli, tmp_path):
    named = write_toml(
        tmp_path / "c.toml",
        '[storage]\npg_password = "file-pg-pw-Hh55"\n[broker]\nsasl_password = "file-sasl-pw-Jj66"\n'
        '[sentry]\ndsn = "https://filedsn8833@sentry.example/1"\n'
        '[cloudwatch]\naws_secret_key = "file-aws-secret-Kk77"\naws_access_id = "file-aws-id-Ll88"\n'
        'aws_session_token = "file-aws-token-Mm99"\n',
    )
    result = cli("--show-configuration", env={
        "CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(named),
        "ACG_CONFIG": clowder_json(tmp_path, full_clowder_document()),
    })
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for secret in ("file-pg-pw-Hh55", "file-sasl-pw-Jj66", "filedsn8833", "file-aws-secret-Kk77",
                   "file-aws-id-Ll88", "file-aws-token-Mm99", "clowder-kafka-secret-9f3a",
                   "clowder-db-secret-77c1", "clowder-admin-secret"):
        assert secret not in output, secret


def test_configuration_error_message_does_not_echo_a_password(cli):
    """A bad value elsewhere must not drag the password into the error line."""
    result = cli("--show-configuration", env={PREFIX + "STORAGE__PG_PASSWORD": "pg-pw-Zq81secret",
                                              PREFIX + "STORAGE__PG_PORT": "not-a-port"})
    assert_one_line_error(result, 1, PREFIX + "STORAGE__PG_PORT")
    assert "pg-pw-Zq81secret" not in result.stdout + result.stderr


def test_mistyped_secret_in_file_is_rejected_without_echoing_it(cli, tmp_path):
    path = write_toml(tmp_path / "c.toml", "[storage]\npg_password = 987654321\n")
    result = cli("--show-configuration", env={"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(path)})
    assert_one_line_error(result, 1, "pg_password")
    assert "987654321" not in result.stdout + result.stderr


def test_clowder_without_sasl_keeps_the_original_not_used_sasl_keys_harmless(cli, tmp_path):
    """The original's config.toml (sasl_mechanism = "not-used", PLAINTEXT) under a Clowder file whose
    brokers have no SASL: loads, and the Kafka settings come from Clowder."""
    named = write_toml(tmp_path / "c.toml", '[broker]\nsecurity_protocol = "PLAINTEXT"\nsasl_mechanism = "not-used"\n')
    document = {"kafka": {"brokers": [{"hostname": "plain-kafka.example", "port": 9092}], "topics": []}}
    result = cli("--show-configuration", env={"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(named),
                                              "ACG_CONFIG": clowder_json(tmp_path, document)})
    assert result.returncode == 0, result.stderr
    _, shown = parse_shown(result.stdout)
    assert shown["broker"]["addresses"] == "plain-kafka.example:9092"
    assert "sasl_mechanism" not in result.stderr  # not read for PLAINTEXT: not even a warning


def test_a_value_clowder_provides_is_named_as_clowder_s_in_errors(cli, tmp_path):
    document = full_clowder_document()
    document["database"]["port"] = -5
    result = cli("--db-init", env={"ACG_CONFIG": clowder_json(tmp_path, document),
                                   PREFIX + "STORAGE__PG_PORT": "5432"})
    line = assert_one_line_error(result, 1, "ACG_CONFIG", "pg_port")
    assert PREFIX + "STORAGE__PG_PORT" not in line
