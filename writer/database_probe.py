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
from collections.abc import Callable

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from writer.health import DatabaseView

log = logging.getLogger("writer.supervisor")

# The probe's states: reason codes, what /ready shows (its detail, which may name the server, only goes to the log).
OK = "ok"
UNKNOWN = "not_checked"
UNREACHABLE = "unreachable"
CREDENTIALS_REJECTED = "credentials_rejected"
DATABASE_MISSING = "database_missing"
NOT_WRITABLE = "not_writable"
REFUSED = "session_refused"  # the server answered and refused, not for our credentials (too many connections...)
PROBE_FAILED = "probe_failed"

PROBE_INTERVAL_S = 15.0
ERROR_LOG_INTERVAL_S = 60.0
# The probe's own bounds, short whatever [storage] says: a probe stuck in a connect or a query would
# hold readiness on its last answer, and a stop would wait for it.
PROBE_CONNECT_TIMEOUT_S = 5
PROBE_STATEMENT_TIMEOUT_MS = 5000
# A probe result older than this many intervals no longer counts (the probe thread died or hangs).
PROBE_STALE_INTERVALS = 3

# Read anywhere in the message: libpq's own "fe_sendauth: no password supplied" carries no "FATAL:".
_CREDENTIAL_WORDS = (
    "password authentication failed", "authentication failed for user", "is not permitted to log in",
    "no pg_hba.conf entry", "pg_hba.conf rejects connection", "password is required", "no password supplied",
    "password has expired",
    "server login has been failing",  # pgbouncer: its logins to the server are refused (server_login_retry)
)


def classify_connect_error(error: psycopg.Error | str) -> str:
    """The kind of a failed connection attempt: credentials rejected, missing database, refused or
    unreachable."""
    text = str(error)
    if any(words in text for words in _CREDENTIAL_WORDS):
        return CREDENTIALS_REJECTED
    if "FATAL:" in text:  # the server answered and refused the session
        if "role \"" in text and "does not exist" in text:
            return CREDENTIALS_REJECTED
        if "database \"" in text and "does not exist" in text:
            return DATABASE_MISSING
        return REFUSED
    return UNREACHABLE


def probe_conninfo(conninfo: str) -> str:
    """``conninfo`` with the probe's short connect and statement timeouts (other options kept)."""
    params = conninfo_to_dict(conninfo)
    configured = int(params.get("connect_timeout") or 0)
    params["connect_timeout"] = min(configured, PROBE_CONNECT_TIMEOUT_S) if configured > 0 else PROBE_CONNECT_TIMEOUT_S
    params["options"] = f"{params.get('options', '')} -c statement_timeout={PROBE_STATEMENT_TIMEOUT_MS}".strip()
    return make_conninfo("", **params)


_CHECK = (
    "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on',"
    " coalesce(has_table_privilege(to_regclass('new_reports'), 'INSERT'), false),"
    " has_database_privilege(current_database(), 'TEMPORARY')"  # each batch stages its rows in a temporary table
)


def probe_once(conninfo: str) -> tuple[str, str]:
    """(state, detail) of one probe."""
    from writer.database import safe_error_text

    try:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            row = connection.execute(_CHECK).fetchone()
            assert row is not None  # a SELECT without FROM returns exactly one row
            read_only, may_insert, may_stage = row
    except psycopg.Error as error:
        if isinstance(error, psycopg.OperationalError) and getattr(error, "sqlstate", None) is None:
            return classify_connect_error(error), safe_error_text(error)
        return UNREACHABLE, safe_error_text(error)
    if read_only:
        return NOT_WRITABLE, "the server is read-only (a standby, or read-only sessions)"
    if not may_insert:
        return NOT_WRITABLE, "table new_reports is missing or not writable by this user"
    if not may_stage:
        return NOT_WRITABLE, "this user may not create temporary tables in this database (TEMPORARY privilege)"
    return OK, ""


class DatabaseProbe:
    """Probes every ``interval`` seconds in a daemon thread; ``view()`` is safe from any thread."""

    def __init__(self, conninfo: str, where: str, on_rejected: Callable[[], None],
                 interval: float = PROBE_INTERVAL_S) -> None:
        self._conninfo = probe_conninfo(conninfo)
        self._where = where
        self._on_rejected = on_rejected
        self._interval = interval
        self._stale_after = PROBE_STALE_INTERVALS * interval
        self._view = DatabaseView(UNKNOWN, "", 0.0, self._stale_after)
        self._last_error_log = float("-inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="database-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop, without waiting: a stop must not wait for a probe in progress (a daemon
        thread, bounded by the probe's own timeouts)."""
        self._stop.set()

    def view(self) -> DatabaseView:
        return self._view  # replaced whole, never mutated: one read is consistent

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception as error:  # noqa: BLE001 - a dead probe thread would leave readiness on its last answer
                self._view = DatabaseView(PROBE_FAILED, f"{type(error).__name__}: {error}", time.time(),
                                          self._stale_after)
                log.warning("database probe failed: %s", error, exc_info=True)
            self._stop.wait(self._interval)

    def check(self) -> None:
        state, detail = probe_once(self._conninfo)
        previous = self._view.state
        self._view = DatabaseView(state, detail, time.time(), self._stale_after)
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
