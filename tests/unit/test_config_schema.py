"""The typed configuration and SCHEMA cannot drift apart; the defaults are the documented ones."""

from __future__ import annotations

import dataclasses
import pickle
import typing

import pytest

from tests.harness.config import PREFIX, load_in
from writer import config as config_module
from writer.config import SCHEMA, SECTIONS, Config

# The defaults as README's configuration table documents them, written out (not taken from the code).
DOCUMENTED_DEFAULTS = {
    "broker": {"addresses": "localhost:9092", "security_protocol": "", "cert_path": "", "sasl_mechanism": "",
               "sasl_username": "", "sasl_password": "", "topic": "ccx.ocp.results", "group": "ccx_notification_writer",
               "enabled": True, "disable_api_versions_request": False, "auto_offset_reset": "earliest",
               "dead_letter_topic": "", "session_timeout_ms": 10000, "max_poll_interval_ms": 300000,
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
    "processing": {"workers": 0, "batch_size": 1000, "max_batch_bytes": 16777216, "batch_timeout_ms": 50,
                   "max_restarts": 5, "restart_window_s": 60, "shutdown_timeout_s": 20},
}


def test_every_schema_key_has_a_field_of_its_type_in_schema_order():
    assert config_module.schema_mismatches() == []
    # The check itself, spelled out once, so that it cannot pass by checking nothing.
    hints = typing.get_type_hints(Config)
    for section, keys in SCHEMA.items():
        assert hints[section] is SECTIONS[section]
        fields = {field.name: field for field in dataclasses.fields(SECTIONS[section])}
        assert list(fields) == list(keys), section
        section_hints = typing.get_type_hints(SECTIONS[section])
        for key, default in keys.items():
            assert section_hints[key] is type(default), (section, key)


def test_the_drift_check_finds_a_missing_field_and_a_wrong_type(monkeypatch):
    monkeypatch.setitem(SCHEMA, "metrics", {**SCHEMA["metrics"], "path": "/metrics"})
    monkeypatch.setitem(SCHEMA, "tracker", {**SCHEMA["tracker"], "auto_create_topic": "yes"})
    found = config_module.schema_mismatches()
    assert any("[metrics]" in line and "path" in line for line in found), found
    assert any("[tracker] auto_create_topic" in line for line in found), found


def test_defaults_without_any_file_or_environment(tmp_path):
    config = load_in(tmp_path)
    assert config.source_file is None
    assert config.as_dict() == DOCUMENTED_DEFAULTS
    assert list(config.as_dict()) == list(SCHEMA)  # --show-configuration prints the sections in this order
    assert config.ignored == [] and config.warnings == []
    assert config.broker.topic == "ccx.ocp.results"
    assert config.storage.pg_port == 5432
    assert config.broker.enabled is True


def test_sections_are_typed_and_frozen(tmp_path):
    config = load_in(tmp_path, {PREFIX + "PROCESSING__BATCH_TIMEOUT_MS": "750"})
    assert isinstance(config.processing, config_module.ProcessingSettings)
    assert config.processing.batch_timeout_ms == 750
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.processing.batch_timeout_ms = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.storage = config.storage  # type: ignore[misc]
    with pytest.raises(TypeError):
        config["processing"]  # type: ignore[index]  # no dict-style access any more
    changed = dataclasses.replace(config, processing=dataclasses.replace(config.processing, batch_size=5))
    assert changed.processing.batch_size == 5 and config.processing.batch_size == 1000


def test_a_configuration_survives_pickling_for_the_worker_processes(tmp_path):
    config = load_in(tmp_path, {PREFIX + "STORAGE__PG_HOST": "db.example", PREFIX + "STORAGE__NO_SUCH": "x"})
    copy = pickle.loads(pickle.dumps(config))
    assert copy == config
    assert copy.storage.pg_host == "db.example" and copy.ignored == [PREFIX + "STORAGE__NO_SUCH"]
