"""The write stage in a thread of its own, one batch at a time, so the next batch is polled and parsed meanwhile.

psycopg releases the GIL while it waits for the server, so the consumer's
thread runs while PostgreSQL writes. Queue depth 1: at most one write is in
flight; ``submit`` is called only when the previous one is ``done``.

The thread owns the database connection (``storage.BatchWriter``) from its
first write on. It is a daemon: a write that outlives the stop deadline (the
watchdog should have cut it) does not keep the process from exiting; nothing
of such a batch is committed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Batch = TypeVar("Batch")
Outcome = TypeVar("Outcome")


class InFlight(Generic[Batch, Outcome]):
    """One batch handed to the write thread; ``done`` once written or failed."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.in_trouble = False  # set by the write thread: the write is being retried or split
        # Set by the consumer's thread when it takes the batch's steps after the write (at most once: a revocation
        # may do it while the main loop also waits for the same write).
        self.finished = False
        self._done = threading.Event()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the write to end; whether it has."""
        return self._done.wait(seconds)

    def result(self) -> Outcome:
        """The write's outcome, or its error raised (call once ``done``)."""
        if self.error is not None:
            raise self.error
        assert self.outcome is not None, "result() before the write ended"
        return self.outcome

    def complete(self, outcome: Outcome | None, error: BaseException | None) -> None:
        self.outcome, self.error = outcome, error
        self._done.set()


class WriteThread(Generic[Batch, Outcome]):
    def __init__(self, write: Callable[[InFlight[Batch, Outcome]], Outcome], name: str = "batch-writer") -> None:
        self._write = write
        self._jobs: queue.SimpleQueue[InFlight[Batch, Outcome] | None] = queue.SimpleQueue()
        # Started by the first ``submit``: a worker that never writes (built by a test, or failing before its
        # first batch) leaves no thread behind.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def submit(self, batch: Batch) -> InFlight[Batch, Outcome]:
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()
        job: InFlight[Batch, Outcome] = InFlight(batch)
        self._jobs.put(job)
        return job

    def stop(self, seconds: float) -> bool:
        """End the thread after the write in flight, waiting up to ``seconds``; whether it ended."""
        if self._thread.ident is None:
            return True  # never started
        self._jobs.put(None)
        self._thread.join(max(0.0, seconds))
        return not self._thread.is_alive()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            outcome, error = None, None
            try:
                outcome = self._write(job)
            except BaseException as failure:  # noqa: BLE001 - handed to the consumer's thread, which decides
                error = failure
            job.complete(outcome, error)
