"""Fixture: workers in the test's own process, closed afterwards."""

from __future__ import annotations

import pytest

from tests.harness.worker import make_worker


@pytest.fixture
def worker_factory(migrated_database, kafka_bootstrap, topic):
    """``worker_factory(**settings)`` -> (worker, status slots): a Worker on the test's database and topic."""
    made = []

    def factory(**settings):
        worker, slots = make_worker(migrated_database, kafka_bootstrap, topic, **settings)
        made.append(worker)
        return worker, slots

    yield factory
    for worker in made:
        worker.consumer.close()
        worker.writer.close()
