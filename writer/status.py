"""Worker health, shared with the supervisor through one array of doubles per worker slot.

Each worker writes only its own slot; the supervisor reads all of them for
the health endpoint. Single double writes are atomic enough for that.
"""

from __future__ import annotations

import contextlib
import time

FIELDS = ("pid", "last_poll", "broker_up", "assigned", "database_ok", "kafka_wait_since", "database_wait_since")
WIDTH = len(FIELDS)
PID, LAST_POLL, BROKER_UP, ASSIGNED, DATABASE_OK, KAFKA_WAIT_SINCE, DATABASE_WAIT_SINCE = range(WIDTH)


def new_status_array(context, slots: int):
    return context.Array("d", slots * WIDTH, lock=False)


class WorkerStatus:
    def __init__(self, array, slot: int) -> None:
        self._array = array
        self._base = slot * WIDTH
        import os

        self._set(PID, os.getpid())
        self._set(LAST_POLL, time.time())
        self._set(BROKER_UP, 0)
        self._set(ASSIGNED, 0)
        self._set(DATABASE_OK, 1)
        self._set(KAFKA_WAIT_SINCE, 0)
        self._set(DATABASE_WAIT_SINCE, 0)

    def _set(self, field: int, value: float) -> None:
        self._array[self._base + field] = value

    def polled(self) -> None:
        self._set(LAST_POLL, time.time())

    def broker_up(self, up: bool) -> None:
        self._set(BROKER_UP, 1 if up else 0)

    def assigned(self, count: int) -> None:
        self._set(ASSIGNED, count)

    def database_ok(self, ok: bool) -> None:
        self._set(DATABASE_OK, 1 if ok else 0)

    @contextlib.contextmanager
    def waiting_for_kafka(self):
        """Around a blocking call that only the broker can end (a synchronous commit, a flush): the worker is
        not polling, but not hung either; librdkafka's request timeouts bound the wait."""
        self._set(KAFKA_WAIT_SINCE, time.time())
        try:
            yield
        finally:
            self._set(KAFKA_WAIT_SINCE, 0)

    @contextlib.contextmanager
    def waiting_for_database(self):
        """Around a database call (connect, write, commit): a lock wait, a COMMIT held by a synchronous
        standby or a slow server is no hang; the configured timeouts bound it (``health.limits``)."""
        self._set(DATABASE_WAIT_SINCE, time.time())
        try:
            yield
        finally:
            self._set(DATABASE_WAIT_SINCE, 0)

    def stopped(self) -> None:
        self._set(BROKER_UP, 0)
        self._set(ASSIGNED, 0)


def read_slot(array, slot: int) -> dict[str, float]:
    base = slot * WIDTH
    return {name: array[base + i] for i, name in enumerate(FIELDS)}
