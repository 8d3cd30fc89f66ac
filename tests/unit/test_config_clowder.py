"""Clowder (ACG_CONFIG) overrides file and environment; secrets never leave the configuration object.

In-process: app-common-python reads os.environ["ACG_CONFIG"] once at import (empty here, harmless);
config.load() then loads the document named by the environ it is given.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.harness.config import FILE_VARIABLE, PREFIX, check_error, load_error, load_in, write_toml
from writer import config as config_module
from writer import database
from writer.config import DATABASE, HIDDEN, KAFKA, LOGGING, SERVICE

CA_TEXT = "-----BEGIN CERTIFICATE-----\nMIIBclowderTESTca\n-----END CERTIFICATE-----\n"
RDS_CA_TEXT = "-----BEGIN CERTIFICATE-----\nMIIBrdsTESTca\n-----END CERTIFICATE-----\n"


@pytest.fixture(autouse=True)
def _no_clowder_in_this_process(monkeypatch):
    # Only the environ given to load() may point at a Clowder document.
    monkeypatch.delenv("ACG_CONFIG", raising=False)


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


def test_clowder_overrides_file_and_environment(tmp_path):
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
    config = load_in(tmp_path, {
        FILE_VARIABLE: str(named),
        PREFIX + "STORAGE__PG_HOST": "env-host",
        PREFIX + "STORAGE__PG_PASSWORD": "env-password",
        PREFIX + "BROKER__ADDRESSES": "env-kafka:9092",
        PREFIX + "BROKER__GROUP": "env-group",
        "ACG_CONFIG": clowder_json(tmp_path, full_clowder_document()),
    })
    assert config.source_file == str(named)
    broker, storage = config.broker, config.storage
    assert broker.addresses == "clowder-kafka-0.example:9096,clowder-kafka-1.example:9097"
    assert broker.security_protocol == "SASL_SSL"
    assert broker.sasl_mechanism == "SCRAM-SHA-512"
    assert broker.sasl_username == "clowder-user"
    assert broker.sasl_password == "clowder-kafka-secret-9f3a"
    assert broker.topic == "ccx.ocp.results-env-1234"  # requestedName -> name
    assert config.tracker.topic == "platform.payload-status-env-1234"
    assert broker.group == "env-group"  # not something Clowder provides: the environment stays
    assert Path(broker.cert_path).read_text() == CA_TEXT
    assert storage.pg_host == "clowder-db.example"
    assert storage.pg_port == 5433
    assert storage.pg_db_name == "clowder_db"
    assert storage.pg_username == "clowder_db_user"
    assert storage.pg_password == "clowder-db-secret-77c1"
    assert config.origins[("storage", "pg_host")] == "ACG_CONFIG (storage pg_host)"
    assert config.problems(LOGGING, KAFKA, DATABASE, SERVICE) == []


def test_clowder_password_is_the_one_used_to_connect(tmp_path):
    config = load_in(tmp_path, {"ACG_CONFIG": clowder_json(tmp_path, full_clowder_document()),
                                PREFIX + "STORAGE__PG_PASSWORD": "env-password"})
    info = conninfo_to_dict(database.conninfo(config))
    assert info["password"] == "clowder-db-secret-77c1"
    assert info["host"] == "clowder-db.example"
    assert info["port"] == "5433"
    assert info["dbname"] == "clowder_db"
    assert info["user"] == "clowder_db_user"


def test_clowder_topic_mapping_leaves_unmapped_topics_alone(tmp_path):
    config = load_in(tmp_path, {PREFIX + "BROKER__TOPIC": "my.own.topic",
                                "ACG_CONFIG": clowder_json(tmp_path, full_clowder_document())})
    assert config.broker.topic == "my.own.topic"
    assert config.tracker.topic == ""


def test_clowder_ssl_without_sasl(tmp_path):
    document = {"kafka": {"brokers": [{"hostname": "tls-kafka.example", "port": 9093, "cacert": CA_TEXT,
                                       "securityProtocol": "SSL"}], "topics": []}}
    config = load_in(tmp_path, {"ACG_CONFIG": clowder_json(tmp_path, document),
                                PREFIX + "STORAGE__PG_HOST": "env-host"})
    assert config.broker.addresses == "tls-kafka.example:9093"
    assert config.broker.security_protocol == "SSL"
    assert config.broker.sasl_mechanism == ""
    assert config.broker.sasl_username == ""
    assert Path(config.broker.cert_path).read_text() == CA_TEXT
    # no database section in the Clowder document: storage stays as configured
    assert config.storage.pg_host == "env-host"


def test_clowder_plain_broker_without_port_or_auth(tmp_path):
    document = {"kafka": {"brokers": [{"hostname": "plain-kafka.example"}], "topics": []}}
    config = load_in(tmp_path, {"ACG_CONFIG": clowder_json(tmp_path, document),
                                PREFIX + "BROKER__CERT_PATH": "/etc/env-ca.pem"})
    assert config.broker.addresses == "plain-kafka.example"
    assert config.broker.security_protocol == ""
    assert config.broker.cert_path == "/etc/env-ca.pem"


def test_clowder_database_ssl_mode_and_rds_ca_go_to_pg_params(tmp_path):
    document = full_clowder_document()
    document["database"]["sslMode"] = "verify-full"
    document["database"]["rdsCa"] = RDS_CA_TEXT
    config = load_in(tmp_path, {"ACG_CONFIG": clowder_json(tmp_path, document)})
    params = dict(pair.split("=", 1) for pair in config.storage.pg_params.split())
    assert params["sslmode"] == "verify-full"
    assert Path(params["sslrootcert"]).read_text() == RDS_CA_TEXT


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "Clowder configuration {path!r} (ACG_CONFIG) not found"),
        ("{not json", "Clowder configuration {path!r} (ACG_CONFIG) is not valid JSON: "),
        ("[1, 2]", "Clowder configuration {path!r} (ACG_CONFIG) is incomplete: "),
    ],
)
def test_broken_clowder_file_is_a_configuration_error(tmp_path, content, expected):
    path = tmp_path / "cdappconfig.json"
    if content is not None:
        path.write_text(content)
    assert load_error(tmp_path, {"ACG_CONFIG": str(path)}).startswith(expected.format(path=str(path)))


def test_a_value_clowder_provides_is_named_as_clowder_s_in_errors(tmp_path):
    document = full_clowder_document()
    document["database"]["port"] = -5
    config = load_in(tmp_path, {"ACG_CONFIG": clowder_json(tmp_path, document), PREFIX + "STORAGE__PG_PORT": "5432"})
    assert check_error(config, DATABASE) == "ACG_CONFIG (storage pg_port): must not be negative, got -5"


def test_clowder_without_sasl_keeps_the_original_not_used_sasl_keys_harmless(tmp_path):
    """The original's config.toml (sasl_mechanism = "not-used", PLAINTEXT) under a Clowder file whose
    brokers have no SASL: loads, and the Kafka settings come from Clowder."""
    named = write_toml(tmp_path / "c.toml", '[broker]\nsecurity_protocol = "PLAINTEXT"\nsasl_mechanism = "not-used"\n')
    document = {"kafka": {"brokers": [{"hostname": "plain-kafka.example", "port": 9092}], "topics": []}}
    config = load_in(tmp_path, {FILE_VARIABLE: str(named), "ACG_CONFIG": clowder_json(tmp_path, document)})
    assert config.broker.addresses == "plain-kafka.example:9092"
    # not read for PLAINTEXT: not even a warning
    assert config.problems(LOGGING, KAFKA, DATABASE, SERVICE) == [] and config.warnings == []


# --- secrets --------------------------------------------------------------------------------------

SECRETS = {
    "STORAGE__PG_PASSWORD": "pg-pw-Zq81secret",
    "BROKER__SASL_PASSWORD": "sasl-pw-Xk27secret",
    "SENTRY__DSN": "https://dsnkey4471@sentry.example/42",
    "CLOUDWATCH__AWS_ACCESS_ID": "AKIAEXAMPLE5521",
    "CLOUDWATCH__AWS_SECRET_KEY": "aws-secret-Qm90secret",
    "CLOUDWATCH__AWS_SESSION_TOKEN": "aws-token-Lp33secret",
}


def test_the_shown_configuration_never_holds_secrets_from_the_environment(tmp_path):
    config = load_in(tmp_path, {PREFIX + k: v for k, v in SECRETS.items()})
    shown = config.redacted()  # what --show-configuration prints
    for text in (str(shown), repr(config)):
        for value in SECRETS.values():
            assert value not in text
        assert "dsnkey4471" not in text
    # it still says they are set (different from the empty default)
    for section, key in config_module.SECRET_KEYS:
        assert shown[section][key] == HIDDEN, (section, key)
    assert config.storage.pg_password == "pg-pw-Zq81secret"  # the program itself reads the real value


def test_the_shown_configuration_never_holds_secrets_from_file_or_clowder(tmp_path):
    named = write_toml(
        tmp_path / "c.toml",
        '[storage]\npg_password = "file-pg-pw-Hh55"\n[broker]\nsasl_password = "file-sasl-pw-Jj66"\n'
        '[sentry]\ndsn = "https://filedsn8833@sentry.example/1"\n'
        '[cloudwatch]\naws_secret_key = "file-aws-secret-Kk77"\naws_access_id = "file-aws-id-Ll88"\n'
        'aws_session_token = "file-aws-token-Mm99"\n',
    )
    config = load_in(tmp_path, {FILE_VARIABLE: str(named),
                                "ACG_CONFIG": clowder_json(tmp_path, full_clowder_document())})
    text = f"{config.redacted()} {config!r} {config.problems(LOGGING, KAFKA, DATABASE, SERVICE)}"
    for secret in ("file-pg-pw-Hh55", "file-sasl-pw-Jj66", "filedsn8833", "file-aws-secret-Kk77",
                   "file-aws-id-Ll88", "file-aws-token-Mm99", "clowder-kafka-secret-9f3a",
                   "clowder-db-secret-77c1", "clowder-admin-secret"):
        assert secret not in text, secret


def test_configuration_error_message_does_not_echo_a_password(tmp_path):
    """A bad value elsewhere must not drag the password into the error line."""
    message = load_error(tmp_path, {PREFIX + "STORAGE__PG_PASSWORD": "pg-pw-Zq81secret",
                                    PREFIX + "STORAGE__PG_PORT": "not-a-port"})
    assert message == f"environment variable {PREFIX}STORAGE__PG_PORT: expected an integer, got 'not-a-port'"


def test_mistyped_secret_in_file_is_rejected_without_echoing_it(tmp_path):
    path = write_toml(tmp_path / "c.toml", "[storage]\npg_password = 987654321\n")
    message = load_error(tmp_path, {FILE_VARIABLE: str(path)})
    assert message == f"{path}: [storage] pg_password: expected a string (value not shown)"
