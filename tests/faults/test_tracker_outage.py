"""E. A payload-tracker outage (issue 9, item 6): the status topic is missing and not created, so no status can
be delivered; storage must not wait for it. The running service, the Kafka mock and PostgreSQL; exact rows and
offsets checked, numbers recorded."""

from __future__ import annotations

import time

import pytest

from tests.harness.kafka import PARTITIONS
from tests.harness.scenario import expected_key, no_worker_crash
from tests.harness.service import wait_until
from writer.kafka_mock import produce
from writer.sample_messages import encoded


@pytest.mark.parametrize("messages", [pytest.param(600, id="ci"),
                                      pytest.param(6000, id="full", marks=pytest.mark.slow)])
def test_a_tracker_outage_never_holds_up_storage(scenario, messages):
    """Batches of 20 rows: with a 5 s flush per batch (the old shared producer) the drain would take over 75 s
    for 600 messages."""
    topic = scenario.topic
    numbers = list(range(messages))
    for partition in range(PARTITIONS):
        mine = [n for n in numbers if n % PARTITIONS == partition]
        produce(scenario.bootstrap, topic, [encoded(n, request_id=f"request-{n}") for n in mine],
                [str(n).encode() for n in mine], partition=partition)
    scenario.messages = messages
    scenario.configure(PROCESSING__BATCH_SIZE=20, TRACKER__TOPIC=topic + ".missing-status",
                       TRACKER__AUTO_CREATE_TOPIC="false", BROKER__DEAD_LETTER_TOPIC=topic + ".dead-letters")
    service = scenario.start(name="tracker-outage")
    started = time.monotonic()
    service.wait_http()
    scenario.wait_committed(60)
    dropped_name = "ccx_notification_writer_tracker_statuses_dropped_total"
    wait_until(lambda: service.metrics().get(dropped_name, 0) == 3 * messages, 60, interval=1,
               message="every status counted as dropped")
    assert service.stop(60) == 0, service.stderr()[-3000:]
    no_worker_crash(service)
    scenario.verify({expected_key(n) for n in numbers})
    scenario.record("E. payload-tracker outage (status topic missing)", faults=1,
                    drained_s=scenario.drained_after(started), statuses_dropped=3 * messages)
