"""The metrics/health HTTP server alone (in this process): idle and half-open connections cost no thread
and do not keep /health from answering."""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import threading
import time

import pytest

from writer import http_server

HALF_OPEN = 200


@pytest.fixture
def server():
    state = {"ok": True}
    served = http_server.start(
        "127.0.0.1", 0, lambda: b"metric 1\n",
        lambda: (state["ok"], {"status": "ok" if state["ok"] else "unavailable"}),
        lambda: (False, {"status": "not ready"}),
    )
    served.state = state
    yield served
    served.shutdown()
    served.server_close()


def slow_metrics_server():
    """A server whose /metrics answers only once ``release`` is set; ``scraping`` is set when one started."""
    scraping, release = threading.Event(), threading.Event()

    def slow_metrics():
        scraping.set()
        release.wait(60)
        return b"m\n"

    served = http_server.start("127.0.0.1", 0, slow_metrics, lambda: (True, {"status": "ok"}),
                               lambda: (True, {"status": "ok"}))
    return served, scraping, release


def get(server, path: str, method: str = "GET", timeout: float = 10) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=timeout)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def half_open(server, count: int) -> list[socket.socket]:
    """Connections that send the start of a request line and then nothing."""
    sockets = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10)
        client.sendall(b"GET /hea")
        sockets.append(client)
    return sockets


def test_routes(server):
    assert get(server, "/metrics") == (200, b"metric 1\n")
    assert get(server, "/health") == (200, b'{"status":"ok"}')
    assert get(server, "/ready") == (503, b'{"status":"not ready"}')
    server.state["ok"] = False
    assert get(server, "/health")[0] == 503
    assert get(server, "/health?verbose=1")[0] == 503
    assert get(server, "/nothing")[0] == 404
    assert get(server, "/metrics", "POST")[0] == 405
    assert get(server, "/ready", "HEAD")[0] == 405


def test_half_open_connections_take_no_thread_and_health_still_answers(server):
    threads_before = threading.active_count()
    sockets = half_open(server, HALF_OPEN)
    try:
        wait_until_true(lambda: server.open_connections == HALF_OPEN)  # the server accepted them all
        # One thread per connection would be HALF_OPEN more threads.
        assert threading.active_count() - threads_before <= 2, threading.active_count() - threads_before
        assert get(server, "/health", timeout=5) == (200, b'{"status":"ok"}')
    finally:
        for client in sockets:
            client.close()


def test_idle_connections_are_closed_by_the_server(server, monkeypatch):
    monkeypatch.setattr(http_server, "HEAD_TIMEOUT_S", 1.0)
    sockets = half_open(server, 5)
    try:
        for client in sockets:
            client.settimeout(10)
            # The server gives up on a request that never completes: EOF (or reset), not a hang.
            with contextlib.suppress(ConnectionResetError):
                assert client.recv(100) == b""
    finally:
        for client in sockets:
            client.close()


def test_at_the_bound_a_new_connection_closes_the_oldest_still_sending_its_head(server, monkeypatch):
    monkeypatch.setattr(http_server, "MAX_CONNECTIONS", 10)
    monkeypatch.setattr(http_server, "HEAD_TIMEOUT_S", 600.0)  # only the bound closes a connection here
    sockets = half_open(server, 10)
    try:
        wait_until_true(lambda: server.open_connections == 10)
        assert get(server, "/health") == (200, b'{"status":"ok"}')
        with contextlib.suppress(ConnectionResetError):
            assert sockets[0].recv(100) == b""  # closed by the server
        readable, _, _ = select.select(sockets[1:], [], [], 0)
        assert readable == []  # the others still wait for their head
    finally:
        for client in sockets:
            client.close()


def test_at_the_bound_with_every_head_received_a_new_connection_closes_the_oldest():
    served, scraping, release = slow_metrics_server()
    scrapes = []
    try:
        for _ in range(2):
            client = socket.create_connection(("127.0.0.1", served.server_address[1]), timeout=10)
            client.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            scrapes.append(client)
        assert scraping.wait(30)
        wait_until_true(lambda: served.open_connections == 2)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(http_server, "MAX_CONNECTIONS", 2)
            assert get(served, "/health") == (200, b'{"status":"ok"}')
        with contextlib.suppress(ConnectionResetError):
            assert scrapes[0].recv(100) == b""
    finally:
        release.set()
        for client in scrapes:
            client.close()
        served.shutdown()
        served.server_close()


def test_slow_connections_beyond_the_bound_cannot_lock_health_out(server, monkeypatch):
    # Slowloris: more connections than the bound, each trickling its request head; every one is accepted, the
    # bound then full of them (however long that takes: the head timeout is not what saves /health here).
    monkeypatch.setattr(http_server, "HEAD_TIMEOUT_S", 600.0)
    slow = half_open(server, http_server.MAX_CONNECTIONS + 44)
    try:
        wait_until_true(lambda: server.open_connections == http_server.MAX_CONNECTIONS)
        for client in slow[-10:]:
            client.sendall(b"l")
        assert get(server, "/health", timeout=5) == (200, b'{"status":"ok"}')
        assert server.open_connections <= http_server.MAX_CONNECTIONS
    finally:
        for client in slow:
            client.close()


def test_a_failing_check_answers_500_and_the_server_goes_on():
    def broken():
        raise RuntimeError("broken check")

    served = http_server.start("127.0.0.1", 0, lambda: b"m\n", broken, broken)
    try:
        assert get(served, "/health")[0] == 500
        assert get(served, "/metrics") == (200, b"m\n")
    finally:
        served.shutdown()
        served.server_close()


def test_request_lines_ending_in_a_bare_lf_are_answered(server):
    client = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10)
    try:
        client.sendall(b"GET /health HTTP/1.0\nHost: x\n\n")
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
    finally:
        client.close()
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n") and answer.endswith(b'{"status":"ok"}')


def test_a_slow_metrics_scrape_does_not_hold_up_health_and_shutdown_ends_every_connection():
    served, scraping, release = slow_metrics_server()
    def scrape_until_shutdown():
        # The shutdown below ends this connection without an answer.
        with contextlib.suppress(OSError, http.client.HTTPException):
            get(served, "/metrics", timeout=60)

    scrape = threading.Thread(target=scrape_until_shutdown, daemon=True)
    try:
        scrape.start()
        assert scraping.wait(30)
        # The scrape is still running: were it run on the event loop, this request could not be answered.
        assert get(served, "/health", timeout=10) == (200, b'{"status":"ok"}')
        clients = half_open(served, 3)  # kept: a collected socket would close
        wait_until_true(lambda: served.open_connections == 4)
        served.shutdown()
        assert served.open_connections == 0  # each connection's task was cancelled and awaited
        for client in clients:
            client.close()
    finally:
        release.set()
        served.shutdown()
        served.server_close()
    scrape.join(30)


def wait_until_true(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)
