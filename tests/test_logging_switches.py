"""The original's [logging] switches: debug is the line format (not a level), log_level "" is the
default level, use_stderr chooses the stream."""

from __future__ import annotations

import json

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


def test_empty_log_level_in_the_original_config_means_info(cli, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[logging]\ndebug = true\nlog_level = ""\n')
    result = logged(cli, STORAGE__PG_HOSTNAME="x")
    assert "started:" not in result.stderr
    env = {"CCX_NOTIFICATION_WRITER_CONFIG_FILE": str(path), PREFIX + "STORAGE__PG_HOSTNAME": "x"}
    shown = cli("--show-configuration", env=env)
    assert shown.returncode == 0 and "started:" not in shown.stderr and "unknown configuration keys" in shown.stderr


def test_use_stderr_false_writes_the_log_to_stdout(cli):
    on_stdout = logged(cli, LOGGING__USE_STDERR="false", LOGGING__LOG_LEVEL="DEBUG")
    assert "finished: show-configuration" in on_stdout.stdout and "finished" not in on_stdout.stderr
    assert on_stdout.stdout.index("[storage]") < on_stdout.stdout.index("finished: show-configuration")
    on_stderr = logged(cli, LOGGING__LOG_LEVEL="DEBUG")
    assert "finished: show-configuration" in on_stderr.stderr and "finished: " not in on_stderr.stdout
