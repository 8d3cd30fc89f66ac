"""The fault scenarios' skeleton: produce -> monitor -> service -> drain -> verify -> record.

``Scenario`` owns the skeleton, so a scenario test is its fault loop:

    scenario.produce(3000)                      # sample messages over every partition, a row monitor
    service = scenario.start("--replay")
    for step in range(faults):
        scenario.wait_share(step, faults)       # faults land while the pipeline is busy
        ...                                     # the fault
    scenario.drain(service)                     # exit 0 once everything is consumed
    scenario.verify()                           # exactly the expected rows, offsets at the end
    scenario.record("name", faults=faults, ...)  # a line of the README's reliability tables

Messages are produced partition by partition, so the test knows the partition and offset of every message.
With CCX_RELIABILITY_RESULTS=<file>, every record is appended to that file as a JSON line.
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.database import Database, Key, RowMonitor, count_deliveries, delivered_keys, stored_keys
from tests.harness.kafka import PARTITIONS, committed_offsets, committed_to_end, watermarks
from tests.harness.service import Service, service_env, wait_until
from writer.kafka_mock import produce
from writer.sample_messages import BASE_TIME, cluster_id, encoded

# ---- what is produced -------------------------------------------------------


def expected_key(number: int, org_id: int | None = None) -> Key:
    """The primary key that sample message ``number`` must be stored under."""
    when = (BASE_TIME + datetime.timedelta(seconds=number, microseconds=123456)).replace(tzinfo=None)
    return (org_id if org_id is not None else 1000 + number % 97, cluster_id(number), when)


@dataclass
class Produced:
    """Sample messages produced to a topic: which number sits at which (partition, offset)."""

    topic: str
    numbers: list[int]
    position: dict[int, tuple[int, int]] = field(default_factory=dict)  # number -> (partition, offset)
    per_partition: dict[int, int] = field(default_factory=dict)  # partition -> messages

    @property
    def keys(self) -> set[Key]:
        return {expected_key(n) for n in self.numbers}

    def keys_below(self, committed: dict[int, int]) -> set[Key]:
        """Keys of the messages before the committed offset of their partition."""
        return {expected_key(n) for n, (p, o) in self.position.items() if o < committed.get(p, 0)}


def produce_numbers(bootstrap: str, topic: str, numbers: Iterable[int], size: str = "middle_size") -> Produced:
    """Produce sample messages ``numbers`` over all partitions (number % 4), in order, keyed, to a new topic."""
    produced = Produced(topic, list(numbers))
    for partition in range(PARTITIONS):
        mine = [n for n in produced.numbers if n % PARTITIONS == partition]
        base = produced.per_partition.get(partition, 0)
        produce(bootstrap, topic, (encoded(n, size) for n in mine), (str(n).encode() for n in mine),
                partition=partition)
        for index, n in enumerate(mine):
            produced.position[n] = (partition, base + index)
        produced.per_partition[partition] = base + len(mine)
    low_high = watermarks(bootstrap, topic)
    assert all(low == 0 for low, _ in low_high.values()), f"the mock dropped data: {low_high}"
    assert {p: high for p, (_, high) in low_high.items()} == produced.per_partition, low_high
    return produced


def produce_more(bootstrap: str, topic: str, numbers: Iterable[int]) -> set[Key]:
    """Sample messages ``numbers`` after what the topic holds (partition number % 4); their keys."""
    numbers = list(numbers)
    for partition in range(PARTITIONS):
        mine = [n for n in numbers if n % PARTITIONS == partition]
        produce(bootstrap, topic, [encoded(n) for n in mine], [str(n).encode() for n in mine], partition=partition)
    return {expected_key(n) for n in numbers}


# ---- verifying ---------------------------------------------------------------------


def compare(expected: set[Key], stored: collections.Counter[Key], delivered: collections.Counter[Key] | None = None,
            produced: collections.Counter[Key] | None = None) -> dict[str, int]:
    """lost: expected but not stored; duplicated: given the ``delivered`` counts (``count_deliveries``), writes of a
    key beyond the messages produced with it (``produced``, by default one each): messages delivered again, skipped
    by their primary key; without them, keys stored more than once (never: the primary key); unexpected: stored, not
    expected."""
    counts = stored if delivered is None else delivered
    messages = produced if produced is not None and delivered is not None else {}
    return {
        "lost": len(expected - set(stored)),
        "duplicated": sum(max(0, count - max(1, messages.get(key, 1))) for key, count in counts.items()),
        "unexpected": len(set(stored) - expected),
    }


def assert_exact(database: Database, expected: set[Key], bootstrap: str, topic: str, group: str,
                 produced: collections.Counter[Key] | None = None) -> dict[str, int]:
    """Exactly the expected rows, each stored once, committed offsets at the end offsets; returns
    lost/duplicated/unexpected, duplicated measured from the deliveries (at least once: allowed, counted)."""
    stored = stored_keys(database)
    outcome = compare(expected, stored, delivered_keys(database), produced)
    assert outcome["lost"] == 0 and outcome["unexpected"] == 0, outcome
    assert sum(stored.values()) == len(expected), "a key stored twice"
    assert committed_to_end(bootstrap, topic, group), "committed offsets are not at the end offsets"
    return outcome


def drain_timeout(messages: int) -> float:
    """Generous: the mock and two workers store ~700 middle-size messages/s on 2 cores."""
    return 120 + messages / 50


_SUMMARY = re.compile(r"replay finished: messages (\d+), stored (\d+), duplicates (\d+), rejected (\d+)")


def replay_summary(service: Service) -> dict[str, int]:
    """The figures of the replay's summary line on stdout."""
    match = _SUMMARY.search(service.stdout())
    assert match, f"no summary line on stdout: {service.stdout()!r} {service.stderr()[-2000:]}"
    return dict(zip(("messages", "stored", "duplicates", "rejected"), map(int, match.groups()), strict=True))


def no_worker_crash(service: Service) -> None:
    died = service.logged("died with status")
    assert not died, died[:3]
    assert "Traceback" not in service.stderr(), service.stderr()[service.stderr().index("Traceback"):][:3000]


def wait_all_assigned(service: Service, timeout: float = 60) -> None:
    """Until every worker holds partitions (the group is stable, both workers busy)."""
    def assigned():
        try:
            _, body = service.health()
        except OSError:
            return False
        return all(w["assigned_partitions"] > 0 for w in body["workers"])

    wait_until(assigned, timeout, message="every worker to hold partitions")


def shutdown_bound(env: dict[str, str]) -> float:
    """The supervisor's documented bound (batch timeout + one write, at most shutdown_timeout_s while the
    database fails, then the worker is killed) plus the consumer's leave-group and process exit."""
    def setting(key: str) -> float:
        return float(env["CCX_NOTIFICATION_WRITER__PROCESSING__" + key])

    return setting("SHUTDOWN_TIMEOUT_S") + setting("BATCH_TIMEOUT_MS") / 1000 + 10


# ---- the reliability tables ----------------------------------------------------------------


def record(scenario: str, **numbers: object) -> dict:
    """One line of the README's reliability tables: printed, and appended to $CCX_RELIABILITY_RESULTS if set."""
    entry = {"scenario": scenario, **numbers}
    line = json.dumps(entry, default=str)
    print("RELIABILITY " + line)
    path = os.environ.get("CCX_RELIABILITY_RESULTS")
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\n")
    return entry


# ---- the skeleton -----------------------------------------------------------------------------


class Scenario:
    """One fault scenario against the service: see the module's docstring. ``close()`` (the ``scenario``
    fixture calls it) stops the monitor and whatever the scenario started."""

    def __init__(self, database: Database, bootstrap: str, topic: str, group: str, workdir: Path,
                 **settings: object) -> None:
        self.database, self.bootstrap, self.topic, self.group, self.workdir = database, bootstrap, topic, group, workdir
        count_deliveries(database)  # the duplicated figure: writes that carried a key already stored
        self.env = service_env(database.env(), bootstrap, topic, group, **settings)
        self.produced: Produced | None = None
        self.messages = 0  # what the record says was produced
        self.expected: set[Key] = set()  # the keys that must end up stored
        self.monitor: RowMonitor | None = None
        self.services: list[Service] = []
        self.drained: float | None = None
        self.outcome: dict[str, int] | None = None

    def configure(self, **settings: object) -> None:
        """Settings of the service started next (SECTION__KEY=value), on top of service_env's."""
        self.env.update({"CCX_NOTIFICATION_WRITER__" + key.upper(): str(value) for key, value in settings.items()})

    # -- produce
    def produce(self, messages: int) -> Produced:
        """Sample messages 0..messages-1 over every partition, all expected stored; the row monitor started."""
        self.produced = produce_numbers(self.bootstrap, self.topic, range(messages))
        self.messages += messages
        self.expected |= self.produced.keys
        self.watch()
        return self.produced

    def produce_more(self, numbers: Iterable[int]) -> None:
        """More sample messages after what the topic holds, all expected stored."""
        numbers = list(numbers)
        self.expected |= produce_more(self.bootstrap, self.topic, numbers)
        self.messages += len(numbers)

    def watch(self) -> RowMonitor:
        """The row monitor, started (produce() does it)."""
        if self.monitor is None:
            self.monitor = RowMonitor(self.database)
        return self.monitor

    # -- the service
    def start(self, *args: str, name: str = "service", **settings: object) -> Service:
        """The console script with ``args``; ``settings`` (SECTION__KEY=value) for this one only."""
        env = {**self.env, **{"CCX_NOTIFICATION_WRITER__" + key.upper(): str(value) for key, value in settings.items()}}
        service = Service(env, *args, workdir=self.workdir, name=name)
        self.services.append(service)
        return service

    def wait_share(self, step: int, steps: int) -> None:
        """Until step+1 of steps+2 equal shares of the messages are stored: each of ``steps`` faults lands
        while the pipeline is busy, and rows are left after the last one."""
        self.watch().wait_rows(self.messages * (step + 1) // (steps + 2), timeout=drain_timeout(self.messages))

    # -- drain
    def drain(self, service: Service) -> Service:
        """Until ``service`` (a replay) exits after consuming everything: exit status 0, the time noted."""
        try:
            status = service.wait(drain_timeout(self.messages))
            self.drained = time.monotonic()
        finally:
            service.close()
        assert status == 0, service.stderr()[-3000:]
        return service

    def committed(self) -> dict[int, int]:
        return committed_offsets(self.bootstrap, self.topic, self.group)

    def wait_committed(self, timeout: float | None = None) -> None:
        """Until the group's committed offsets reach the end offsets (a service that keeps running), time noted."""
        wait_until(lambda: committed_to_end(self.bootstrap, self.topic, self.group),
                   drain_timeout(self.messages) if timeout is None else timeout, interval=0.5,
                   message="the committed offsets to reach the end offsets")
        self.drained = time.monotonic()

    def drained_after(self, moment: float) -> float:
        assert self.drained is not None, "drain() or wait_committed() first"
        return round(self.drained - moment, 1)

    def resumed_after(self, moment: float | None) -> float | None:
        """Seconds from ``moment`` until rows were stored again."""
        return self.monitor.progress_after(moment) if self.monitor is not None else None

    # -- verify, record
    def verify(self, expected: set[Key] | None = None, produced: collections.Counter[Key] | None = None,
               ) -> dict[str, int]:
        """Exactly ``expected`` (by default every key expected so far) stored, offsets committed to the end;
        ``produced``: how many messages carry each key, where more than one (a duplicate by design)."""
        self.close()
        self.outcome = assert_exact(self.database, self.expected if expected is None else expected,
                                    self.bootstrap, self.topic, self.group, produced)
        return self.outcome

    def record(self, scenario: str, faults: int, **numbers: object) -> dict:
        """A line of the reliability tables: the messages, the faults, the outcome of verify(), ``numbers``."""
        assert self.outcome is not None, "verify() first"
        return record(scenario, messages=self.messages, faults=faults, **self.outcome, **numbers)

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        for service in self.services:
            service.close()

    def __enter__(self) -> Scenario:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
