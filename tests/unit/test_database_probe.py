"""The database probe: how it reads a refused connection, its own bounds, and a probe thread that fails or hangs.

The message texts below are libpq's, PostgreSQL's and pgbouncer's own words
(taken from their sources and manuals), written out here, not produced by
the code under test.
"""

from __future__ import annotations

import threading

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.harness.service import wait_until
from writer import database_probe
from writer.database_probe import (
    CREDENTIALS_REJECTED,
    DATABASE_MISSING,
    OK,
    PROBE_FAILED,
    REFUSED,
    UNREACHABLE,
    DatabaseProbe,
    classify_connect_error,
    probe_conninfo,
)

MESSAGES = [
    ('connection failed: FATAL:  password authentication failed for user "writer"', CREDENTIALS_REJECTED),
    ('connection failed: FATAL:  role "writer" does not exist', CREDENTIALS_REJECTED),
    ('connection failed: FATAL:  role "writer" is not permitted to log in', CREDENTIALS_REJECTED),
    ('connection failed: FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "writer", database "db", no '
     'encryption', CREDENTIALS_REJECTED),
    ("connection failed: fe_sendauth: no password supplied", CREDENTIALS_REJECTED),
    ("connection failed: FATAL:  server login has been failing, try again later (server_login_retry)",
     CREDENTIALS_REJECTED),
    ('connection failed: FATAL:  too many connections for role "writer"', REFUSED),
    ("connection failed: FATAL:  sorry, too many clients already", REFUSED),
    ("connection failed: FATAL:  the database system is starting up", REFUSED),
    ('connection failed: FATAL:  database "db" is not currently accepting connections', REFUSED),
    ('connection failed: FATAL:  database "nosuch" does not exist', DATABASE_MISSING),
    ('connection failed: connection to server at "10.0.0.1", port 5432 failed: Connection refused\n'
     "\tIs the server running on that host and accepting TCP/IP connections?", UNREACHABLE),
    ('connection failed: connection to server at "10.0.0.1", port 5432 failed: timeout expired', UNREACHABLE),
    ('connection failed: could not translate host name "db.example" to address: Name or service not known',
     UNREACHABLE),
]


@pytest.mark.parametrize(("text", "kind"), MESSAGES)
def test_connect_errors_are_classified_by_their_text(text, kind):
    assert classify_connect_error(text) == kind


def test_probe_connection_has_short_timeouts_and_keeps_other_options():
    params = conninfo_to_dict(probe_conninfo("host=db port=5432 dbname=x user=u connect_timeout=30 "
                                             "options='-c search_path=writer'"))
    assert params["connect_timeout"] == "5"
    assert params["options"] == "-c search_path=writer -c statement_timeout=5000"
    assert conninfo_to_dict(probe_conninfo("host=db connect_timeout=2"))["connect_timeout"] == "2"
    assert conninfo_to_dict(probe_conninfo("host=db"))["connect_timeout"] == "5"


def test_a_failing_check_is_reported_and_the_probe_thread_goes_on(monkeypatch):
    calls, proceed = [], threading.Event()

    def failing_once(_conninfo):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        proceed.wait()  # the second check waits until the failure has been seen
        return OK, ""

    monkeypatch.setattr(database_probe, "probe_once", failing_once)
    probe = DatabaseProbe("host=unused", "nowhere", lambda: None, interval=0.05)
    probe.start()
    try:
        wait_until(lambda: probe.view().state == PROBE_FAILED, 30, interval=0.01, message="the failure reported")
        assert probe.view().detail == "RuntimeError: boom"
        proceed.set()
        wait_until(lambda: probe.view().state == OK, 30, interval=0.01, message="the next check, in the same thread")
    finally:
        proceed.set()
        probe.stop()


def test_stop_does_not_wait_for_a_probe_in_progress(monkeypatch):
    entered, release = threading.Event(), threading.Event()

    def hanging(_conninfo):
        entered.set()
        release.wait()
        return OK, ""

    monkeypatch.setattr(database_probe, "probe_once", hanging)
    probe = DatabaseProbe("host=unused", "nowhere", lambda: None)
    probe.start()
    try:
        assert entered.wait(30)
        stopper = threading.Thread(target=probe.stop)
        stopper.start()
        stopper.join(10)  # the old stop joined the probe for up to 15 s
        assert not stopper.is_alive()
        assert probe._thread.is_alive()  # still in its check: stop did not wait for it
    finally:
        release.set()
    probe._thread.join(30)
    assert not probe._thread.is_alive()  # and it ends after that check
