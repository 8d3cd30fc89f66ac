"""Fixtures: a broker (a real one from KAFKA_BOOTSTRAP_SERVERS, else librdkafka's mock cluster), a topic and a
consumer group of the test's own, and the mock cluster with fault injection."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.harness.mock_cluster import MockCluster


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """A real broker when KAFKA_BOOTSTRAP_SERVERS is set, else librdkafka's mock cluster."""
    real = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if real:
        yield real
        return
    from writer.kafka_mock import MockKafka

    with MockKafka() as kafka:
        yield kafka.bootstrap_servers


@pytest.fixture
def topic():
    """A topic name of this test's own, so tests sharing the broker never see each other's messages."""
    return f"ccx.ocp.results.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def group():
    """A consumer group of this test's own."""
    return f"group-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kafka():
    """A mock cluster of this test's own whose requests can be made to fail (tests/harness/mock_cluster.py)."""
    with MockCluster() as cluster:
        yield cluster
