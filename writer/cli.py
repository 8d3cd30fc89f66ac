"""Command line: the original's flags (one or two dashes), one dispatcher for every operation."""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from writer import AUTHORS, __version__, exit_codes
from writer import config as config_sections
from writer import replay_options as replay_flags

# The table of operations is at the end of this module (after the functions it names).


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccx-notification-writer",
        description="Consume OpenShift Insights results from Kafka and store them in PostgreSQL (new_reports). "
        "Without an operation flag the service starts.",
        allow_abbrev=False,
    )
    for operation in OPERATIONS.values():
        if operation.argument is None:
            parser.add_argument(f"-{operation.flag}", f"--{operation.flag}", dest=operation.dest, action="store_true",
                                help=operation.help)
        else:
            parser.add_argument(f"-{operation.flag}", f"--{operation.flag}", dest=operation.dest,
                                metavar=operation.argument, help=operation.help)
    parser.add_argument("-max-age", "--max-age", metavar="AGE", default="7 days",
                        help="PostgreSQL interval for the cleanup operations (default: '7 days')")
    parser.add_argument("-replay", "--replay", action="store_true",
                        help="consume up to the end offsets seen at start, print a summary and exit "
                        "(see the replay options below)")
    parser.add_argument("-group-id", "--group-id", metavar="GROUP",
                        help="consumer group id to use instead of [broker] group "
                        "(a new group starts at the earliest offset)")
    replay_flags.add_arguments(parser)
    return parser


class OperationFailed(Exception):
    """An operation failed with a known exit status; the message is one line for stderr."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    chosen = [operation for operation in OPERATIONS.values() if getattr(args, operation.dest) not in (None, False)]
    if len(chosen) > 1:
        flags = ", ".join("--" + operation.flag for operation in chosen)
        print(f"ccx-notification-writer: choose one operation, got: {flags}", file=sys.stderr)
        return exit_codes.CONFIGURATION_ERROR
    operation = chosen[0] if chosen else None
    if operation is not None and operation.scope == PROCESS:
        return _status(operation.run())
    try:
        return _run(operation, args)
    except OperationFailed as failure:
        print(f"ccx-notification-writer: {failure}", file=sys.stderr)
        _report_to_sentry(str(failure))
        return failure.status
    except KeyboardInterrupt:
        return exit_codes.OK


def _report_to_sentry(text: str) -> None:
    """A failed operation is an error event, as the original's logged error was (when Sentry is on)."""
    sentry_sdk = sys.modules.get("sentry_sdk")  # imported only when Sentry was switched on
    if sentry_sdk is not None and sentry_sdk.is_initialized():
        sentry_sdk.capture_message(f"ccx-notification-writer: {text}", level="error")


def _status(result: int | None) -> int:
    """An operation's exit status: the one it returned, or OK when it returned nothing."""
    return exit_codes.OK if result is None else result


def _run(operation: Operation | None, args: argparse.Namespace) -> int:
    from writer import config as config_module
    from writer import logs

    if args.replay and args.summary_json:
        from writer.replay_summary import discard_previous

        discard_previous(args.summary_json)  # a failure before the end leaves no earlier run's summary behind
    try:
        replay_options = replay_flags.options_from_args(
            args, datetime.datetime.now(datetime.UTC), sys.stderr.isatty())
    except replay_flags.ReplayRequestError as error:
        raise OperationFailed(exit_codes.CONFIGURATION_ERROR, str(error)) from None
    try:
        config = config_module.load()
        config.check(config_module.LOGGING)  # every operation logs
        logs.setup(config)
    except config_module.ConfigError as error:
        raise OperationFailed(exit_codes.CONFIGURATION_ERROR, str(error)) from None
    try:
        replay_flags.check_group(replay_options, args.group_id, config.broker.group)
    except replay_flags.ReplayRequestError as error:
        raise OperationFailed(exit_codes.CONFIGURATION_ERROR, str(error)) from None

    import logging

    # As the original: "started"/"finished" at debug level (CloudWatch and Sentry see the operations too).
    name = operation.flag if operation is not None else "service"
    logging.getLogger("writer.cli").debug("started: %s", name)
    status = _run_operation(operation, args, config, replay_options)
    logging.getLogger("writer.cli").debug("finished: %s", name, extra={"exit_status": status})
    return status


def _run_operation(operation: Operation | None, args: argparse.Namespace, config: config_sections.Config,
                   replay_options) -> int:
    from writer import config as config_module

    # Only the settings an operation uses can make it fail (SPEC section 6).
    needs = SERVICE_NEEDS if operation is None else operation.needs
    try:
        config.check(*needs)
    except config_module.ConfigError as error:
        raise OperationFailed(exit_codes.CONFIGURATION_ERROR, str(error)) from None
    if operation is None:
        from writer.supervisor import run_service

        return run_service(config, replay=args.replay, group_id=args.group_id, replay_options=replay_options)
    if operation.scope == CONFIGURATION:
        return _status(operation.run(config))
    return _database_operation(operation, args, config)


# ---- what each operation runs ----------------------------------------------------------


def _print_version() -> None:
    print(f"ccx-notification-writer version {__version__}")


def _print_authors() -> None:
    print(AUTHORS)


def _check_kafka(config: config_sections.Config) -> int:
    from writer.kafka_options import check_kafka

    ok, text = check_kafka(config)
    print(text)
    return exit_codes.OK if ok else exit_codes.KAFKA_ERROR


def _init_schema(connection, args: argparse.Namespace) -> None:
    from writer import migrations

    migrations.init_schema(connection)
    print("database schema initialized (version 0 tables present)")


def _init_migration_info(connection, args: argparse.Namespace) -> None:
    from writer import migrations

    created = migrations.init_migration_info(connection)
    print("migration_info created at version 0" if created else "migration_info already exists")


def _print_migration_info(connection, args: argparse.Namespace) -> None:
    from writer import migrations
    from writer.schema import LATEST_VERSION

    print(f"current version: {migrations.current_version(connection)}\nlatest version: {LATEST_VERSION}")


def _check_migration_target(args: argparse.Namespace) -> None:
    """Before connecting: a target that does not exist fails without touching the database."""
    from writer import migrations

    migrations.parse_target(args.migrate)


def _migrate(connection, args: argparse.Namespace) -> None:
    from writer import migrations

    reached = migrations.migrate(connection, migrations.parse_target(args.migrate))
    print(f"database schema is at version {reached}")


def _cleanup_all(connection, args: argparse.Namespace) -> None:
    from writer import maintenance

    maintenance.cleanup_all(connection)


def _drop_all(connection, args: argparse.Namespace) -> None:
    from writer import maintenance

    maintenance.drop_all(connection)


def _truncate_reported(connection, args: argparse.Namespace) -> None:
    from writer import maintenance

    maintenance.truncate_reported(connection)


def _lister(table: str) -> Callable[[Any, argparse.Namespace], None]:
    def print_older(connection, args: argparse.Namespace) -> None:
        from writer import maintenance

        maintenance.print_older_than(connection, table, args.max_age)

    print_older.__name__ = f"print_{table}_older_than_max_age"
    return print_older


def _deleter(table: str) -> Callable[[Any, argparse.Namespace], None]:
    def delete_older(connection, args: argparse.Namespace) -> None:
        from writer import maintenance

        maintenance.delete_older_than(connection, table, args.max_age)

    delete_older.__name__ = f"delete_{table}_older_than_max_age"
    return delete_older


def _show_configuration(config: config_sections.Config) -> None:
    import logging

    from writer import config as config_module

    print(f"configuration file: {config.source_file or '(none; defaults and environment)'}")
    for section, keys in config.redacted().items():
        print(f"[{section}]")
        for key, value in keys.items():
            print(f"  {key} = {value!r}")
    # Values that only some operations use: shown, and named for the operations that would refuse them.
    for problem in config.problems(config_module.KAFKA, config_module.DATABASE, config_module.SERVICE):
        logging.getLogger("writer.config").warning("refused by the operations that use it: %s", problem)


def _database_operation(operation: Operation, args: argparse.Namespace, config: config_sections.Config) -> int:
    import psycopg

    from writer import database, maintenance, migrations
    from writer.config import ConfigError

    if operation.check_arguments is not None:
        try:
            operation.check_arguments(args)
        except migrations.MigrationError as error:
            raise OperationFailed(exit_codes.MIGRATION_ERROR, str(error)) from None
    try:
        connection = database.connect(config)
    except ConfigError as error:
        raise OperationFailed(exit_codes.CONFIGURATION_ERROR, str(error)) from None
    except psycopg.Error as error:
        raise OperationFailed(
            exit_codes.STORAGE_ERROR,
            f"cannot connect to PostgreSQL at {database.describe(config)}: {database.safe_error_text(error)}",
        ) from None
    try:
        with connection:
            operation.run(connection, args)
    except migrations.MigrationError as error:
        raise OperationFailed(exit_codes.MIGRATION_ERROR, str(error)) from None
    except maintenance.NonPositiveMaxAge as error:
        raise OperationFailed(exit_codes.STORAGE_ERROR, str(error)) from None
    except psycopg.errors.InvalidDatetimeFormat:
        raise OperationFailed(exit_codes.STORAGE_ERROR,
                              f"--max-age {args.max_age!r} is not a valid PostgreSQL interval") from None
    except psycopg.errors.UndefinedTable as error:
        raise OperationFailed(
            exit_codes.STORAGE_ERROR, f"{database.safe_error_text(error)} (run --db-init and --migrate latest first)"
        ) from None
    except psycopg.Error as error:
        raise OperationFailed(operation.failure_status,
                              f"{operation.flag} failed: {database.safe_error_text(error)}") from None
    return exit_codes.OK


# ---- the table of operations -----------------------------------------------------------

# What an operation's run function is given, and when it runs.
PROCESS = "process"  # run(): before the configuration is read
CONFIGURATION = "configuration"  # run(config) -> exit status or None
DATABASE = "database"  # run(connection, args) inside one connection; a psycopg.Error fails it

_NO_SECTIONS: tuple[str, ...] = ()
_KAFKA_SECTIONS = (config_sections.KAFKA,)
_DATABASE_SECTIONS = (config_sections.DATABASE,)
SERVICE_NEEDS = (config_sections.KAFKA, config_sections.DATABASE, config_sections.SERVICE)  # no operation flag


@dataclass(frozen=True)
class Operation:
    """One command-line operation: its flag, help, the function that runs it and its exit status on failure."""

    flag: str
    help: str
    run: Callable[..., int | None]
    scope: str = DATABASE
    failure_status: int = exit_codes.STORAGE_ERROR
    needs: tuple[str, ...] = _DATABASE_SECTIONS  # configuration sections it checks before running
    argument: str | None = None  # metavar of the flag's value; None: the flag takes no value
    check_arguments: Callable[[argparse.Namespace], None] | None = None  # before connecting

    @property
    def dest(self) -> str:
        return self.flag.replace("-", "_")


_MIGRATION = exit_codes.MIGRATION_ERROR

OPERATIONS: dict[str, Operation] = {operation.flag: operation for operation in (
    Operation("version", "print the version and exit", _print_version, PROCESS, exit_codes.OK, _NO_SECTIONS),
    Operation("authors", "print the authors and exit", _print_authors, PROCESS, exit_codes.OK, _NO_SECTIONS),
    Operation("show-configuration", "print the effective configuration (secrets not shown)", _show_configuration,
              CONFIGURATION, exit_codes.CONFIGURATION_ERROR, _NO_SECTIONS),
    Operation("check-kafka", "check that the configured Kafka brokers answer (exit status 4 if not)", _check_kafka,
              CONFIGURATION, exit_codes.KAFKA_ERROR, _KAFKA_SECTIONS),
    Operation("db-init", "create the base database schema (does nothing if it exists)", _init_schema),
    Operation("db-init-migration", "create the migration_info table at version 0 (if missing)", _init_migration_info,
              failure_status=_MIGRATION),
    Operation("migration-info", "print the current and the latest schema version", _print_migration_info,
              failure_status=_MIGRATION),
    Operation("db-cleanup", "delete the content of all data tables (new_reports, reported, read_errors)",
              _cleanup_all),
    Operation("db-drop-tables", "drop every table the service created", _drop_all),
    Operation("print-new-reports-for-cleanup", "list new_reports rows older than --max-age", _lister("new_reports")),
    Operation("new-reports-cleanup", "delete new_reports rows older than --max-age", _deleter("new_reports")),
    Operation("print-old-reports-for-cleanup", "list reported rows older than --max-age", _lister("reported")),
    Operation("old-reports-cleanup", "delete reported rows older than --max-age", _deleter("reported")),
    Operation("print-read-errors-for-cleanup", "list read_errors rows older than --max-age", _lister("read_errors")),
    Operation("read-errors-cleanup", "delete read_errors rows older than --max-age", _deleter("read_errors")),
    Operation("truncate-old-reports", "truncate the reported table", _truncate_reported),
    Operation("migrate", "migrate the schema to VERSION (a number or 'latest')", _migrate,
              failure_status=_MIGRATION, argument="VERSION", check_arguments=_check_migration_target),
)}
