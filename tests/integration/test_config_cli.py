"""The configuration at the command line: exit statuses and the one stderr line (SPEC sections 5 and 6).

What load() makes of files, environment and Clowder is tested in-process in tests/unit/test_config*.py;
these few run the console script to check what the operator sees: exit status 1 and one line
"ccx-notification-writer: <the load error>" for a configuration it refuses, warnings that do not fail.
"""

from __future__ import annotations

import ast
import contextlib
import json
from pathlib import Path

from writer import config as config_module
from writer import exit_codes

PREFIX = config_module.ENV_PREFIX
FILE_VARIABLE = config_module.CONFIG_FILE_VARIABLE


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


def load_error(directory: Path, environ: dict[str, str]) -> str:
    """What config.load() refuses this environment with, in ``directory`` (the command's working directory)."""
    with contextlib.chdir(directory):
        try:
            config_module.load(environ)
        except config_module.ConfigError as error:
            return str(error)
    raise AssertionError(f"load() accepted {environ}")


def assert_one_line_error(result, line: str) -> None:
    """Exit status 1 (configuration error), stderr exactly ``line``, nothing printed on stdout."""
    assert result.returncode == exit_codes.CONFIGURATION_ERROR, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.strip().splitlines() == [line], result.stderr
    assert result.stdout == ""


def test_show_configuration_prints_what_load_gives_without_the_secrets(cli, tmp_path):
    secrets = {"STORAGE__PG_PASSWORD": "pg-pw-Zq81secret", "SENTRY__DSN": "https://dsnkey4471@sentry.example/42",
               "STORAGE__PG_PARAMS": "sslmode=prefer password=pp-Wd02secret"}
    env = {**{PREFIX + key: value for key, value in secrets.items()}, PREFIX + "STORAGE__PG_PORT": "6543",
           PREFIX + "BROKER__ENABLED": "f"}
    result = cli("--show-configuration", env=env)
    assert result.returncode == exit_codes.OK and result.stderr == "", result.stderr
    source, shown = parse_shown(result.stdout)
    assert source == "(none; defaults and environment)"
    with contextlib.chdir(tmp_path):
        assert shown == config_module.load(env).redacted()
    assert shown["storage"]["pg_port"] == 6543 and shown["broker"]["enabled"] is False
    for text in ("pg-pw-Zq81secret", "dsnkey4471", "pp-Wd02secret"):
        assert text not in result.stdout


def test_show_configuration_hides_pg_params_written_as_a_uri_and_names_the_refusal(cli):
    env = {PREFIX + "STORAGE__PG_PARAMS": "postgresql://writer:uriPW4417@db.example/notification",
           PREFIX + "BROKER__ENABLED": "f"}
    result = cli("--show-configuration", env=env)
    assert result.returncode == exit_codes.OK, result.stderr
    assert parse_shown(result.stdout)[1]["storage"]["pg_params"] == config_module.HIDDEN
    assert config_module.PG_PARAMS_URI in result.stderr
    assert "uriPW4417" not in result.stdout + result.stderr


def test_a_wrong_typed_value_is_status_1_and_one_line(cli, tmp_path):
    env = {PREFIX + "STORAGE__PG_PORT": "abc", PREFIX + "STORAGE__PG_PASSWORD": "pg-pw-Zq81secret"}
    result = cli("--show-configuration", env=env)
    assert_one_line_error(result, f"ccx-notification-writer: {load_error(tmp_path, env)}")
    assert PREFIX + "STORAGE__PG_PORT" in result.stderr and "pg-pw-Zq81secret" not in result.stderr


def test_a_missing_configuration_file_fails_a_database_operation_with_status_1(cli, tmp_path):
    env = {FILE_VARIABLE: str(tmp_path / "nope.toml")}
    assert_one_line_error(cli("--db-init", env=env), f"ccx-notification-writer: {load_error(tmp_path, env)}")


def test_a_broken_clowder_document_is_status_1(cli, tmp_path):
    path = tmp_path / "cdappconfig.json"
    path.write_text("{not json")
    env = {"ACG_CONFIG": str(path)}
    # The command imports app-common-python with ACG_CONFIG set: its import-time read is turned into this line too.
    result = cli("--show-configuration", env=env)
    assert_one_line_error(result, f"ccx-notification-writer: {load_error(tmp_path, env)}")
    assert "ACG_CONFIG" in result.stderr


def test_a_bad_value_fails_only_the_operations_that_use_it(cli, database, tmp_path):
    env = {**database.env(), PREFIX + "BROKER__SECURITY_PROTOCOL": "TLS"}
    with contextlib.chdir(tmp_path):
        refusal = config_module.load(env).problems(config_module.KAFKA)[0]
    # --show-configuration shows it and names it in one warning line, exit 0
    shown = cli("--show-configuration", env=env)
    assert shown.returncode == exit_codes.OK, shown.stderr
    warnings = shown.stderr.strip().splitlines()
    assert len(warnings) == 1 and "refused by the operations that use it" in warnings[0] and refusal in warnings[0]
    # the operations that use the broker refuse it before doing anything: the service and --check-kafka
    assert_one_line_error(cli(env=env, timeout=60), f"ccx-notification-writer: {refusal}")
    assert_one_line_error(cli("--check-kafka", env=env), f"ccx-notification-writer: {refusal}")
    # one that does not use it does its work
    initialized = cli("--db-init", env=env)
    assert initialized.returncode == exit_codes.OK, initialized.stderr


def test_unknown_keys_of_file_and_environment_share_one_warning_line(cli, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[storage]\nno_such_key = "x"\npg_host = "h"\n[nosuchsection]\nkey = 1\n')
    result = cli("--show-configuration", env={FILE_VARIABLE: str(path), PREFIX + "BROKER__ADDRESS": "k:1"})
    assert result.returncode == exit_codes.OK, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ignoring unknown configuration keys" in lines[0]
    for name in ("no_such_key", "[nosuchsection]", PREFIX + "BROKER__ADDRESS"):
        assert name in lines[0]
    assert parse_shown(result.stdout)[1]["storage"]["pg_host"] == "h"


def test_an_unknown_log_level_is_one_warning_line(cli):
    env = {PREFIX + "LOGGING__LOG_LEVEL": "trace", PREFIX + "LOGGING__DEBUG": "true"}
    shown = cli("--show-configuration", env=env)
    assert shown.returncode == exit_codes.OK, shown.stderr
    assert parse_shown(shown.stdout)[1]["logging"]["log_level"] == "INFO"
    lines = shown.stderr.strip().splitlines()
    assert len(lines) == 1 and "WARNING" in lines[0] and PREFIX + "LOGGING__LOG_LEVEL" in lines[0], shown.stderr
    assert "'TRACE'" in lines[0]
    assert "started: show-configuration" not in shown.stderr  # INFO: the debug lines stay out


def test_a_clowder_document_is_read_by_the_command(cli, tmp_path):
    path = tmp_path / "cdappconfig.json"
    path.write_text(json.dumps({"kafka": {"brokers": [{"hostname": "clowder-kafka.example", "port": 9096}],
                                          "topics": []}}))
    result = cli("--show-configuration", env={"ACG_CONFIG": str(path), PREFIX + "BROKER__ADDRESSES": "env:1"})
    assert result.returncode == exit_codes.OK, result.stderr
    assert parse_shown(result.stdout)[1]["broker"]["addresses"] == "clowder-kafka.example:9096"
