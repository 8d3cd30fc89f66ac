"""The supervisor's database probe for readiness: can we connect, and may we write into new_reports?

Each probe opens a fresh connection (a kept one would hide a password
rotation until it drops), checks that the session can write into
``new_reports`` and closes it. Credentials that PostgreSQL rejects are not
a reason to stop: the next rotation step may fix them, so the workers keep
retrying; the probe makes it visible instead (ERROR log at most once a
minute, ``database_credentials_rejected_total``, ``/ready`` 503).

psycopg 3 gives errors raised while connecting no SQLSTATE, so their kind is
read from libpq's message. The server's words for these cases are stable
(and English unless the server's lc_messages says otherwise; then such an
error counts as ``unreachable``, which readiness treats the same).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import psycopg

from writer.health import DatabaseView

log = logging.getLogger("writer.supervisor")

OK = "ok"
UNKNOWN = "not checked yet"
UNREACHABLE = "unreachable"
CREDENTIALS_REJECTED = "credentials rejected"
DATABASE_MISSING = "database does not exist"
NOT_WRITABLE = "not writable"

PROBE_INTERVAL_S = 5.0
ERROR_LOG_INTERVAL_S = 60.0

_CREDENTIAL_WORDS = (
    "password authentication failed", "authentication failed for user", "is not permitted to log in",
    "no pg_hba.conf entry", "pg_hba.conf rejects connection", "password is required", "no password supplied",
    "password has expired", "role \"",  # role "x" does not exist
)


def classify_connect_error(error: psycopg.Error) -> str:
    """The kind of a failed connection attempt: credentials rejected, missing database or unreachable."""
    text = str(error)
    if "FATAL:" in text:  # the server answered and refused the session
        if "database \"" in text and "does not exist" in text:
            return DATABASE_MISSING
        if any(words in text for words in _CREDENTIAL_WORDS):
            return CREDENTIALS_REJECTED
    return UNREACHABLE


_CHECK = (
    "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on',"
    " coalesce(has_table_privilege(to_regclass('new_reports'), 'INSERT'), false)"
)


def probe_once(conninfo: str) -> tuple[str, str]:
    """(state, detail) of one probe."""
    from writer.database import safe_error_text

    try:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            read_only, may_insert = connection.execute(_CHECK).fetchone()
    except psycopg.Error as error:
        if isinstance(error, psycopg.OperationalError) and getattr(error, "sqlstate", None) is None:
            return classify_connect_error(error), safe_error_text(error)
        return UNREACHABLE, safe_error_text(error)
    if read_only:
        return NOT_WRITABLE, "the server is read-only (a standby, or read-only sessions)"
    if not may_insert:
        return NOT_WRITABLE, "table new_reports is missing or not writable by this user"
    return OK, ""


class DatabaseProbe:
    """Probes every ``interval`` seconds in a daemon thread; ``view()`` is safe from any thread."""

    def __init__(self, conninfo: str, where: str, on_rejected: Callable[[], None],
                 interval: float = PROBE_INTERVAL_S) -> None:
        self._conninfo = conninfo
        self._where = where
        self._on_rejected = on_rejected
        self._interval = interval
        self._view = DatabaseView(UNKNOWN, "", 0.0)
        self._last_error_log = float("-inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="database-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def view(self) -> DatabaseView:
        return self._view  # replaced whole, never mutated: one read is consistent

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self._interval)

    def check(self) -> None:
        state, detail = probe_once(self._conninfo)
        previous = self._view.state
        self._view = DatabaseView(state, detail, time.time())
        if state == CREDENTIALS_REJECTED:
            self._on_rejected()
            if time.monotonic() - self._last_error_log >= ERROR_LOG_INTERVAL_S:
                self._last_error_log = time.monotonic()
                log.error("PostgreSQL at %s rejects our credentials: %s; retrying (not ready until accepted)",
                          self._where, detail)
        elif state != previous and state != OK:
            log.warning("database not ready (%s): %s", state, detail)
        elif state == OK and previous not in (OK, UNKNOWN):
            self._last_error_log = float("-inf")
            log.info("database ready again")
