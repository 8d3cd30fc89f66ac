"""Configuration (SPEC section 6): defaults < TOML file < environment, and the load-time errors.

config.load(environ) is pure: every test runs it in-process with a dict environment and files in
tmp_path. What the command line adds (exit status, the one stderr line) is tests/integration/test_config_cli.py.
"""

from __future__ import annotations

import pytest

from tests.harness.config import FILE_VARIABLE, PREFIX, load_error, load_in, write_toml
from writer.config import SCHEMA

# --- sources and precedence ----------------------------------------------------------------------


def test_config_toml_in_working_directory_is_read(tmp_path):
    write_toml(tmp_path / "config.toml", '[storage]\npg_host = "from-default-file"\npg_port = 6000\n')
    config = load_in(tmp_path)
    assert config.source_file == "config.toml"
    assert config.storage.pg_host == "from-default-file"
    assert config.storage.pg_port == 6000
    assert config.storage.pg_db_name == SCHEMA["storage"]["pg_db_name"]
    assert config.origins[("storage", "pg_port")] == "config.toml: [storage] pg_port"


def test_named_file_is_read_and_default_file_ignored(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    write_toml(workdir / "config.toml", '[storage]\npg_host = "from-default-file"\n')
    named = write_toml(tmp_path / "elsewhere.toml", '[storage]\npg_db_name = "named_db"\n')
    config = load_in(workdir, {FILE_VARIABLE: str(named)})
    assert config.source_file == str(named)
    assert config.storage.pg_db_name == "named_db"
    # the default file in the working directory was not read at all
    assert config.storage.pg_host == SCHEMA["storage"]["pg_host"]


def test_an_empty_file_variable_means_the_default_file(tmp_path):
    write_toml(tmp_path / "config.toml", '[storage]\npg_host = "from-default-file"\n')
    config = load_in(tmp_path, {FILE_VARIABLE: ""})
    assert config.source_file == "config.toml" and config.storage.pg_host == "from-default-file"


def test_precedence_defaults_file_environment(tmp_path):
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
    config = load_in(tmp_path, {
        FILE_VARIABLE: str(named),
        PREFIX + "STORAGE__PG_HOST": "env-host",
        PREFIX + "BROKER__TOPIC": "env.topic",
        PREFIX + "TRACKER__SERVICE_NAME": "env-service",
    })
    assert config.storage.pg_host == "env-host"  # env beats file
    assert config.broker.topic == "env.topic"  # env beats file
    assert config.tracker.service_name == "env-service"  # env beats default
    assert config.storage.pg_db_name == "file_db"  # file beats default
    assert config.broker.addresses == "file-kafka:9092"
    assert config.logging.log_level == "WARNING"
    assert config.metrics.namespace == "file_ns"
    assert config.storage.pg_username == SCHEMA["storage"]["pg_username"]  # untouched default
    assert config.origins[("storage", "pg_host")] == f"environment variable {PREFIX}STORAGE__PG_HOST"


def test_every_key_can_be_set_from_the_environment(tmp_path):
    """Each key of every section has its CCX_NOTIFICATION_WRITER__SECTION__KEY variable."""
    # A valid value of each key's type, different from its default.
    chosen = {
        ("broker", "security_protocol"): "SASL_SSL",
        ("broker", "sasl_mechanism"): "SCRAM-SHA-512",
        ("broker", "auto_offset_reset"): "latest",
        ("broker", "partition_assignment_strategy"): "range",
        ("storage", "db_driver"): "postgres",
        ("logging", "log_level"): "DEBUG",
        ("metrics", "address"): "127.0.0.1:9999",
    }
    env, expected = {}, {}
    for section, keys in SCHEMA.items():
        for key, default in keys.items():
            if (section, key) in chosen:
                value: object = chosen[(section, key)]
            elif isinstance(default, bool):
                value = not default
            elif isinstance(default, int):
                value = default + 7
            else:
                value = f"env-{section}-{key}"
            raw = str(value).lower() if isinstance(value, bool) else str(value)
            env[f"{PREFIX}{section.upper()}__{key.upper()}"] = raw
            expected[(section, key)] = value
    values = load_in(tmp_path, env).as_dict()
    for (section, key), value in expected.items():
        assert values[section][key] == value, (section, key)


@pytest.mark.parametrize(
    "variable, raw, section, key, expected",
    [
        ("STORAGE__PG_PORT", "6543", "storage", "pg_port", 6543),
        ("STORAGE__PG_PORT", " 15432 ", "storage", "pg_port", 15432),
        ("PROCESSING__BATCH_SIZE", "25", "processing", "batch_size", 25),
        ("PROCESSING__MAX_BATCH_BYTES", "1048576", "processing", "max_batch_bytes", 1048576),
        ("STORAGE__LOG_SQL_QUERIES", "true", "storage", "log_sql_queries", True),
        ("STORAGE__LOG_SQL_QUERIES", "1", "storage", "log_sql_queries", True),
        ("STORAGE__LOG_SQL_QUERIES", "TRUE", "storage", "log_sql_queries", True),
        ("BROKER__ENABLED", "false", "broker", "enabled", False),
        ("BROKER__ENABLED", "0", "broker", "enabled", False),
        ("LOGGING__DEBUG", "yes", "logging", "debug", True),
        ("CLOUDWATCH__DEBUG", "off", "cloudwatch", "debug", False),
    ],
)
def test_environment_ints_and_booleans_are_parsed(tmp_path, variable, raw, section, key, expected):
    value = getattr(getattr(load_in(tmp_path, {PREFIX + variable: raw}), section), key)
    assert value == expected
    assert type(value) is type(expected)


def test_toml_native_types_are_kept(tmp_path):
    named = write_toml(tmp_path / "c.toml",
                       "[storage]\npg_port = 7777\nlog_sql_queries = true\n[broker]\nenabled = false\n")
    config = load_in(tmp_path, {FILE_VARIABLE: str(named)})
    assert config.storage.pg_port == 7777
    assert config.storage.log_sql_queries is True
    assert config.broker.enabled is False


def test_lower_case_choices_are_normalized(tmp_path):
    config = load_in(tmp_path, {PREFIX + "BROKER__SECURITY_PROTOCOL": "sasl_ssl",
                                PREFIX + "BROKER__SASL_MECHANISM": "scram-sha-256",
                                PREFIX + "LOGGING__LOG_LEVEL": "debug",
                                PREFIX + "BROKER__AUTO_OFFSET_RESET": " Latest ",
                                PREFIX + "STORAGE__DB_DRIVER": "POSTGRES"})
    assert config.broker.security_protocol == "SASL_SSL"
    assert config.broker.sasl_mechanism == "SCRAM-SHA-256"
    assert config.logging.log_level == "DEBUG"
    assert config.broker.auto_offset_reset == "latest"
    assert config.storage.db_driver == "postgres"


def test_empty_environment_value_counts_as_unset(tmp_path):
    path = write_toml(tmp_path / "c.toml", '[storage]\npg_host = "from-file"\npg_port = 6000\n'
                                           '[logging]\nlog_level = "ERROR"\n')
    config = load_in(tmp_path, {FILE_VARIABLE: str(path), PREFIX + "STORAGE__PG_HOST": "",
                                PREFIX + "STORAGE__PG_PORT": "", PREFIX + "LOGGING__LOG_LEVEL": "",
                                PREFIX + "BROKER__ENABLED": ""})
    assert config.storage.pg_host == "from-file"
    assert config.storage.pg_port == 6000
    assert config.logging.log_level == "ERROR"
    assert config.broker.enabled is True
    assert config.ignored == []


def test_empty_log_level_in_a_file_is_the_default_level(tmp_path):
    path = write_toml(tmp_path / "c.toml", '[logging]\nlog_level = ""\n')
    config = load_in(tmp_path, {FILE_VARIABLE: str(path)})
    assert config.logging.log_level == "INFO"
    assert config.warnings == []


# --- unknown keys: collected for one warning line, never fatal ------------------------------------


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
def test_unknown_environment_variable_is_collected_and_the_rest_read(tmp_path, variable):
    config = load_in(tmp_path, {variable: "x", PREFIX + "STORAGE__PG_HOST": "still-read",
                                "UNRELATED_VARIABLE": "not ours"})
    assert config.ignored == [variable]
    assert config.storage.pg_host == "still-read"


def test_unknown_keys_of_file_and_environment_are_collected_together(tmp_path):
    path = write_toml(tmp_path / "c.toml", '[storage]\nno_such_key = "x"\npg_host = "h"\n[nosuchsection]\nkey = 1\n')
    config = load_in(tmp_path, {FILE_VARIABLE: str(path), PREFIX + "BROKER__ADDRESS": "k:1"})
    assert config.ignored == [f"{path}: [storage] no_such_key", f"{path}: [nosuchsection]", PREFIX + "BROKER__ADDRESS"]
    assert config.storage.pg_host == "h"


# --- errors: load() raises one line naming where the value came from ------------------------------


@pytest.mark.parametrize(
    "variable, raw, expected",
    [
        ("STORAGE__PG_PORT", "abc", "expected an integer, got 'abc'"),
        ("STORAGE__PG_PORT", "54.32", "expected an integer, got '54.32'"),
        ("BROKER__ENABLED", "maybe", "expected a boolean (true/false), got 'maybe'"),
        ("STORAGE__LOG_SQL_QUERIES", "2", "expected a boolean (true/false), got '2'"),
        ("LOGGING__USE_STDERR", "sometimes", "expected a boolean (true/false), got 'sometimes'"),
    ],
)
def test_wrong_typed_environment_value_is_rejected_naming_the_variable(tmp_path, variable, raw, expected):
    assert load_error(tmp_path, {PREFIX + variable: raw}) == f"environment variable {PREFIX}{variable}: {expected}"


def test_missing_named_file_is_an_error(tmp_path):
    missing = tmp_path / "does-not-exist.toml"
    assert load_error(tmp_path, {FILE_VARIABLE: str(missing)}) == f"configuration file {str(missing)!r} not found"


def test_toml_syntax_error_is_an_error(tmp_path):
    broken = write_toml(tmp_path / "broken.toml", '[storage\npg_host = "x"\n')
    message = load_error(tmp_path, {FILE_VARIABLE: str(broken)})
    assert message.startswith(f"configuration file {str(broken)!r} is not valid TOML: ")


def test_toml_syntax_error_in_default_file_is_an_error(tmp_path):
    write_toml(tmp_path / "config.toml", "pg_host = = 1\n")
    assert load_error(tmp_path, {}).startswith("configuration file 'config.toml' is not valid TOML: ")


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[storage]\npg_port = "abc"\n', "[storage] pg_port: expected an integer, got 'abc'"),
        ("[storage]\npg_port = true\n", "[storage] pg_port: expected an integer, got True"),
        ('[broker]\nenabled = "sometimes"\n', "[broker] enabled: expected a boolean (true/false), got 'sometimes'"),
        ("[broker]\ntopic = 42\n", "[broker] topic: expected a string, got 42"),
        ("[broker]\nsecurity_protocol = 2\n", "[broker] security_protocol: expected a string, got 2"),
        ('storage = "not a table"\n', "[storage] must be a table"),
    ],
)
def test_invalid_value_in_file_is_an_error(tmp_path, text, expected):
    path = write_toml(tmp_path / "c.toml", text)
    # A value's error names the key as "<file>: [section] key"; a section that is no table names the file.
    where = f"configuration file {str(path)!r}" if expected.endswith("must be a table") else str(path)
    assert load_error(tmp_path, {FILE_VARIABLE: str(path)}) == f"{where}: {expected}"


def test_config_file_that_is_a_directory_is_an_error(tmp_path):
    message = load_error(tmp_path, {FILE_VARIABLE: str(tmp_path)})
    assert message.startswith(f"configuration file {str(tmp_path)!r} cannot be read: ")
