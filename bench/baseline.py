"""The original algorithm, for comparison: one message at a time, in one process.

For each message: parse + validate + shrink (``parse_message``), one INSERT in a transaction of
its own (one database commit), then a synchronous commit of the Kafka offset. Rejected messages
are skipped (their offset is committed too). Runs until ``--count`` messages were consumed and
prints one JSON line: counts, seconds from start, seconds from the first message (the group join
excluded), peak RSS.

    python -m bench.baseline --bootstrap HOST:PORT --topic T --conninfo "..." --count 10000

Further librdkafka options (TLS, SASL) come as a JSON object in the environment variable
BENCH_KAFKA_OPTIONS, not on the command line, where other users could read secrets.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import uuid

import psycopg
from confluent_kafka import Consumer, TopicPartition

from writer.memory import vm_hwm_kib
from writer.message import Row, parse_message

INSERT = (
    "INSERT INTO new_reports (org_id, account_number, cluster, report, updated_at, kafka_offset)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--conninfo", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--group", default=None)
    args = parser.parse_args(argv)

    started = time.time()
    consumer = Consumer({
        **json.loads(os.environ.get("BENCH_KAFKA_OPTIONS", "{}")),
        "bootstrap.servers": args.bootstrap, "group.id": args.group or f"bench-baseline-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
    })
    consumer.subscribe([args.topic])
    connection = psycopg.connect(args.conninfo, autocommit=True)  # every INSERT is its own transaction
    consumed = stored = rejected = 0
    first = None
    while consumed < args.count:
        message = consumer.poll(1.0)
        if message is None:
            if time.time() - started > 600:
                print(json.dumps({"error": f"timed out after {consumed} messages"}))
                return 1
            continue
        if message.error() is not None:
            continue
        if first is None:
            first = time.time()
        consumed += 1
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        row = parse_message(message.value(), message.offset(), now)
        if type(row) is Row:
            connection.execute(INSERT, (row.org_id, row.account_number, row.cluster, row.report.decode(),
                                        row.updated_at, row.kafka_offset))
            stored += 1
        else:
            rejected += 1
        consumer.commit(offsets=[TopicPartition(message.topic(), message.partition(), message.offset() + 1)],
                        asynchronous=False)
    finished = time.time()
    consumer.close()
    connection.close()
    print(json.dumps({
        "messages": consumed, "stored": stored, "rejected": rejected,
        "seconds_total": finished - started, "seconds_after_first": finished - first,
        "peak_rss_kib": vm_hwm_kib(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
