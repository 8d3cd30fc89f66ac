"""Two plain confluent-kafka consumers (no code of the writer's) join one group on librdkafka's mock, N times.

    .venv/bin/python -m bench.group_join --starts 20                      # both start at once
    .venv/bin/python -m bench.group_join --starts 5 --late-sync            # the second one's SyncGroup comes late
    .venv/bin/python -m bench.group_join --starts 5 --late-sync --session-timeout-ms 10000

Each start: a fresh group on one 4-partition topic; each consumer in its own process, with
``debug=cgrp`` logs in --logs. Reported per start: seconds from the start until each consumer holds
partitions, and the SyncGroup errors its log shows. ``--late-sync`` stops the second consumer
(SIGSTOP) after it sent its JoinGroup and resumes it once the first one holds partitions: the order
in which a loaded machine may deliver the two SyncGroups.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid

TOPIC = "group-join"


def consume(bootstrap: str, group: str, options: dict[str, str]) -> None:
    """A consumer process: prints a JSON line each time its partitions change, runs until SIGTERM."""
    from confluent_kafka import Consumer

    held: set[int] = set()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "debug": "cgrp",
                         "partition.assignment.strategy": "cooperative-sticky", **options})

    def changed(_, partitions, add: bool) -> None:
        numbers = {p.partition for p in partitions}
        if add:
            held.update(numbers)
        else:
            held.difference_update(numbers)
        print(json.dumps({"t": time.time(), "held": sorted(held)}), flush=True)

    consumer.subscribe([TOPIC], on_assign=lambda c, p: changed(c, p, True),
                       on_revoke=lambda c, p: changed(c, p, False), on_lost=lambda c, p: changed(c, p, False))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        consumer.poll(0.1)
    consumer.close()


def start_consumer(bootstrap: str, group: str, options: dict[str, str], log_path: str, slot: int) -> subprocess.Popen:
    if "group.instance.id" in options:
        options = {**options, "group.instance.id": options["group.instance.id"] + str(slot)}
    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "bench.group_join", "--consumer", bootstrap, group,
                                 json.dumps(options)], stdout=subprocess.PIPE, stderr=log, text=True,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def one_start(bootstrap: str, options: dict[str, str], late_sync: bool, logs: str, number: int,
              limit: float) -> dict:
    import select

    group = f"join-{uuid.uuid4().hex[:8]}"
    paths = [os.path.join(logs, f"start{number:02d}-consumer{i}.log") for i in (0, 1)]
    began = time.time()
    first = start_consumer(bootstrap, group, options, paths[0], 0)
    if late_sync:  # the first one joins first, so the mock makes it the leader
        wait_for(lambda: "Joining group" in read(paths[0]), 10)
    second = start_consumer(bootstrap, group, options, paths[1], 1)
    consumers = [first, second]
    held_since: list[float | None] = [None, None]
    if late_sync:
        wait_for(lambda: "Joining group" in read(paths[1]), 10)
        time.sleep(0.2)  # the request is on its way
        second.send_signal(signal.SIGSTOP)
    resumed = not late_sync
    deadline = time.monotonic() + limit
    while None in held_since and time.monotonic() < deadline:
        readable, _, _ = select.select([c.stdout for c in consumers], [], [], 0.1)
        for index, process in enumerate(consumers):
            if process.stdout in readable:
                event = json.loads(process.stdout.readline())
                if event["held"] and held_since[index] is None:
                    held_since[index] = event["t"] - began
        if not resumed and held_since[0] is not None:
            time.sleep(0.3)  # the leader's SyncGroup has been answered: now the follower's comes late
            second.send_signal(signal.SIGCONT)
            resumed = True
    for process in consumers:
        process.send_signal(signal.SIGCONT)
        process.terminate()
    for process in consumers:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    sync_errors = []
    for path in paths:
        found = re.findall(r"SyncGroup response: ([^(]+) \(", read(path))
        sync_errors.append(sorted({text.strip() for text in found if text.strip() != "Success"}))
    return {"start": number, "seconds": held_since, "sync_errors": sync_errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.group_join", description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--session-timeout-ms", type=int, default=45000)
    parser.add_argument("--late-sync", action="store_true", help="make the second consumer's SyncGroup come late")
    parser.add_argument("--static", action="store_true", help="static membership: group.instance.id per consumer")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a librdkafka option for both consumers (repeatable)")
    parser.add_argument("--logs", default="/tmp/group_join", help="folder for the consumers' debug=cgrp logs")
    parser.add_argument("--consumer", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.consumer:
        consume(args.consumer[0], args.consumer[1], json.loads(args.consumer[2]))
        return 0
    from confluent_kafka import Producer

    os.makedirs(args.logs, exist_ok=True)
    mock = Producer({"test.mock.num.brokers": 1})  # the mock cluster lives as long as this client
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in mock.list_topics(timeout=10).brokers.values())
    for partition in range(4):  # the mock creates the topic, 4 partitions, on first produce
        mock.produce(TOPIC, b"x", partition=partition)
    mock.flush(10)
    limit = 2 * args.session_timeout_ms / 1000 + 10
    stalls = 0
    for number in range(1, args.starts + 1):
        options = {"session.timeout.ms": str(args.session_timeout_ms), **dict(o.split("=", 1) for o in args.option)}
        if args.static:
            options["group.instance.id"] = f"{os.uname().nodename}-{number}-"  # a slot number is appended below
        result = one_start(bootstrap, options, args.late_sync, args.logs, number, limit)
        # The mock's first election comes 3 s after the first join; anything much later is a stall.
        stalled = any(s is None or s > 6 for s in result["seconds"])
        stalls += stalled
        times = ", ".join("never" if s is None else f"{s:.1f} s" for s in result["seconds"])
        print(f"start {number:2d}: partitions held after {times}{'  STALL' if stalled else ''}; "
              f"SyncGroup errors {result['sync_errors']}", flush=True)
    print(f"{stalls} of {args.starts} starts stalled (session.timeout.ms {args.session_timeout_ms})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
