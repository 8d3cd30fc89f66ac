"""The original's [logging] switches: debug is the line format (not a level), log_level "" is the
default level, use_stderr chooses the stream."""

from __future__ import annotations

import json
import logging

PREFIX = "CCX_NOTIFICATION_WRITER__"


def logged(cli, **variables):
    env = {PREFIX + k: v for k, v in variables.items()}
    result = cli("--show-configuration", env=env)
    assert result.returncode == 0, result.stderr
    return result


def test_debug_true_gives_readable_lines_at_the_configured_level(cli):
    readable = logged(cli, LOGGING__DEBUG="true", STORAGE__PG_HOSTNAME="unknown-key-for-a-warning")
    line = [x for x in readable.stderr.splitlines() if "unknown configuration keys" in x]
    assert line and not line[0].startswith("{") and "WARNING" in line[0]
    assert "started: show-configuration" not in readable.stderr  # a debug line: debug is not the level

    leveled = logged(cli, LOGGING__DEBUG="true", LOGGING__LOG_LEVEL="debug")
    assert "started: show-configuration" in leveled.stderr


def test_json_lines_by_default(cli):
    result = logged(cli, LOGGING__LOG_LEVEL="DEBUG")
    lines = [json.loads(x) for x in result.stderr.splitlines()]
    assert {"started: show-configuration", "finished: show-configuration"} <= {x["message"] for x in lines}


def test_empty_log_level_in_the_original_config_means_info(tmp_path):
    """The original's files say debug = true, log_level = "": readable lines at exactly INFO."""
    import subprocess
    import sys

    path = tmp_path / "c.toml"
    path.write_text('[logging]\ndebug = true\nlog_level = ""\n')
    code = ("import logging; from writer import config, logs; logs.setup(config.load()); "
            "root = logging.getLogger(); print(root.level, type(root.handlers[0].formatter).__name__)")
    env = {"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp_path), capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == [str(logging.INFO), "ReadableFormatter"]


def test_use_stderr_false_writes_the_log_to_stdout(cli):
    on_stdout = logged(cli, LOGGING__USE_STDERR="false", LOGGING__LOG_LEVEL="DEBUG")
    assert "finished: show-configuration" in on_stdout.stdout and "finished" not in on_stdout.stderr
    assert on_stdout.stdout.index("[storage]") < on_stdout.stdout.index("finished: show-configuration")
    on_stderr = logged(cli, LOGGING__LOG_LEVEL="DEBUG")
    assert "finished: show-configuration" in on_stderr.stderr and "finished: " not in on_stderr.stdout
