"""A stand-in for the original's consumer (Go, sarama), run as a subprocess by tests/integration/test_switch_over.py.

It behaves as the original does where a switch-over depends on it:
- the eager "range" assignor (sarama's default);
- each message handled (its row stored, one message at a time), then marked (offset stored locally);
- marked offsets committed in the background about once a second (sarama's auto-commit, 1 s), never
  after each message;
- no signal handling: SIGTERM ends it at once (the test sends SIGTERM with Python's default action),
  so the consumer is never closed, its last marks are not committed, and its member stays in the group
  until the session times out.

Usage: python -m tests.harness.original_standin GROUP TOPIC HANDLE   (database and broker from the environment,
as the service reads them). Prints "handled OFFSET" after each stored row, then "done" and waits.
"""

from __future__ import annotations

import datetime
import sys
import time

from confluent_kafka import Consumer

from writer import config as config_module
from writer.database import conninfo
from writer.message import Row, parse_message
from writer.storage import BatchWriter


def main(group: str, topic: str, handle: int) -> None:
    config = config_module.load()
    writer = BatchWriter(conninfo(config))
    consumer = Consumer({
        "bootstrap.servers": config.broker.addresses, "group.id": group,
        "auto.offset.reset": "earliest", "partition.assignment.strategy": "range",
        # the mock cluster ends rebalances on its session timer: 6 s here (sarama's default is 10 s)
        "session.timeout.ms": 6000,
        "enable.auto.commit": True, "auto.commit.interval.ms": 1000, "enable.auto.offset.store": False,
    })
    consumer.subscribe([topic])
    handled = 0
    while handled < handle:
        message = consumer.poll(0.5)
        if message is None or message.error() is not None:
            continue
        row = parse_message(message.value(), message.offset(), datetime.datetime.now(datetime.UTC).replace(tzinfo=None))
        assert isinstance(row, Row), row
        writer.write([row])
        consumer.store_offsets(message=message)  # sarama's MarkMessage
        handled += 1
        print(f"handled {message.offset()}", flush=True)
        time.sleep(0.15)  # the original handles one message at a time; spread them over a few commit intervals
    print("done", flush=True)
    while True:  # killed here, mid-run as far as the group knows
        time.sleep(60)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
