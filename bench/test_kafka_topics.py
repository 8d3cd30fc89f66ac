"""Topics of the benchmark's own on a broker it did not start: created, recorded, deleted only when
they exist. The broker is librdkafka's mock in a process of its own, which answers CreateTopics
with a timeout waiting for a controller (it names controller 0, its only broker is 1)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench import kafka
from writer.testing.environment import without_writer_settings


@pytest.fixture
def given_broker(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no config.toml here
    for name in set(os.environ) - set(without_writer_settings()):
        monkeypatch.delenv(name)
    process = subprocess.Popen([sys.executable, "-m", "writer.kafka_mock"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, text=True)
    try:
        bootstrap = process.stdout.readline().strip()
        broker = kafka.Broker.given_by_user(bootstrap)
        broker.admin_timeout = 2.0
        yield broker
    finally:
        process.terminate()
        process.wait(10)


def test_a_topic_is_recorded_only_once_it_exists(given_broker):
    creation = given_broker.create_topic("ccxw-bench.t1", 3)

    assert creation.startswith("auto-created on first produce (CreateTopics answered _TIMED_OUT")
    assert given_broker.created == []  # nothing exists yet, nothing to delete
    produced = kafka.produce(given_broker, "ccxw-bench.t1", [b"a", b"b"], [b"1", b"2"], 2, kafka.REALISTIC)
    assert sorted(produced.offsets) != [-1, -1]
    assert given_broker.created == ["ccxw-bench.t1"]

    # What the broker answered decides for later topics too: no second wait for a controller.
    assert given_broker.create_topic("ccxw-bench.t2", 3) == creation
    assert given_broker.created == ["ccxw-bench.t1"]

    notes: list[str] = []
    given_broker.delete_topics(["ccxw-bench.t1", "ccxw-bench.t2"], notes.append)
    assert notes == ["topic(s) ccxw-bench.t1 not deleted (CreateTopics answered _TIMED_OUT: Failed while waiting "
                     "for controller: Local: Timed out); delete them by hand"]
    assert given_broker.created == []


def test_one_admin_client_per_broker(given_broker):
    assert given_broker.admin() is given_broker.admin()
