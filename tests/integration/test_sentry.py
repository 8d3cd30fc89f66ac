"""Sentry, against a local Sentry endpoint (tests/harness/sentry_sink.py): switched on only by
logging_to_sentry_enabled with a DSN, no secret in any event, no event per librdkafka log line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.harness.sentry_sink import SentrySink
from tests.harness.service import PREFIX, Service, free_port, service_env
from writer.testing.environment import without_writer_settings


@pytest.fixture
def sink():
    sink = SentrySink()
    yield sink
    sink.close()


def unreachable_database(database) -> dict[str, str]:
    return {**database.env(), PREFIX + "STORAGE__PG_PORT": str(free_port()), PREFIX + "STORAGE__CONNECT_TIMEOUT": "2"}


@pytest.mark.parametrize("enabled, dsn_set, expected_events", [("true", True, 1), ("false", True, 0),
                                                                ("", True, 0), ("true", False, 0)])
def test_sentry_only_when_switched_on_and_a_dsn_is_set(cli, database, sink, enabled, dsn_set, expected_events):
    """A failing command-line operation is one error event, as in the original, when Sentry is on."""
    env = unreachable_database(database)
    env[PREFIX + "LOGGING__LOGGING_TO_SENTRY_ENABLED"] = enabled
    if dsn_set:
        env[PREFIX + "SENTRY__DSN"] = sink.dsn
    result = cli("--db-init", env=env)
    assert result.returncode == 5
    events = sink.events()
    assert len(events) == expected_events, sink.everything()
    if expected_events:
        assert "cannot connect to PostgreSQL" in str(events[0])


CRASHING_CLI = """
import sys
from writer import cli, maintenance

def broken_cleanup(connection, report=print):
    raise RuntimeError("unexpected failure inside an operation")

maintenance.cleanup_all = broken_cleanup
sys.exit(cli.main(["--db-cleanup"]))
"""


def test_an_uncaught_error_reaches_sentry_without_any_secret(database, sink, tmp_path):
    """The crash's frames hold the configuration and the connection; neither its values nor the
    connection string may be in what is sent (issue 9, item 14)."""
    tag = uuid.uuid4().hex[:10]
    secrets = {
        "STORAGE__PG_PASSWORD": f"pgPW{tag}",
        "BROKER__SASL_PASSWORD": f"saslPW{tag}",
        "CLOUDWATCH__AWS_ACCESS_ID": f"AKIA{tag}",
        "CLOUDWATCH__AWS_SECRET_KEY": f"awsSECRET{tag}",
        "CLOUDWATCH__AWS_SESSION_TOKEN": f"awsTOKEN{tag}",
        "STORAGE__PG_PARAMS": f"sslmode=disable sslpassword=pgPARAM{tag}",
    }
    env = without_writer_settings()
    env.update(database.env())
    env.update({PREFIX + k: v for k, v in secrets.items()})
    env[PREFIX + "LOGGING__LOGGING_TO_SENTRY_ENABLED"] = "true"
    env[PREFIX + "SENTRY__DSN"] = sink.dsn
    # trust authentication ignores the password, so the operation reaches the crash
    with database.connect() as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS new_reports (org_id integer)")
    result = subprocess.run([sys.executable, "-c", CRASHING_CLI], env=env, cwd=str(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "RuntimeError" in result.stderr
    deadline = time.monotonic() + 10
    while not sink.events() and time.monotonic() < deadline:
        time.sleep(0.1)
    events = sink.events()
    assert len(events) == 1, sink.everything()
    exception = events[0]["exception"]["values"][-1]
    assert exception["type"] == "RuntimeError"
    frames = exception["stacktrace"]["frames"]
    assert any(f.get("function") == "_database_operation" for f in frames)  # the frame that holds `config`
    assert not any("vars" in f for f in frames)
    sent = sink.everything()
    for value in secrets.values():
        assert value.split("=")[-1] not in sent, value
    assert "password=" not in sent
    assert "sinkpublickey" not in sent.split("\n", 1)[1]  # only in the envelope header's dsn, if at all


ERROR_LOGGING_PROCESS = """
import logging, sys
import sentry_sdk
from writer import config, logs

def failing_step(secret_in_a_local):
    raise ValueError("a step failed")

logs.setup(config.load())
try:
    failing_step("localSECRET" + sys.argv[1])
except ValueError:
    logging.getLogger("writer.worker").exception("database error while writing a batch")
logging.getLogger("writer.worker").warning("only a warning")
sentry_sdk.flush(10)
print(sentry_sdk.VERSION)
"""


def test_an_error_log_is_an_event_without_locals_or_personal_data(sink, tmp_path):
    """Under whichever sentry-sdk major is installed (the lock's 3.x, the lower bound's 2.x in
    .ci/lower-bounds): an ERROR log line is one event, a WARNING is none, and the event carries no
    frame's local variables and nothing sentry-sdk would add as default PII (the user's address)."""
    tag = uuid.uuid4().hex[:10]
    env = without_writer_settings()
    env[PREFIX + "LOGGING__LOGGING_TO_SENTRY_ENABLED"] = "true"
    env[PREFIX + "SENTRY__DSN"] = sink.dsn
    result = subprocess.run([sys.executable, "-c", ERROR_LOGGING_PROCESS, tag], env=env, cwd=str(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    major = int(result.stdout.split(".")[0])
    assert major in (2, 3), result.stdout
    events = sink.events()
    assert len(events) == 1, sink.everything()
    event = events[0]
    assert event["logger"] == "writer.worker" and event["level"] == "error"
    assert "database error while writing a batch" in str(event.get("logentry") or event.get("message"))
    assert event["sdk"]["version"].startswith(f"{major}.")
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert any(f.get("function") == "failing_step" for f in frames)
    assert not any("vars" in f for f in frames)
    assert "user" not in event and "request" not in event
    assert f"localSECRET{tag}" not in sink.everything()


def test_config_repr_in_an_event_would_show_no_secret(monkeypatch, tmp_path):
    """What sentry-sdk (or a traceback with locals) prints for the configuration object."""
    from writer import config as config_module

    monkeypatch.chdir(tmp_path)
    config = config_module.load({PREFIX + "STORAGE__PG_PASSWORD": "pgPWrepr", PREFIX + "SENTRY__DSN":
                                 "https://dsnKEYrepr@sentry.example/1", PREFIX + "STORAGE__PG_PARAMS":
                                 "password=pgPARAMrepr sslmode=require"})
    from sentry_sdk.serializer import serialize

    text = str(serialize({"config": config}))
    for secret in ("pgPWrepr", "dsnKEYrepr", "pgPARAMrepr"):
        assert secret not in text
    assert "sslmode=require" in text


def test_a_kafka_outage_sends_no_event_per_librdkafka_line(migrated_database, sink, workdir):
    """With the broker down, librdkafka logs a connection failure every few seconds per connection:
    those lines stay in the log, and none becomes a Sentry event (issue 9, item 16)."""
    env = service_env(migrated_database.env(), f"127.0.0.1:{free_port()}", "unreachable.topic",
                      LOGGING__LOGGING_TO_SENTRY_ENABLED="true", SENTRY__DSN=sink.dsn,
                      PROCESSING__WORKERS="2")
    service = Service(env, workdir=workdir)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and service.stderr().count("Connection refused") < 6:
            time.sleep(0.5)
        assert service.stderr().count("Connection refused") >= 6, service.stderr()[-3000:]
        service.process.send_signal(signal.SIGTERM)
        assert service.wait(60) == 0, service.stderr()[-3000:]
    finally:
        service.close()
    time.sleep(1)  # anything still in flight from the exiting processes
    events = sink.events()
    assert not [e for e in events if str(e.get("logger", "")).startswith("librdkafka")], events
    assert "Connection refused" not in sink.everything()
