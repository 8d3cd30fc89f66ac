"""A. A partition paused during a database retry, revoked to a second member, assigned back (issue 9, item 1):
the running service, the Kafka mock and PostgreSQL; exact rows and offsets checked, numbers recorded."""

from __future__ import annotations

import time

import pytest

from tests.harness.database import execute, row_count
from tests.harness.scenario import drain_timeout, no_worker_crash
from tests.harness.service import free_port, wait_until
from tests.harness.storage import END_OUTAGE, OUTAGE


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("messages", [400])
def test_partition_revoked_during_a_retry_is_consumed_when_it_comes_back(scenario, messages):
    """Worker A retries through an outage; member B joins (takes partitions), then leaves (they come back)."""
    database = scenario.database
    half = messages // 2
    scenario.configure(PROCESSING__WORKERS=1)
    scenario.produce(half)
    first = scenario.start(name="a")
    first.wait_http()
    wait_until(lambda: row_count(database) == half, drain_timeout(half), message="the first half stored")
    execute(database, OUTAGE)
    scenario.produce_more(range(half, messages))
    first.wait_logged("database unavailable, retrying")
    second = scenario.start(name="b", METRICS__ADDRESS=f"127.0.0.1:{free_port()}")
    first.wait_logged("partitions revoked", timeout=90)
    second.wait_logged("partitions assigned", timeout=90)
    assert second.stop(60) == 0, second.stderr()[-3000:]
    first.wait_logged("partitions assigned", count=2, timeout=90)  # the partitions came back
    execute(database, END_OUTAGE)
    recovered = time.monotonic()
    wait_until(lambda: row_count(database) == messages, 120, message="every row stored after the outage")
    scenario.wait_committed(60)
    assert first.stop(60) == 0, first.stderr()[-3000:]
    scenario.verify()
    no_worker_crash(first)
    scenario.record("A. partition revoked while paused in a DB retry, assigned back", faults=1,
                    drained_after_s=scenario.drained_after(recovered))
