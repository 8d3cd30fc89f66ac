"""Fixture: a fault scenario on the test's migrated database, broker, topic, group and work directory; and the
short (default) and long (``-m slow``) sizes the scenarios run at."""

from __future__ import annotations

import pytest

from tests.harness.scenario import Scenario

CI_MESSAGES = 3000
FULL_MESSAGES = 30000


def sizes(ci_faults: int, full_faults: int) -> list:
    """Parameters (messages, faults): a short version by default, a long one marked slow."""
    return [
        pytest.param(CI_MESSAGES, ci_faults, id="ci"),
        pytest.param(FULL_MESSAGES, full_faults, id="full", marks=[pytest.mark.slow, pytest.mark.timeout(1200)]),
    ]


@pytest.fixture
def scenario(migrated_database, kafka_bootstrap, topic, group, workdir):
    with Scenario(migrated_database, kafka_bootstrap, topic, group, workdir) as scenario:
        yield scenario
