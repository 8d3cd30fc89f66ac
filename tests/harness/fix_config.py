"""Fixture: ``load(**variables)``, the configuration from environment variables only."""

from __future__ import annotations

import pytest

from tests.harness.config import PREFIX
from writer import config as config_module


@pytest.fixture
def load(tmp_path, monkeypatch):
    """config.load() from environment variables only (no config.toml: empty working directory);
    ``load(BROKER__TOPIC="t")`` reads CCX_NOTIFICATION_WRITER__BROKER__TOPIC=t."""
    monkeypatch.chdir(tmp_path)

    def build(**variables: str):
        return config_module.load({PREFIX + name: value for name, value in variables.items()})

    return build
