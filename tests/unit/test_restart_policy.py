"""The supervisor's restart policy as a pure function: backoff between restarts, the window of remembered
deaths, the exit status when it gives up (a worker killed by a signal: 2) (the running service:
tests/integration/test_supervisor_policy.py)."""

from __future__ import annotations

import pytest

from writer.restart_policy import after_death, service_exit_status

# ---- the policy, with the numbers written out -----------------------------------------------------------


def test_backoff_doubles_per_remembered_death_up_to_30_s():
    deaths: list[float] = []
    delays = []
    for now in range(10):
        deaths, delay = after_death(deaths, float(now), window=100, max_restarts=10)
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_one_death_more_than_max_restarts_within_the_window_stops():
    assert after_death([10.0, 20.0], 25.0, window=60, max_restarts=2) == ([10.0, 20.0, 25.0], None)
    assert after_death([], 0.0, window=60, max_restarts=0) == ([0.0], None)


def test_deaths_older_than_the_window_are_forgotten():
    # 10 s ago and 61 s ago, window 60 s: only the recent one counts, so this is the second death (1 s).
    assert after_death([39.0, 90.0], 100.0, window=60, max_restarts=2) == ([90.0, 100.0], 1.0)
    assert after_death([39.0, 40.0], 100.0, window=60, max_restarts=1) == ([100.0], 0.5)


@pytest.mark.parametrize("worker_status,service_status", [(5, 5), (3, 3), (1, 1), (-9, 2), (-15, 2), (0, 2),
                                                         (None, 2)])
def test_exit_status_when_giving_up(worker_status, service_status):
    assert service_exit_status(worker_status) == service_status
