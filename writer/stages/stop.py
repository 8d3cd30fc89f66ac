"""When this worker has to be gone: SIGTERM (or an orphaned worker) sets a deadline every stage respects.

Stop time: a worker exits within ``shutdown_timeout_s`` of the request in
every state. The retry sleep ends at once and no further attempt is made; a
write in progress is cut short after half that time (the watchdog shuts its
socket down); closing (last commit, leaving the group, the producers'
flushes) gets the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_SLEEP_STEP_S = 0.05


class StopRequest:
    def __init__(self, shutdown_timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.shutdown_timeout = shutdown_timeout_s
        self.clock = clock  # every deadline of the stop (and of a revocation's wait) is on this clock
        self.requested = False
        self.deadline = float("inf")

    def request(self) -> bool:
        """Start the stop; whether this call started it. Assignments only: safe in a signal handler."""
        if self.requested:
            return False
        self.requested = True
        self.deadline = self.clock() + self.shutdown_timeout
        return True

    def sleep(self, seconds: float) -> None:
        """Sleep, ending at once (within ``_SLEEP_STEP_S``) when a stop is requested."""
        until = self.clock() + seconds
        while not self.requested and (left := until - self.clock()) > 0:
            time.sleep(min(left, _SLEEP_STEP_S))

    def time_left(self, at_most: float) -> float:
        """``at_most`` seconds, or less when stopping (keeping a second for what follows)."""
        if not self.requested:
            return at_most
        return max(0.0, min(at_most, self.deadline - self.clock() - 1))
