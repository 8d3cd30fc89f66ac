"""Dead-letter stage: every rejection of a batch is logged, then (when a topic is configured) sent and acknowledged.

``DeadLetters.flush`` raises ``DeadLetterError`` unless every dead letter was
acknowledged; the worker then stops without committing the batch's offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from writer.dead_letters import DeadLetters
from writer.message import Rejection
from writer.metrics import Metrics
from writer.stages.parse import where

log = logging.getLogger("writer.worker")

# How long the dead letters of one batch may take to be acknowledged (less when stopping, even once the wait began).
DEAD_LETTER_FLUSH_S = 30.0


def dead_letter(rejections: list[tuple[Any, Rejection]], sink: DeadLetters | None, metrics: Metrics,
                flush_time: float, waiting_for_kafka: Callable[[], AbstractContextManager[object]],
                time_left: Callable[[float], float] | None = None) -> None:
    """``flush_time``: how long the acknowledgements may take; ``time_left``: see ``DeadLetters.flush``."""
    for message, rejection in rejections:
        log.warning(
            "message rejected: %s", rejection.detail,
            extra={**where(message, rejection.org_id, rejection.cluster), "reason": rejection.reason},
        )
    if sink is None or not rejections:
        return
    for message, rejection in rejections:
        sink.send(message, rejection)
    with waiting_for_kafka():
        metrics.dead_letters.inc(sink.flush(flush_time, time_left))
