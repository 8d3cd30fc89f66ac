"""When the supervisor restarts a dead worker, and when it gives up: pure functions of the death times.

- Deaths older than ``window`` seconds are forgotten.
- While at most ``max_restarts`` deaths are remembered, the worker is
  restarted after 0.5 s, 1 s, 2 s, ... (doubling per remembered death, at
  most 30 s), so a crash loop does not spin.
- One more and the service stops with the worker's exit status; a worker
  killed by a signal (negative status) or exiting 0 unasked stops it with 2
  (consumer error).
"""

from __future__ import annotations

from writer import exit_codes

# A single crash (a lost broker, an OOM kill) is restarted almost at once: the worker's partitions sit
# unconsumed meanwhile.
FIRST_DELAY_S = 0.5
# A crash loop waits at most this long between attempts: long enough not to spin against a down
# dependency, short enough that the service resumes within a scrape interval or two once it is back.
MAX_DELAY_S = 30.0


def after_death(deaths: list[float], now: float, window: float, max_restarts: int) -> tuple[list[float], float | None]:
    """(the deaths to remember, this one included; seconds before the restart, or None to stop the service)."""
    remembered = [t for t in deaths if now - t < window] + [now]
    if len(remembered) > max_restarts:
        return remembered, None
    return remembered, min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** (len(remembered) - 1))


def service_exit_status(worker_status: int | None) -> int:
    """The service's exit status when a worker's deaths stop it."""
    return worker_status if worker_status is not None and worker_status > 0 else exit_codes.CONSUMER_ERROR
