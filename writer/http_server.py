"""The supervisor's HTTP server: GET /metrics, GET /health and GET /ready, nothing else.

One thread runs an asyncio loop for every connection, so an idle or
half-open connection costs a coroutine, not a thread: a client that never
finishes its request is dropped after ``REQUEST_TIMEOUT_S``, and beyond
``MAX_CONNECTIONS`` open connections a new one is closed at once. Each
response closes its connection (HTTP/1.0 style), which is all Prometheus and
Kubernetes probes need.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from http import HTTPStatus
from typing import Callable

import orjson

log = logging.getLogger(__name__)

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_TIMEOUT_S = 10.0  # to receive the whole request head
MAX_CONNECTIONS = 256
MAX_REQUEST_HEAD = 16384
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"}

Check = Callable[[], tuple[bool, dict]]


class HttpServer:
    """Serves in a daemon thread; ``shutdown`` and ``server_close`` stop it (as http.server's do)."""

    def __init__(self, host: str, port: int, metrics: Callable[[], bytes], health: Check, ready: Check) -> None:
        self._routes = {"/metrics": metrics, "/health": health, "/ready": ready}
        self._connections: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        try:
            # Binding here, in the caller's thread, so that an address in use raises OSError to it.
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, host, port, limit=MAX_REQUEST_HEAD, backlog=128)
            )
        except BaseException:
            self._loop.close()
            raise
        self.server_address = self._server.sockets[0].getsockname()[:2]
        self._thread = threading.Thread(target=self._loop.run_forever, name="http", daemon=True)
        self._thread.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self._connections.add(writer)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            try:
                status, content_type, body = self._respond(head)
            except Exception:  # noqa: BLE001 - one failed answer must not take the server down
                log.exception("http: answering %r failed", head[:100])
                status, content_type, body = HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", b"internal error\n"
            writer.write(
                f"HTTP/1.0 {status.value} {status.phrase}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    def _respond(self, head: bytes) -> tuple[HTTPStatus, str, bytes]:
        try:
            method, target, _version = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except ValueError:
            return HTTPStatus.BAD_REQUEST, "text/plain", b"bad request\n"
        if method not in KNOWN_METHODS:
            return HTTPStatus.NOT_IMPLEMENTED, "text/plain", b"not implemented\n"
        path = target.split("?", 1)[0]
        if path not in self._routes and method == "GET":
            return HTTPStatus.NOT_FOUND, "text/plain", b"not found: the server serves /metrics, /health and /ready\n"
        if method != "GET":
            return HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"method not allowed\n"
        log.debug("http: GET %s", path)
        if path == "/metrics":
            return HTTPStatus.OK, METRICS_CONTENT_TYPE, self._routes[path]()
        ok, body = self._routes[path]()
        return (HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE), "application/json", orjson.dumps(body)

    async def _close_all(self) -> None:
        self._server.close()
        for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            task.cancel()
        for writer in list(self._connections):
            writer.transport.abort()
        await asyncio.sleep(0)  # let the cancelled connections finish
        self._loop.stop()

    def shutdown(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close_all(), self._loop)
            self._thread.join(10)

    def server_close(self) -> None:
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()


def start(host: str, port: int, metrics: Callable[[], bytes], health: Check, ready: Check) -> HttpServer:
    """Bind and serve in a daemon thread; raises OSError when the address cannot be bound."""
    return HttpServer(host, port, metrics, health, ready)
