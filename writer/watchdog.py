"""A client-side deadline for database round trips.

``statement_timeout`` ends a statement the server is slow to run, and TCP
keepalives / ``tcp_user_timeout`` notice a peer that stopped acknowledging,
but none of them ends a wait on a connection whose other end still
acknowledges and never answers (a proxy or load balancer that lost its
backend, a frozen server). The watchdog does: when a write outlives its
deadline it shuts the connection's socket down, so the blocked libpq call
returns with a connection error (transient: the batch is retried on a fresh
connection). It is also how SIGTERM cuts a write short (``abort_by``).

The signal handler only assigns an attribute (no lock), so it cannot
deadlock with the main thread it interrupts; the lock only orders "write
finished" against "deadline passed".
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time

_CHECK_INTERVAL = 0.1  # how late a deadline may be acted on


class Watchdog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._deadline = math.inf
        self.abort_at = math.inf  # set by a signal handler: every write ends by then
        self.fired = False
        self._thread: threading.Thread | None = None

    def arm(self, fd: int, seconds: float) -> None:
        """Watch the socket ``fd`` until ``disarm``; shut it down after ``seconds`` (or at ``abort_at``).

        The watchdog keeps its own duplicate of ``fd``: if the connection closes meanwhile and its number
        goes to another socket, shutting the duplicate down still acts on the watched connection only."""
        try:
            duplicate: int | None = os.dup(fd)
        except OSError:
            duplicate = None  # already closed: the next call on it fails without waiting
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="write-watchdog", daemon=True)
                self._thread.start()
            self.fired = False
            self._deadline = time.monotonic() + seconds if seconds > 0 else math.inf
            self._release()
            self._fd = duplicate

    def disarm(self) -> None:
        """Stop watching; ``fired`` still tells whether the deadline passed."""
        with self._lock:
            self._release()

    def reset(self) -> None:
        with self._lock:
            self._release()
            self.fired = False

    def stop(self) -> None:
        """End the thread (the next ``arm`` starts another)."""
        with self._lock:
            self._release()
            self._thread = None

    def _release(self) -> None:
        """Close the duplicate descriptor (the lock held)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def abort_by(self, moment: float) -> None:
        """Every write, current or later, ends by ``moment`` (monotonic). Safe in a signal handler."""
        self.abort_at = min(self.abort_at, moment)

    def _run(self) -> None:
        while True:
            time.sleep(_CHECK_INTERVAL)
            with self._lock:
                if self._thread is not threading.current_thread():
                    return  # stopped, or replaced after a stop
                if self._fd is None or time.monotonic() < min(self._deadline, self.abort_at):
                    continue
                fd, self._fd = self._fd, None
                self.fired = True
                _shut_down(fd)


def _shut_down(fd: int) -> None:
    """Shut down the connection of ``fd`` (the watchdog's duplicate, closed here)."""
    try:
        duplicate = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        return
    try:
        duplicate.shutdown(socket.SHUT_RDWR)  # acts on the connection, not on this descriptor
    except OSError:
        pass
    finally:
        duplicate.close()
