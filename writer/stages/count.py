"""Count stage: a finished batch in the metrics (the original service's counters and ours)."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from writer.message import CURRENT_SCHEMA_VERSION, FUTURE_TIMESTAMP, INVALID_TIMESTAMP, Rejection, Row
from writer.metrics import Metrics
from writer.stages.write import WriteOutcome

log = logging.getLogger("writer.worker")

# Rejections found after parsing (the original counted these messages as parsed).
_REJECTED_AFTER_PARSE = {INVALID_TIMESTAMP, FUTURE_TIMESTAMP}


def count_batch(metrics: Metrics, consumed: int, rows: list[Row], written: WriteOutcome,
                rejections: list[tuple[Any, Rejection]]) -> None:
    original = metrics.original
    parsed = len(rows) + sum(1 for _, r in rejections if r.reason in _REJECTED_AFTER_PARSE)
    original["consumed_messages"].inc(consumed)
    original["parse_incoming_message"].inc(parsed)
    original["check_schema_version"].inc(parsed)
    original["marshal_report"].inc(parsed)
    original["shrink_report"].inc(parsed)
    original["check_last_checked_timestamp"].inc(len(rows))
    if rejections:
        original["consuming_errors"].inc(len(rejections))
        for reason, count in Counter(rejection.reason for _, rejection in rejections).items():
            metrics.rejected.labels(reason).inc(count)
    if written.stored:
        original["stored_messages"].inc(written.stored)
        original["stored_bytes"].inc(written.stored_bytes)
        metrics.rows_stored.inc(written.stored)
    if written.duplicates:
        metrics.duplicates.inc(written.duplicates)
    metrics.batch_size.observe(consumed)
    unexpected = [r for r in rows if r.version != CURRENT_SCHEMA_VERSION]
    if unexpected:
        metrics.unexpected_version.inc(len(unexpected))
        first = unexpected[0]
        log.warning(
            "%d messages with Version other than %d (stored anyway); first: offset %d, Version %s",
            len(unexpected), CURRENT_SCHEMA_VERSION, first.kafka_offset, first.version,
        )
