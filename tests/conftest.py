"""The suite's root: the harness's fixture plugins, and the tiers in order (unit, integration, faults).

Each test is marked with its tier (the folder it is in), so ``-m "not faults"`` leaves the slowest tier out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.harness.fix_postgres",
    "tests.harness.fix_kafka",
    "tests.harness.fix_service",
    "tests.harness.fix_storage",
    "tests.harness.fix_worker",
    "tests.harness.fix_config",
    "tests.harness.fix_cloudwatch",
    "tests.harness.fix_scenario",
]

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "faults")
# The fastest first, the slowest last; tests outside the tiers (bench/) between integration and faults.
RUN_ORDER = {"unit": 0, "integration": 1, None: 2, "faults": 3}


def tier_of(item: pytest.Item) -> str | None:
    try:
        folder = item.path.relative_to(TESTS).parts[0]
    except ValueError:  # outside tests/
        return None
    return folder if folder in TIERS else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item)
        if tier is not None:
            item.add_marker(tier)
    items.sort(key=lambda item: RUN_ORDER[tier_of(item)])  # stable: each module's tests stay together, in order
