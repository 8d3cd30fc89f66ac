"""Where the original is lenient, so are we (SPEC section 6): an unknown log level is warned about and the
default used; booleans in every spelling Go's strconv.ParseBool accepts; a setting an operation does not use
cannot make that operation fail. The command line's table of operations says which settings each one uses."""

from __future__ import annotations

import json

import pytest

from tests.harness.config import PREFIX, check_error, load_error, load_in
from writer.cli import OPERATIONS, SERVICE_NEEDS
from writer.config import DATABASE, KAFKA, LOGGING, SERVICE, Config


def refusal(config: Config, flag: str | None) -> str | None:
    """The one-line refusal of the operation ``flag`` (None: the service), or None when it would run."""
    needs = SERVICE_NEEDS if flag is None else OPERATIONS[flag].needs
    found = config.problems(LOGGING, *needs)  # every operation logs
    return found[0] if found else None


@pytest.mark.parametrize("level", ["trace", "LOUD"])
def test_an_unknown_log_level_is_warned_about_and_the_default_used(tmp_path, level):
    config = load_in(tmp_path, {PREFIX + "LOGGING__LOG_LEVEL": level, PREFIX + "LOGGING__DEBUG": "true"})
    assert config.logging.log_level == "INFO"
    assert config.warnings == [f"environment variable {PREFIX}LOGGING__LOG_LEVEL: unknown level "
                               f"{level.upper()!r} ignored, logging at INFO"]
    # no operation is failed by it
    assert config.problems(LOGGING, KAFKA, DATABASE, SERVICE) == []


def test_a_known_level_gives_no_warning(tmp_path):
    config = load_in(tmp_path, {PREFIX + "LOGGING__LOG_LEVEL": "warn"})
    assert config.logging.log_level == "WARN" and config.warnings == []


GO_TRUE = ["1", "t", "T", "TRUE", "true", "True"]
GO_FALSE = ["0", "f", "F", "FALSE", "false", "False"]


@pytest.mark.parametrize("raw, expected", [(r, True) for r in GO_TRUE] + [(r, False) for r in GO_FALSE])
def test_go_boolean_spellings_are_accepted(tmp_path, raw, expected):
    # both defaults flipped: log_sql_queries defaults to False, enabled to True
    config = load_in(tmp_path, {PREFIX + "STORAGE__LOG_SQL_QUERIES": raw, PREFIX + "BROKER__ENABLED": raw})
    assert config.storage.log_sql_queries is expected
    assert config.broker.enabled is expected


@pytest.mark.parametrize("raw", ["2", "tru", "y-e-s", "maybe"])
def test_other_boolean_spellings_are_still_refused(tmp_path, raw):
    assert load_error(tmp_path, {PREFIX + "BROKER__ENABLED": raw}) == (
        f"environment variable {PREFIX}BROKER__ENABLED: expected a boolean (true/false), got {raw!r}")


# (variable, value, operations that use it and must refuse it, operations that do not use it); None: the service
VALUE_USED_BY = [
    ("STORAGE__PG_PORT", "-1", [None, "db-init", "migrate"], ["check-kafka", "show-configuration"]),
    ("STORAGE__DB_DRIVER", "sqlite3", [None, "db-init"], ["check-kafka"]),
    ("STORAGE__DB_DRIVER", "mysql", [None], ["check-kafka"]),  # the service needs a database too
    ("BROKER__SECURITY_PROTOCOL", "TLS", [None, "check-kafka"], ["db-init", "db-cleanup"]),
    ("PROCESSING__BATCH_SIZE", "0", [None], ["db-init", "check-kafka"]),
    ("PROCESSING__MAX_BATCH_BYTES", "0", [None], ["db-init", "check-kafka"]),
    ("METRICS__ADDRESS", "no-port-here", [None], ["db-init"]),
    ("METRICS__NAMESPACE", "notification-writer", [None], ["db-init"]),
    ("BROKER__PARTITION_ASSIGNMENT_STRATEGY", "sticky-ish", [None], ["db-init"]),
]


@pytest.mark.parametrize("variable, raw, refusing, indifferent", VALUE_USED_BY)
def test_a_bad_value_fails_only_the_operations_that_use_it(tmp_path, variable, raw, refusing, indifferent):
    config = load_in(tmp_path, {PREFIX + variable: raw})  # loading never refuses a value of the right type
    # --show-configuration names it in a warning line
    assert any(PREFIX + variable in line for line in config.problems(KAFKA, DATABASE, SERVICE))
    for flag in refusing:
        line = refusal(config, flag)
        assert line is not None and line.startswith(f"environment variable {PREFIX}{variable}: "), (flag, line)
    for flag in indifferent:
        assert refusal(config, flag) is None, flag


def test_the_refusals_are_worded_for_the_operator(tmp_path):
    config = load_in(tmp_path, {PREFIX + "STORAGE__PG_PORT": "-1", PREFIX + "PROCESSING__BATCH_SIZE": "0",
                                PREFIX + "BROKER__SECURITY_PROTOCOL": "tls",
                                PREFIX + "METRICS__ADDRESS": "no-port-here"})
    assert check_error(config, DATABASE) == (
        f"environment variable {PREFIX}STORAGE__PG_PORT: must not be negative, got -1")
    assert check_error(config, KAFKA) == (f"environment variable {PREFIX}BROKER__SECURITY_PROTOCOL: must be one of "
                                          f"PLAINTEXT, SASL_PLAINTEXT, SASL_SSL, SSL, got 'TLS'")
    assert sorted(config.problems(SERVICE)) == [
        f"environment variable {PREFIX}METRICS__ADDRESS: expected [host]:port, got 'no-port-here'",
        f"environment variable {PREFIX}PROCESSING__BATCH_SIZE: must be a positive integer, got 0",
    ]


def test_sasl_mechanism_is_read_only_for_sasl_protocols(tmp_path):
    plain = {PREFIX + "BROKER__SECURITY_PROTOCOL": "PLAINTEXT", PREFIX + "BROKER__SASL_MECHANISM": "not-used"}
    assert refusal(load_in(tmp_path, plain), "check-kafka") is None
    sasl = load_in(tmp_path, {**plain, PREFIX + "BROKER__SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    line = check_error(sasl, KAFKA)
    assert line.startswith(f"environment variable {PREFIX}BROKER__SASL_MECHANISM: ") and "NOT-USED" in line


@pytest.mark.parametrize("spelling", ["postgres", "Postgres", "POSTGRES"])
def test_db_driver_postgres_in_any_case(tmp_path, spelling):
    config = load_in(tmp_path, {PREFIX + "STORAGE__DB_DRIVER": spelling})
    assert config.storage.db_driver == "postgres"
    assert refusal(config, "db-init") is None


def test_a_clowder_broker_protocol_we_do_not_know_fails_only_the_broker_operations(tmp_path, monkeypatch):
    monkeypatch.delenv("ACG_CONFIG", raising=False)  # only the environ given to load() names a document
    path = tmp_path / "cdappconfig.json"
    path.write_text(json.dumps({"kafka": {"brokers": [
        {"hostname": "k", "port": 1, "securityProtocol": "CARRIER_PIGEON",
         "sasl": {"username": "u", "password": "p", "saslMechanism": "OAUTHBEARER"}}]}}))
    config = load_in(tmp_path, {"ACG_CONFIG": str(path)})
    assert any("CARRIER_PIGEON" in line for line in config.problems(KAFKA, DATABASE, SERVICE))
    assert refusal(config, "db-init") is None  # does not use the broker
    line = refusal(config, "check-kafka")
    assert line is not None and line.startswith("ACG_CONFIG (broker security_protocol): ") and "CARRIER_PIGEON" in line
    assert refusal(config, None) is not None  # the service uses the broker
