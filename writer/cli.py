"""Command line: the original's flags (one or two dashes), one dispatcher for every operation."""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Callable

from writer import AUTHORS, __version__, exit_codes
from writer import replay_options as replay_flags

# flag -> help. Each selects one operation; with none the service starts.
OPERATIONS = {
    "version": "print the version and exit",
    "authors": "print the authors and exit",
    "show-configuration": "print the effective configuration (secrets not shown)",
    "check-kafka": "check that the configured Kafka brokers answer (exit status 4 if not)",
    "db-init": "create the base database schema (does nothing if it exists)",
    "db-init-migration": "create the migration_info table at version 0 (if missing)",
    "migration-info": "print the current and the latest schema version",
    "db-cleanup": "delete the content of all data tables (new_reports, reported, read_errors)",
    "db-drop-tables": "drop every table the service created",
    "print-new-reports-for-cleanup": "list new_reports rows older than --max-age",
    "new-reports-cleanup": "delete new_reports rows older than --max-age",
    "print-old-reports-for-cleanup": "list reported rows older than --max-age",
    "old-reports-cleanup": "delete reported rows older than --max-age",
    "print-read-errors-for-cleanup": "list read_errors rows older than --max-age",
    "read-errors-cleanup": "delete read_errors rows older than --max-age",
    "truncate-old-reports": "truncate the reported table",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccx-notification-writer",
        description="Consume OpenShift Insights results from Kafka and store them in PostgreSQL (new_reports). "
        "Without an operation flag the service starts.",
        allow_abbrev=False,
    )
    for flag, text in OPERATIONS.items():
        parser.add_argument(f"-{flag}", f"--{flag}", dest=flag.replace("-", "_"), action="store_true", help=text)
    parser.add_argument("-migrate", "--migrate", metavar="VERSION", help="migrate the schema to VERSION (a number or 'latest')")
    parser.add_argument("-max-age", "--max-age", metavar="AGE", default="7 days",
                        help="PostgreSQL interval for the cleanup operations (default: '7 days')")
    parser.add_argument("-replay", "--replay", action="store_true",
                        help="consume up to the end offsets seen at start, print a summary and exit "
                        "(see the replay options below)")
    parser.add_argument("-group-id", "--group-id", metavar="GROUP",
                        help="consumer group id to use instead of [broker] group (a new group starts at the earliest offset)")
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
    chosen = [flag for flag in OPERATIONS if getattr(args, flag.replace("-", "_"))]
    if args.migrate is not None:
        chosen.append("migrate")
    if len(chosen) > 1:
        print(f"ccx-notification-writer: choose one operation, got: {', '.join('--' + c for c in chosen)}", file=sys.stderr)
        return exit_codes.CONFIGURATION_ERROR
    if chosen == ["version"]:
        print(f"ccx-notification-writer version {__version__}")
        return exit_codes.OK
    if chosen == ["authors"]:
        print(AUTHORS)
        return exit_codes.OK
    try:
        return _run(chosen[0] if chosen else None, args)
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


def _run(operation: str | None, args: argparse.Namespace) -> int:
    from writer import config as config_module
    from writer import logs

    if args.replay and args.summary_json:
        from writer.replay_summary import discard_previous

        discard_previous(args.summary_json)  # a failure before the end leaves no earlier run's summary behind
    try:
        replay_options = replay_flags.options_from_args(
            args, datetime.datetime.now(datetime.timezone.utc), sys.stderr.isatty())
    except replay_flags.ReplayRequestError as error:
        raise OperationFailed(exit_codes.CONFIGURATION_ERROR, str(error)) from None
    try:
        config = config_module.load()
        config.check(config_module.LOGGING)  # every operation logs
        logs.setup(config)
    except config_module.ConfigError as error:
        raise OperationFailed(exit_codes.CONFIGURATION_ERROR, str(error)) from None
    try:
        replay_flags.check_group(replay_options, args.group_id, config["broker"]["group"])
    except replay_flags.ReplayRequestError as error:
        raise OperationFailed(exit_codes.CONFIGURATION_ERROR, str(error)) from None

    import logging

    # As the original: "started"/"finished" at debug level (CloudWatch and Sentry see the operations too).
    logging.getLogger("writer.cli").debug("started: %s", operation or "service")
    status = _run_operation(operation, args, config, replay_options)
    logging.getLogger("writer.cli").debug("finished: %s", operation or "service", extra={"exit_status": status})
    return status


def _run_operation(operation: str | None, args: argparse.Namespace, config, replay_options) -> int:
    from writer import config as config_module

    if operation == "show-configuration":
        _show_configuration(config)
        return exit_codes.OK
    # Only the settings an operation uses can make it fail (SPEC section 6).
    needs = {"check-kafka": (config_module.KAFKA,), None: (config_module.KAFKA, config_module.DATABASE,
                                                          config_module.SERVICE)}
    try:
        config.check(*needs.get(operation, (config_module.DATABASE,)))
    except config_module.ConfigError as error:
        raise OperationFailed(exit_codes.CONFIGURATION_ERROR, str(error)) from None
    if operation == "check-kafka":
        from writer.kafka_options import check_kafka

        ok, text = check_kafka(config)
        print(text)
        return exit_codes.OK if ok else exit_codes.KAFKA_ERROR
    if operation is None:
        from writer.supervisor import run_service

        return run_service(config, replay=args.replay, group_id=args.group_id, replay_options=replay_options)
    return _database_operation(operation, args, config)


def _show_configuration(config) -> None:
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


def _database_operation(operation: str, args: argparse.Namespace, config) -> int:
    import psycopg

    from writer import database, maintenance, migrations
    from writer.config import ConfigError

    actions: dict[str, Callable] = {
        "db-init": lambda c: (migrations.init_schema(c), print("database schema initialized (version 0 tables present)")),
        "db-init-migration": lambda c: print(
            "migration_info created at version 0" if migrations.init_migration_info(c) else "migration_info already exists"
        ),
        "migration-info": lambda c: print(
            f"current version: {migrations.current_version(c)}\nlatest version: {migrations.LATEST_VERSION}"
        ),
        "migrate": lambda c: print(
            f"database schema is at version {migrations.migrate(c, migrations.parse_target(args.migrate))}"
        ),
        "db-cleanup": maintenance.cleanup_all,
        "db-drop-tables": maintenance.drop_all,
        "print-new-reports-for-cleanup": lambda c: maintenance.print_older_than(c, "new_reports", args.max_age),
        "new-reports-cleanup": lambda c: maintenance.delete_older_than(c, "new_reports", args.max_age),
        "print-old-reports-for-cleanup": lambda c: maintenance.print_older_than(c, "reported", args.max_age),
        "old-reports-cleanup": lambda c: maintenance.delete_older_than(c, "reported", args.max_age),
        "print-read-errors-for-cleanup": lambda c: maintenance.print_older_than(c, "read_errors", args.max_age),
        "read-errors-cleanup": lambda c: maintenance.delete_older_than(c, "read_errors", args.max_age),
        "truncate-old-reports": maintenance.truncate_reported,
    }
    if operation == "migrate":
        try:
            migrations.parse_target(args.migrate)
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
            actions[operation](connection)
    except migrations.MigrationError as error:
        raise OperationFailed(exit_codes.MIGRATION_ERROR, str(error)) from None
    except maintenance.NonPositiveMaxAge as error:
        raise OperationFailed(exit_codes.STORAGE_ERROR, str(error)) from None
    except psycopg.errors.InvalidDatetimeFormat as error:
        raise OperationFailed(exit_codes.STORAGE_ERROR, f"--max-age {args.max_age!r} is not a valid PostgreSQL interval") from None
    except psycopg.errors.UndefinedTable as error:
        raise OperationFailed(
            exit_codes.STORAGE_ERROR, f"{database.safe_error_text(error)} (run --db-init and --migrate latest first)"
        ) from None
    except psycopg.Error as error:
        status = exit_codes.MIGRATION_ERROR if operation in ("migrate", "migration-info", "db-init-migration") else exit_codes.STORAGE_ERROR
        raise OperationFailed(status, f"{operation} failed: {database.safe_error_text(error)}") from None
    return exit_codes.OK
