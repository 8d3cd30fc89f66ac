"""Write stage: the rows of one batch into new_reports, retried while the database is unavailable.

What ``RetryingWrite.write`` guarantees, on top of ``storage.BatchWriter.write``:

- rows sharing a primary key: the first is written; a later one is tried (in
  a further round) only when the database refused the earlier, else it is a
  duplicate of the stored one;
- a transient error is retried with exponential backoff and jitter while the
  round's give-up deadline (``retry_max_seconds``, one deadline across the
  halves of a split) allows, never sleeping past it; then the error is raised;
- a write that times out is split in two halves written in turn rather than
  retried as is (a single row is retried as is);
- once stopping, no further attempt starts and the retry sleep ends at once:
  the error is raised, the batch is consumed again after the restart;
- rows the database refuses are returned by their position in the batch.

``write``'s ``on_trouble`` is called (once per write) when the first retry
or split begins, so the caller can keep the consumer's group membership
meanwhile; the stage itself never touches Kafka and may run in a thread of
its own (one write at a time).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import tenacity

from writer.message import Row
from writer.storage import BatchWriter, TransientDatabaseError, WriteResult, WriteTimedOut

log = logging.getLogger("writer.worker")

# Backoff between attempts: 0.25 s doubling up to 10 s, plus up to 0.5 s of jitter.
RETRY_FIRST_WAIT_S = 0.25
RETRY_MAX_WAIT_S = 10.0
RETRY_JITTER_S = 0.5


@dataclass
class WriteOutcome:
    stored: int = 0
    stored_bytes: int = 0
    duplicates: int = 0  # already stored, or repeating an earlier row of the batch
    refused: list[tuple[int, str]] = field(default_factory=list)  # (position in the batch's rows, why)


class RetryingWrite:
    def __init__(
        self,
        writer: BatchWriter,
        retry_limit_s: float,
        is_stopping: Callable[[], bool],
        sleep: Callable[[float], None],
        on_retry: Callable[[], None] = lambda: None,
        waiting_for_database: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self._sleep_for = sleep
        self._waiting_for_database = waiting_for_database  # marks the heartbeat: blocked in the database, not hung
        self._retry_limit = retry_limit_s  # 0: no limit
        self._is_stopping = is_stopping
        self._on_trouble: Callable[[], None] = _nothing
        self._on_retry = on_retry  # counted: each retry and each split
        self._clock = clock
        self._in_trouble = False
        self._give_up_at = float("inf")
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientDatabaseError),
            wait=tenacity.wait_exponential_jitter(multiplier=RETRY_FIRST_WAIT_S, max=RETRY_MAX_WAIT_S,
                                                  jitter=RETRY_JITTER_S),
            # Also when stopping: the batch is consumed again after the restart. No sleep past the deadline.
            stop=lambda state: self._is_stopping() or self._clock() + state.upcoming_sleep >= self._give_up_at,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        # A batch of several rows that timed out is split, not retried as is.
        self._retrying_unless_timed_out = self._retrying.copy(retry=tenacity.retry_if_exception(
            lambda error: isinstance(error, TransientDatabaseError) and not isinstance(error, WriteTimedOut)
        ))

    def write(self, rows: list[Row], on_trouble: Callable[[], None] | None = None) -> WriteOutcome:
        """Write every row; see the module docstring. ``on_trouble``: called at the first retry or split."""
        outcome = WriteOutcome()
        self._in_trouble = False
        self._on_trouble = on_trouble or _nothing
        pending: Sequence[int] = range(len(rows))
        while pending:
            first, repeats = _first_of_each_key(rows, pending)
            # The usual batch has no repeated key: written as it is, not copied.
            written = self._write_round(rows if len(first) == len(rows) else [rows[i] for i in first])
            refused_keys = set()
            if written.refused:
                position = {rows[i].key: i for i in first}  # keys are unique within a round
                for row, why in written.refused:
                    outcome.refused.append((position[row.key], why))
                    refused_keys.add(row.key)
            outcome.stored += written.stored
            outcome.stored_bytes += written.stored_bytes
            outcome.duplicates += written.duplicates
            pending = [i for i in repeats if rows[i].key in refused_keys]
            outcome.duplicates += len(repeats) - len(pending)
        return outcome

    def _write_round(self, rows: list[Row]) -> WriteResult:
        self._give_up_at = self._clock() + self._retry_limit if self._retry_limit else float("inf")
        return self._write_splitting(rows)

    def _write_splitting(self, rows: list[Row]) -> WriteResult:
        retrying = self._retrying if len(rows) == 1 else self._retrying_unless_timed_out
        attempts = 0

        def attempt() -> WriteResult:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and self._is_stopping():
                raise TransientDatabaseError("stopping: the batch is left for after the restart")
            with self._waiting_for_database():
                return self.writer.write(rows)

        try:
            return retrying(attempt)
        except WriteTimedOut as error:
            if len(rows) == 1 or self._is_stopping() or self._clock() >= self._give_up_at:
                raise
            log.warning("writing %d rows timed out (%s); writing them in two halves", len(rows), error)
            self._on_retry()
            self._trouble()
        middle = len(rows) // 2
        result = self._write_splitting(rows[:middle])
        second = self._write_splitting(rows[middle:])
        result.stored += second.stored
        result.stored_bytes += second.stored_bytes
        result.duplicates += second.duplicates
        result.refused += second.refused
        return result

    def _trouble(self) -> None:
        if not self._in_trouble:
            self._in_trouble = True
            self._on_trouble()

    def _sleep(self, seconds: float) -> None:
        self._trouble()
        self._sleep_for(seconds)

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        self._on_retry()
        # before_sleep: tenacity has set both the failed outcome and the next action.
        error = state.outcome.exception() if state.outcome is not None else None
        retry_in = round(state.next_action.sleep, 2) if state.next_action is not None else None
        log.warning(
            "database unavailable, retrying the batch: %s", error,
            extra={"attempt": state.attempt_number, "retry_in_s": retry_in},
        )


def _nothing() -> None:
    pass


def _first_of_each_key(rows: list[Row], positions: Sequence[int]) -> tuple[list[int], list[int]]:
    """``positions`` split into (the first of each primary key, later repeats), order kept."""
    seen = set()
    first, repeats = [], []
    for i in positions:
        key = rows[i].key
        if key in seen:
            repeats.append(i)
        else:
            seen.add(key)
            first.append(i)
    return first, repeats
