"""The command line's table of operations (writer/cli.py): one entry per flag, each with a named function
and the exit status of its failure (SPEC section 5: 4 Kafka, 5 storage, 7 migration)."""

from __future__ import annotations

import pytest

from writer import cli

DATABASE_FLAGS = ["db-init", "db-cleanup", "db-drop-tables", "print-new-reports-for-cleanup", "new-reports-cleanup",
                  "print-old-reports-for-cleanup", "old-reports-cleanup", "print-read-errors-for-cleanup",
                  "read-errors-cleanup", "truncate-old-reports"]
MIGRATION_FLAGS = ["db-init-migration", "migration-info", "migrate"]


def test_every_flag_of_the_original_is_in_the_table_once():
    assert sorted(cli.OPERATIONS) == sorted(
        ["version", "authors", "show-configuration", "check-kafka", *DATABASE_FLAGS, *MIGRATION_FLAGS])
    assert all(flag == operation.flag for flag, operation in cli.OPERATIONS.items())


def test_every_operation_runs_a_named_function():
    for operation in cli.OPERATIONS.values():
        assert operation.run.__name__ != "<lambda>", operation.flag
        assert operation.help


@pytest.mark.parametrize(("flags", "status"), [(DATABASE_FLAGS, 5), (MIGRATION_FLAGS, 7), (["check-kafka"], 4)])
def test_failure_statuses(flags, status):
    assert {flag: cli.OPERATIONS[flag].failure_status for flag in flags} == dict.fromkeys(flags, status)


def test_two_operations_are_refused_with_both_named(capsys):
    assert cli.main(["--db-init", "--migrate", "latest"]) == 1
    assert "choose one operation, got: --db-init, --migrate" in capsys.readouterr().err


def test_version_runs_before_any_configuration_is_read(capsys, monkeypatch):
    monkeypatch.setenv("CCX_NOTIFICATION_WRITER_CONFIG_FILE", "/nonexistent/config.toml")
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("ccx-notification-writer version ")
