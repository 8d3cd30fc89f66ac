"""Track stage: payload-tracker updates of a finished batch, queued on the tracker's own producer (best effort).

SPEC 7: a message carrying a RequestId gets received, processed, then
success (stored, or a duplicate of a stored row) or error (rejected, refused
by the database included). Never waited for (see ``writer.tracker``).
"""

from __future__ import annotations

from typing import Any

from writer.message import Rejection, Row
from writer.tracker import ERROR, PROCESSED, RECEIVED, SUCCESS, PayloadTracker

# The tracker's words for the steps a message went through.
STORED_UPDATES = (RECEIVED, PROCESSED, SUCCESS)
REJECTED_UPDATES = (RECEIVED, PROCESSED, ERROR)


def track(tracker: PayloadTracker, rows: list[Row], refused_positions: set[int],
          rejections: list[tuple[Any, Rejection]]) -> None:
    """``rejections`` include the rows the database refused (at ``refused_positions`` of ``rows``)."""
    for position, row in enumerate(rows):
        if row.request_id is not None and position not in refused_positions:
            tracker.send(row.request_id, STORED_UPDATES)
    for _, rejection in rejections:
        if rejection.request_id is not None:
            tracker.send(rejection.request_id, REJECTED_UPDATES)
    tracker.serve()  # delivery reports only: updates never hold up the batch path
