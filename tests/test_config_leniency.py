"""Where the original is lenient, so are we: an unknown log level is warned about and the default
used; booleans in every spelling Go's strconv.ParseBool accepts."""

from __future__ import annotations

import pytest

from tests.test_config import assert_one_line_error, parse_shown

PREFIX = "CCX_NOTIFICATION_WRITER__"


@pytest.mark.parametrize("level", ["trace", "LOUD"])
def test_an_unknown_log_level_is_warned_about_and_the_default_used(cli, database, level):
    env = {**database.env(), PREFIX + "LOGGING__LOG_LEVEL": level, PREFIX + "LOGGING__DEBUG": "true"}
    shown = cli("--show-configuration", env=env)
    assert shown.returncode == 0, shown.stderr
    assert parse_shown(shown.stdout)[1]["logging"]["log_level"] == "INFO"
    warning = [line for line in shown.stderr.splitlines() if PREFIX + "LOGGING__LOG_LEVEL" in line]
    assert len(warning) == 1 and "WARNING" in warning[0] and repr(level.upper()) in warning[0]
    assert "started: show-configuration" not in shown.stderr  # INFO: the debug lines stay out
    # an operation that does its work is not failed by it either
    initialized = cli("--db-init", env=env)
    assert initialized.returncode == 0, initialized.stderr


def test_a_known_level_gives_no_warning(cli):
    shown = cli("--show-configuration", env={PREFIX + "LOGGING__LOG_LEVEL": "warn"})
    assert shown.returncode == 0 and "unknown level" not in shown.stderr
    assert parse_shown(shown.stdout)[1]["logging"]["log_level"] == "WARN"


GO_TRUE = ["1", "t", "T", "TRUE", "true", "True"]
GO_FALSE = ["0", "f", "F", "FALSE", "false", "False"]


@pytest.mark.parametrize("raw, expected", [(r, True) for r in GO_TRUE] + [(r, False) for r in GO_FALSE])
def test_go_boolean_spellings_are_accepted(cli, raw, expected):
    # both defaults flipped: log_sql_queries defaults to False, enabled to True
    for variable, key in (("STORAGE__LOG_SQL_QUERIES", ("storage", "log_sql_queries")),
                          ("BROKER__ENABLED", ("broker", "enabled"))):
        result = cli("--show-configuration", env={PREFIX + variable: raw})
        assert result.returncode == 0, result.stderr
        assert parse_shown(result.stdout)[1][key[0]][key[1]] is expected


@pytest.mark.parametrize("raw", ["2", "tru", "y-e-s", "maybe"])
def test_other_boolean_spellings_are_still_refused(cli, raw):
    assert_one_line_error(cli("--show-configuration", env={PREFIX + "BROKER__ENABLED": raw}), 1,
                          PREFIX + "BROKER__ENABLED")


def test_a_clowder_broker_protocol_we_do_not_know_fails_only_the_broker_operations(cli, database, tmp_path):
    import json

    path = tmp_path / "cdappconfig.json"
    path.write_text(json.dumps({"kafka": {"brokers": [
        {"hostname": "k", "port": 1, "securityProtocol": "CARRIER_PIGEON",
         "sasl": {"username": "u", "password": "p", "saslMechanism": "OAUTHBEARER"}}]}}))
    env = {**database.env(), "ACG_CONFIG": str(path)}
    shown = cli("--show-configuration", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "CARRIER_PIGEON" in shown.stderr and "refused by the operations that use it" in shown.stderr
    initialized = cli("--db-init", env=env)  # does not use the broker
    assert initialized.returncode == 0, initialized.stderr
    line = assert_one_line_error(cli("--check-kafka", env=env), 1, "ACG_CONFIG", "security_protocol")
    assert "CARRIER_PIGEON" in line
    assert_one_line_error(cli(env=env, timeout=60), 1, "ACG_CONFIG")  # the service uses the broker
