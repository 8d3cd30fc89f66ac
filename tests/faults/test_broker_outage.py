"""6. The broker unavailable at start and mid-run: a Kafka mock of the test's own, stopped with SIGSTOP
(connections hang), under the running service; /health, /ready, exact rows and offsets, numbers recorded."""

from __future__ import annotations

import time

import pytest

from tests.harness.database import row_count
from tests.harness.fix_scenario import sizes
from tests.harness.scenario import Scenario, drain_timeout, no_worker_crash, shutdown_bound
from tests.harness.service import wait_until
from writer.kafka_mock import MockKafka


@pytest.mark.parametrize("messages,pauses", sizes(1, 3))
def test_broker_unavailable(migrated_database, topic, group, workdir, cli, messages, pauses):
    database = migrated_database
    with MockKafka() as kafka, Scenario(database, kafka.bootstrap_servers, topic, group, workdir) as scenario:
        scenario.produce(messages)
        env = scenario.env
        kafka.pause()
        try:
            check = cli("--check-kafka", env=env, timeout=60)
            assert check.returncode == 4, (check.returncode, check.stdout, check.stderr)
            assert "no Kafka broker answered" in check.stdout
            service = scenario.start()
            service.wait_http()
            # Unavailable at start: the service stays up, says it is not ready (but alive: a restart would not
            # bring Kafka back), nothing crash-loops.
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                status, body = service.ready()
                assert status == 503 and body["status"] == "unavailable", body
                assert service.process.poll() is None
                time.sleep(1)
            assert service.health()[0] == 200
            assert len(service.workers()) == 2
            metrics = service.metrics()
            assert metrics["ccx_notification_writer_worker_restarts_total"] == 0
            assert row_count(database) == 0
        finally:
            kafka.resume()
        resumed = time.monotonic()
        wait_until(lambda: service.ready()[0] == 200, 60, message="/ready to answer 200 once Kafka is back")
        health_ok_after = round(time.monotonic() - resumed, 1)
        last_resume = resumed
        outage_503 = []
        for k in range(pauses):
            scenario.watch().wait_rows(messages * (k + 1) // (pauses + 2) + 1, timeout=drain_timeout(messages))
            kafka.pause()
            paused = time.monotonic()
            try:
                wait_until(lambda: service.ready()[0] == 503, 90, message="/ready to say 503 while Kafka is down")
                outage_503.append(round(time.monotonic() - paused, 1))
                time.sleep(2)
                assert service.process.poll() is None
                assert service.health()[0] == 200
            finally:
                kafka.resume()
            last_resume = time.monotonic()
        scenario.wait_committed()
        assert service.health()[0] == 200
        # The offsets can reach the end while a worker whose group session timed out in the last outage is still
        # reconnecting (its hung requests time out first): /ready says 503 until every worker reaches a broker.
        wait_until(lambda: service.ready()[0] == 200, 90, message="/ready to answer 200 after the drain")
        metrics = service.metrics()
        assert metrics["ccx_notification_writer_worker_restarts_total"] == 0
        assert service.stop(shutdown_bound(env) + 30) == 0
        scenario.verify()
        kafka_lines = [r for r in service.log_records() if r.get("logger") == "writer.worker"
                       and r.get("level") in ("warning", "error") and "Kafka" in r.get("message", "")]
        assert kafka_lines, "the broker outage should be logged"
        no_worker_crash(service)
    scenario.record("6. broker unavailable at start and mid-run (mock paused)", faults=1 + pauses,
                    ready_200_after_s=health_ok_after, first_rows_after_s=scenario.resumed_after(resumed),
                    ready_503_within_s=max(outage_503) if outage_503 else None,
                    resumed_after_s=scenario.resumed_after(last_resume),
                    drained_after_s=scenario.drained_after(last_resume))
