"""The unit tier uses no server: a test here that asks for PostgreSQL, Kafka or CloudWatch (directly or
through another fixture, such as ``database`` or ``migrated_database``) fails at its setup, saying so."""

from __future__ import annotations

import pytest


def refuse(name: str) -> None:
    pytest.fail(f"a unit test asked for {name!r}: tests that need a server belong in tests/integration/",
                pytrace=False)


@pytest.fixture
def postgres_server():
    refuse("postgres_server")


@pytest.fixture
def kafka_bootstrap():
    refuse("kafka_bootstrap")


@pytest.fixture
def kafka():
    refuse("kafka (the mock cluster)")


@pytest.fixture
def cloudwatch_endpoint():
    refuse("cloudwatch_endpoint")
