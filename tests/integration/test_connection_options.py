"""[storage] pg_params and --check-kafka through the command line, against the real PostgreSQL and broker
(the options themselves, built by config.load(): tests/unit/test_kafka_options.py)."""

from __future__ import annotations

import pytest

from tests.harness.service import PREFIX


def test_invalid_pg_params_through_the_command_line(cli, database):
    env = database.env() | {PREFIX + "STORAGE__PG_PARAMS": "not_a_libpq_keyword=1"}
    result = cli("--db-init", env=env)
    assert result.returncode == 1, result
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "pg_params" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_sslmode_reaches_libpq_whatever_the_servers_tls_state(cli, database, load):
    """pg_params' sslmode is applied: the session's TLS state (pg_stat_ssl) follows it. On a server without TLS
    sslmode=require must fail with one line; on one with TLS (Debian's default) it must give a TLS session."""
    from writer import database as database_module

    with database.connect() as connection:
        server_tls = connection.execute("SHOW ssl").fetchone()[0] == "on"

    def session_uses_tls(pg_params: str) -> bool:
        config = load(STORAGE__PG_PARAMS=pg_params, STORAGE__PG_HOST=database.server.host,
                      STORAGE__PG_PORT=str(database.server.port), STORAGE__PG_USERNAME=database.server.user,
                      STORAGE__PG_DB_NAME=database.name)
        with database_module.connect(config, autocommit=True) as connection:
            return connection.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]

    assert session_uses_tls("sslmode=disable") is False
    ok = cli("--db-init", env=database.env() | {PREFIX + "STORAGE__PG_PARAMS": "sslmode=disable"})
    assert ok.returncode == 0, ok.stderr
    required = cli("--migration-info", env=database.env() | {PREFIX + "STORAGE__PG_PARAMS": "sslmode=require"})
    if server_tls:
        assert session_uses_tls("sslmode=require") is True
        assert required.returncode == 0, required.stderr
    else:
        assert required.returncode == 5, required
        assert len(required.stderr.strip().splitlines()) == 1
        assert "SSL" in required.stderr or "ssl" in required.stderr


def test_check_kafka_without_a_broker_exits_4(cli):
    result = cli("--check-kafka", env={PREFIX + "BROKER__ADDRESSES": "127.0.0.1:1"})
    assert result.returncode == 4, result
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1, output
    assert "127.0.0.1:1" in output[0]
    assert "Traceback" not in result.stderr


def test_check_kafka_against_the_broker_exits_0_and_says_what_it_found(cli, kafka_bootstrap, topic):
    import re

    from writer.kafka_mock import produce

    env = {PREFIX + "BROKER__ADDRESSES": kafka_bootstrap, PREFIX + "BROKER__TOPIC": topic}
    brokers = ", ".join(re.escape(address) + r"/\d+" for address in kafka_bootstrap.split(","))
    result = cli("--check-kafka", env=env)
    assert result.returncode == 0, result
    assert "Traceback" not in result.stderr
    assert re.fullmatch(f"Kafka answered: brokers {brokers}; topic {re.escape(topic)} not present yet\n",
                        result.stdout), result.stdout
    produce(kafka_bootstrap, topic, [b"{}"])
    result = cli("--check-kafka", env=env)
    assert result.returncode == 0, result
    assert re.fullmatch(f"Kafka answered: brokers {brokers}; topic {re.escape(topic)} present\n",
                        result.stdout), result.stdout


def test_show_configuration_hides_passwords_inside_pg_params(cli):
    params = "sslmode=verify-full password=pgPARAMsecret1 sslpassword='key pass 2'&connect_timeout=3"
    result = cli("--show-configuration", env={PREFIX + "STORAGE__PG_PARAMS": params})
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "pgPARAMsecret1" not in output and "key pass 2" not in output
    shown = [line for line in result.stdout.splitlines() if line.strip().startswith("pg_params = ")]
    assert shown and "sslmode=verify-full" in shown[0] and "connect_timeout=3" in shown[0]


@pytest.mark.parametrize("params", ["password=pgPARAMsecret1 unterminated='x", "sslpassword=pgPARAMsecret1 nokey",
                                    "password='pgPARAMsecret1"])
def test_invalid_pg_params_error_does_not_echo_the_password(cli, database, params):
    for args in (["--db-init"], []):  # a database operation, and the service
        result = cli(*args, env=database.env() | {PREFIX + "STORAGE__PG_PARAMS": params})
        assert result.returncode == 1, result
        assert len(result.stderr.strip().splitlines()) == 1 and "PG_PARAMS" in result.stderr
        assert "pgPARAMsecret1" not in result.stdout + result.stderr
    shown = cli("--show-configuration", env={PREFIX + "STORAGE__PG_PARAMS": params})
    assert shown.returncode == 0 and "pgPARAMsecret1" not in shown.stdout + shown.stderr
