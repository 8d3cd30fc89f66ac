"""The fault-injection mock cluster's host (tests/harness/mock_cluster.py) fails loudly: a missing library is an error
with the place looked at, a host that does not start is reported with its stderr, and no wait is unbounded."""

from __future__ import annotations

import sys

import pytest

from tests.harness import mock_cluster
from tests.harness.mock_cluster import MockCluster


def test_a_missing_library_is_an_error_naming_where_it_looked(tmp_path):
    with pytest.raises(RuntimeError, match="librdkafka of confluent-kafka not found") as caught:
        mock_cluster.find_library(str(tmp_path))
    assert str(tmp_path / "confluent_kafka.libs") in str(caught.value)


def test_the_bundled_library_is_found():
    assert "librdkafka" in mock_cluster.find_library()


def test_a_host_that_fails_shows_its_stderr():
    failing = [sys.executable, "-c", "raise SystemExit('no cluster for you')"]
    with pytest.raises(RuntimeError, match="exited") as caught:
        MockCluster(failing)
    assert "no cluster for you" in str(caught.value)


def test_a_host_that_never_answers_is_given_up_on():
    silent = [sys.executable, "-c", "import sys, time; print('stuck', file=sys.stderr, flush=True); time.sleep(120)"]
    with pytest.raises(RuntimeError, match="gave no answer within 5 s") as caught:
        MockCluster(silent, startup_timeout=5)
    assert "stuck" in str(caught.value)


def test_the_real_host_starts_and_answers():
    with MockCluster() as cluster:
        assert cluster.bootstrap_servers
        cluster.create_topic("t", 1)  # answered "ok"
