"""Loading the configuration in-process, as the service does at start-up: no subprocess, no server."""

from __future__ import annotations

import contextlib
from pathlib import Path

from writer import config as config_module

PREFIX = config_module.ENV_PREFIX
FILE_VARIABLE = config_module.CONFIG_FILE_VARIABLE


def load_in(directory: Path, environ: dict[str, str] | None = None) -> config_module.Config:
    """config.load(environ) run in ``directory``, where a config.toml would be the default file."""
    with contextlib.chdir(directory):
        return config_module.load(dict(environ or {}))


def load_error(directory: Path, environ: dict[str, str]) -> str:
    """The ConfigError message load() raises; it is one line (the command line prints it as is)."""
    try:
        load_in(directory, environ)
    except config_module.ConfigError as error:
        message = str(error)
        assert message and "\n" not in message, message
        return message
    raise AssertionError(f"load() accepted {environ}")


def check_error(config: config_module.Config, *areas: str) -> str:
    """The one-line ConfigError message config.check(*areas) raises."""
    try:
        config.check(*areas)
    except config_module.ConfigError as error:
        message = str(error)
        assert message and "\n" not in message, message
        return message
    raise AssertionError(f"check{areas} accepted the configuration")


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
