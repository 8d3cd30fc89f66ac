"""Secret settings never show: not in the repr of the configuration or of any of its sections, not in
``redacted()`` (what --show-configuration prints), not when pg_params is written as a connection URI."""

from __future__ import annotations

import dataclasses

import pytest

from writer import config as config_module
from writer.config import DATABASE, HIDDEN, PARTLY_SECRET_KEYS, SECRET_KEYS, SECTIONS, ConfigError, parse_pg_params

PREFIX = config_module.ENV_PREFIX
URI = "postgresql://writer:uriPW4417@db.example:5432/notification?sslmode=require"


def loaded_with_every_secret() -> tuple[config_module.Config, list[str]]:
    env = {f"{PREFIX}{section.upper()}__{key.upper()}": f"secret{n}XQ" for n, (section, key) in
           enumerate(sorted(SECRET_KEYS))}
    env[PREFIX + "STORAGE__PG_PARAMS"] = "sslmode=require password=paramPW77"
    return config_module.load(env), [f"secret{n}XQ" for n in range(len(SECRET_KEYS))] + ["paramPW77"]


def test_no_secret_in_the_repr_of_the_configuration_or_of_a_section():
    config, secrets = loaded_with_every_secret()
    shown = [repr(config)] + [repr(getattr(config, section)) for section in SECTIONS]
    for text in shown:
        for secret in secrets:
            assert secret not in text, text


def test_every_secret_setting_is_left_out_of_its_sections_repr():
    for section, key in SECRET_KEYS | PARTLY_SECRET_KEYS:
        field = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == key)
        assert field.repr is False, f"[{section}] {key}"


def test_a_connection_uri_in_pg_params_is_hidden_and_refused():
    config = config_module.load({PREFIX + "STORAGE__PG_PARAMS": URI})
    assert config.redacted()["storage"]["pg_params"] == HIDDEN
    assert "uriPW4417" not in repr(config)
    problems = config.problems(DATABASE)
    assert problems == [f"environment variable {PREFIX}STORAGE__PG_PARAMS: {config_module.PG_PARAMS_URI}"]
    assert "uriPW4417" not in problems[0]
    with pytest.raises(ConfigError, match="URI") as raised:
        parse_pg_params(URI)
    assert "uriPW4417" not in str(raised.value)


@pytest.mark.parametrize("params", ["postgres://u:pw@h/db", "  POSTGRESQL://u@h/db", "sslmode=disable"])
def test_only_a_uri_is_refused(params):
    refused = "://" in params
    try:
        parse_pg_params(params)
    except ConfigError:
        assert refused
    else:
        assert not refused


@pytest.mark.parametrize("params", ["sslmode=require postgresql://writer:uriPW4417@db.example/notification",
                                    "dbname=postgresql://writer:uriPW4417@db.example/notification",
                                    "sslmode=require&postgres://writer:uriPW4417@db.example"])
def test_a_uri_after_other_pairs_is_hidden_and_refused_too(params):
    # --show-configuration prints pg_params even when refused, so a URI anywhere in it must not show.
    config = config_module.load({PREFIX + "STORAGE__PG_PARAMS": params})
    assert config.redacted()["storage"]["pg_params"] == HIDDEN
    assert config.problems(DATABASE) == [
        f"environment variable {PREFIX}STORAGE__PG_PARAMS: {config_module.PG_PARAMS_URI}"]
