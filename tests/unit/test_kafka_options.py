"""[broker] -> librdkafka options (TLS, SASL), [storage] pg_params -> libpq conninfo, from config.load() (the
command line and the servers: tests/integration/test_connection_options.py)."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from writer.config import ConfigError
from writer.database import conninfo
from writer.kafka_options import common_options, consumer_options, producer_options

SASL_KEYS = {"sasl.mechanisms", "sasl.username", "sasl.password"}


def test_plaintext_default_has_no_security_options(load):
    options = common_options(load(BROKER__ADDRESSES=" k1:9092, k2:9093 ,"))
    assert options["bootstrap.servers"] == "k1:9092,k2:9093"
    assert "security.protocol" not in options
    assert "ssl.ca.location" not in options
    assert not SASL_KEYS & set(options)


def test_explicit_plaintext(load):
    options = common_options(load(BROKER__SECURITY_PROTOCOL="PLAINTEXT"))
    assert options["security.protocol"] == "PLAINTEXT"
    assert not SASL_KEYS & set(options)


def test_ssl_with_cert_path(load):
    options = common_options(load(BROKER__SECURITY_PROTOCOL="SSL", BROKER__CERT_PATH="/etc/kafka/ca.pem"))
    assert options["security.protocol"] == "SSL"
    assert options["ssl.ca.location"] == "/etc/kafka/ca.pem"
    assert not SASL_KEYS & set(options)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_with_each_mechanism(load, mechanism):
    options = common_options(load(
        BROKER__SECURITY_PROTOCOL="SASL_SSL", BROKER__SASL_MECHANISM=mechanism,
        BROKER__SASL_USERNAME="kafka-user", BROKER__SASL_PASSWORD="kafka-secret",
        BROKER__CERT_PATH="/etc/kafka/ca.pem",
    ))
    assert options["security.protocol"] == "SASL_SSL"
    assert options["sasl.mechanisms"] == mechanism
    assert options["sasl.username"] == "kafka-user"
    assert options["sasl.password"] == "kafka-secret"
    assert options["ssl.ca.location"] == "/etc/kafka/ca.pem"


def test_sasl_plaintext(load):
    options = common_options(load(
        BROKER__SECURITY_PROTOCOL="SASL_PLAINTEXT", BROKER__SASL_MECHANISM="SCRAM-SHA-256",
        BROKER__SASL_USERNAME="u", BROKER__SASL_PASSWORD="p",
    ))
    assert options["security.protocol"] == "SASL_PLAINTEXT"
    assert options["sasl.mechanisms"] == "SCRAM-SHA-256"
    assert (options["sasl.username"], options["sasl.password"]) == ("u", "p")
    assert "ssl.ca.location" not in options


def test_sasl_without_mechanism_defaults_to_plain(load):
    options = common_options(load(BROKER__SECURITY_PROTOCOL="SASL_SSL", BROKER__SASL_USERNAME="u",
                                  BROKER__SASL_PASSWORD="p"))
    assert options["sasl.mechanisms"] == "PLAIN"


def test_lower_case_protocol_is_normalized(load):
    options = common_options(load(BROKER__SECURITY_PROTOCOL="sasl_ssl", BROKER__SASL_MECHANISM="scram-sha-512",
                                  BROKER__SASL_USERNAME="u", BROKER__SASL_PASSWORD="p"))
    assert options["security.protocol"] == "SASL_SSL"
    assert options["sasl.mechanisms"] == "SCRAM-SHA-512"


def test_consumer_and_producer_options_carry_the_security_options(load):
    config = load(BROKER__SECURITY_PROTOCOL="SASL_SSL", BROKER__SASL_MECHANISM="SCRAM-SHA-512",
                  BROKER__SASL_USERNAME="u", BROKER__SASL_PASSWORD="p", BROKER__CERT_PATH="/ca.pem",
                  BROKER__GROUP="my-group")
    consumer = consumer_options(config)
    producer = producer_options(config)
    for options in (consumer, producer):
        assert options["security.protocol"] == "SASL_SSL"
        assert options["sasl.mechanisms"] == "SCRAM-SHA-512"
        assert options["ssl.ca.location"] == "/ca.pem"
    assert consumer["group.id"] == "my-group"
    assert consumer_options(config, group_id="other")["group.id"] == "other"
    assert consumer["enable.auto.commit"] is False  # offsets are committed after the database commit
    assert "group.id" not in producer


@pytest.mark.parametrize(
    "variables",
    [
        {},
        {"BROKER__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "BROKER__SASL_MECHANISM": "PLAIN"},
        {"BROKER__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "BROKER__SASL_MECHANISM": "SCRAM-SHA-256"},
        {"BROKER__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "BROKER__SASL_MECHANISM": "SCRAM-SHA-512"},
        {"BROKER__SECURITY_PROTOCOL": "SSL"},
    ],
)
def test_librdkafka_accepts_the_options(load, variables):
    """librdkafka validates property names and values when a client is created."""
    from confluent_kafka import Consumer, Producer

    config = load(BROKER__ADDRESSES="127.0.0.1:1", BROKER__SASL_USERNAME="u", BROKER__SASL_PASSWORD="p",
                  **variables)
    consumer = Consumer(consumer_options(config))
    consumer.close()
    producer = Producer(producer_options(config))
    assert producer.flush(0) == 0


# --- [storage] pg_params -> libpq conninfo ----------------------------------------------------------


def test_conninfo_from_storage_keys(load):
    info = conninfo_to_dict(conninfo(load(
        STORAGE__PG_HOST="db.example", STORAGE__PG_PORT="6432", STORAGE__PG_DB_NAME="notif",
        STORAGE__PG_USERNAME="writer", STORAGE__PG_PASSWORD="pw with 'quotes' and spaces",
    )))
    assert info["host"] == "db.example"
    assert info["port"] == "6432"
    assert info["dbname"] == "notif"
    assert info["user"] == "writer"
    assert info["password"] == "pw with 'quotes' and spaces"
    assert "sslmode" not in info


def test_conninfo_without_password_has_none(load):
    assert "password" not in conninfo_to_dict(conninfo(load()))


@pytest.mark.parametrize(
    "pg_params, expected",
    [
        ("sslmode=disable", {"sslmode": "disable"}),
        ("sslmode=require", {"sslmode": "require"}),
        ("sslmode=verify-full sslrootcert=/etc/ca.pem", {"sslmode": "verify-full", "sslrootcert": "/etc/ca.pem"}),
        ("sslmode=require&connect_timeout=3", {"sslmode": "require", "connect_timeout": "3"}),
    ],
)
def test_pg_params_go_into_the_conninfo(load, pg_params, expected):
    info = conninfo_to_dict(conninfo(load(STORAGE__PG_PARAMS=pg_params, STORAGE__PG_HOST="h")))
    for key, value in expected.items():
        assert info[key] == value
    assert info["host"] == "h"


def test_invalid_pg_params_is_a_configuration_error(load):
    with pytest.raises(ConfigError, match="pg_params"):
        conninfo(load(STORAGE__PG_PARAMS="sslmode"))


# --- the original's broker switches -----------------------------------------------------------------


def test_sasl_keys_are_ignored_unless_the_protocol_is_sasl(load):
    """The original's config.toml: security_protocol PLAINTEXT with sasl_* = "not-used"."""
    options = common_options(load(BROKER__SECURITY_PROTOCOL="PLAINTEXT", BROKER__SASL_MECHANISM="not-used",
                                  BROKER__SASL_USERNAME="not-used", BROKER__SASL_PASSWORD="not-used"))
    assert not SASL_KEYS & set(options)


def test_disable_api_versions_request_maps_to_librdkafka(load):
    assert "api.version.request" not in common_options(load())
    options = common_options(load(BROKER__DISABLE_API_VERSIONS_REQUEST="true"))
    assert options["api.version.request"] is False


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky", "RoundRobin"])
def test_partition_assignment_strategy_is_a_setting_librdkafka_accepts(load, strategy):
    from confluent_kafka import Consumer

    assert consumer_options(load())["partition.assignment.strategy"] == "cooperative-sticky"
    options = consumer_options(load(BROKER__PARTITION_ASSIGNMENT_STRATEGY=strategy, BROKER__ADDRESSES="127.0.0.1:1"))
    assert options["partition.assignment.strategy"] == strategy.lower()
    Consumer(options).close()


# --- pg_params is a secret where it holds one ---------------------------------------------------------


def test_config_repr_hides_every_secret(load):
    config = load(STORAGE__PG_PASSWORD="pgPWrepr1", BROKER__SASL_PASSWORD="saslPWrepr2",
                  SENTRY__DSN="https://dsnKEYrepr3@sentry.example/1", CLOUDWATCH__AWS_SECRET_KEY="awsSECRETrepr4",
                  CLOUDWATCH__AWS_ACCESS_ID="AKIArepr5", CLOUDWATCH__AWS_SESSION_TOKEN="awsTOKENrepr6",
                  STORAGE__PG_PARAMS="sslmode=require password=pgPARAMrepr7")
    for text in (repr(config), str(config), f"{config!r:>10}"):
        for secret in ("pgPWrepr1", "saslPWrepr2", "dsnKEYrepr3", "awsSECRETrepr4", "AKIArepr5", "awsTOKENrepr6",
                       "pgPARAMrepr7"):
            assert secret not in text
    assert "sslmode=require" in repr(config)


def test_measured_consumer_overrides_apply_over_the_chosen_options(load, monkeypatch):
    from writer.kafka_options import CONSUMER_OPTIONS_VARIABLE

    config = load()
    chosen = consumer_options(config)
    monkeypatch.setenv(CONSUMER_OPTIONS_VARIABLE, '{"fetch.queue.backoff.ms": 500, "fetch.max.bytes": "1048576"}')
    measured = consumer_options(config)
    assert measured["fetch.queue.backoff.ms"] == "500" and measured["fetch.max.bytes"] == "1048576"
    assert {k: v for k, v in measured.items() if k not in ("fetch.queue.backoff.ms", "fetch.max.bytes")} == {
        k: v for k, v in chosen.items() if k not in ("fetch.queue.backoff.ms", "fetch.max.bytes")}
    monkeypatch.setenv(CONSUMER_OPTIONS_VARIABLE, '["not", "an", "object"]')
    with pytest.raises(ValueError, match=CONSUMER_OPTIONS_VARIABLE):
        consumer_options(config)


def test_the_default_session_is_the_originals_and_membership_stays_dynamic(load):
    """10 s, the original's (sarama's default): how long a member that died without leaving keeps its partitions,
    and how long librdkafka's mock cluster can leave a member without partitions at a join. No group.instance.id:
    a static member does not leave the group when it stops, so its partitions would wait out the session."""
    options = consumer_options(load())
    assert options["session.timeout.ms"] == 10000
    assert "group.instance.id" not in options
    assert consumer_options(load(BROKER__SESSION_TIMEOUT_MS="6000"))["session.timeout.ms"] == 6000
