"""The supervisor's HTTP server: GET /metrics, GET /health and GET /ready, nothing else.

One thread runs an asyncio loop for every connection, so an idle or
half-open connection costs a coroutine, not a thread: a client that never
finishes its request head is dropped after ``HEAD_TIMEOUT_S``. At
``MAX_CONNECTIONS`` open connections, a new one closes the oldest that is
still sending its request head (or, when none is, the oldest of all), so
slow clients (slowloris) cannot lock a probe out. Each response closes its
connection (HTTP/1.0 style), which is all Prometheus and Kubernetes probes
need.

The checks run off the event loop, /metrics on a thread of its own and
/health and /ready on another pool, so a slow scrape (many metric files, a
busy disk) never delays a probe. A request head may end its lines with CRLF
or a bare LF (RFC 9112 allows both).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import orjson

log = logging.getLogger(__name__)

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HEAD_TIMEOUT_S = 3.0  # to receive the whole request head (a probe sends it in one packet)
SEND_TIMEOUT_S = 10.0  # for the client to take the whole answer
MAX_CONNECTIONS = 256
MAX_REQUEST_HEAD = 16384
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"}

Check = Callable[[], tuple[bool, dict[str, Any]]]


class HttpServer:
    """Serves in a daemon thread; ``shutdown`` and ``server_close`` stop it (as http.server's do)."""

    def __init__(self, host: str, port: int, metrics: Callable[[], bytes], health: Check, ready: Check) -> None:
        self._metrics = metrics
        self._checks = {"/health": health, "/ready": ready}
        # Open connections, oldest first, each with whether its request head is still awaited.
        self._connections: dict[asyncio.StreamWriter, bool] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # A slow /metrics queues behind its own thread only; probes have theirs.
        self._metrics_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="http-metrics")
        self._checks_pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="http-checks")
        self._loop = asyncio.new_event_loop()
        try:
            # Binding here, in the caller's thread, so that an address in use raises OSError to it.
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, host, port, limit=MAX_REQUEST_HEAD, backlog=128)
            )
        except BaseException:
            self._loop.close()
            self._shutdown_pools()
            raise
        self.server_address = self._server.sockets[0].getsockname()[:2]
        self._thread = threading.Thread(target=self._loop.run_forever, name="http", daemon=True)
        self._thread.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= MAX_CONNECTIONS:
            self._evict_one()
        task = asyncio.current_task()
        if task is not None:  # always, for a connection callback; the check is for the type checker
            self._tasks.add(task)
        self._connections[writer] = True
        try:
            try:
                request_line = await asyncio.wait_for(_read_head(reader), HEAD_TIMEOUT_S)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, ConnectionError):
                return
            if writer in self._connections:
                self._connections[writer] = False
            try:
                status, content_type, body = await self._respond(request_line)
            except Exception:  # noqa: BLE001 - one failed answer must not take the server down
                log.exception("http: answering %r failed", request_line[:100])
                status, content_type, body = HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", b"internal error\n"
            writer.write(
                f"HTTP/1.0 {status.value} {status.phrase}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await asyncio.wait_for(writer.drain(), SEND_TIMEOUT_S)
        except (TimeoutError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # shutdown: ended here, so asyncio's stream callback has no cancelled task to report
        finally:
            self._connections.pop(writer, None)
            self._tasks.discard(task)
            writer.close()

    def _evict_one(self) -> None:
        """Close the oldest connection still sending its request head, or else the oldest of all."""
        victim = next((w for w, reading_head in self._connections.items() if reading_head), None)
        if victim is None:
            victim = next(iter(self._connections))
        del self._connections[victim]  # now, so the count is right before its task runs again
        victim.transport.abort()

    async def _respond(self, request_line: bytes) -> tuple[HTTPStatus, str, bytes]:
        try:
            method, target, _version = request_line.decode("ascii").split(" ")
        except ValueError:
            return HTTPStatus.BAD_REQUEST, "text/plain", b"bad request\n"
        if method not in KNOWN_METHODS:
            return HTTPStatus.NOT_IMPLEMENTED, "text/plain", b"not implemented\n"
        path = target.split("?", 1)[0]
        if path != "/metrics" and path not in self._checks and method == "GET":
            return HTTPStatus.NOT_FOUND, "text/plain", b"not found: the server serves /metrics, /health and /ready\n"
        if method != "GET":
            return HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"method not allowed\n"
        log.debug("http: GET %s", path)
        if path == "/metrics":
            return HTTPStatus.OK, METRICS_CONTENT_TYPE, await self._loop.run_in_executor(self._metrics_pool,
                                                                                        self._metrics)
        ok, body = await self._loop.run_in_executor(self._checks_pool, self._checks[path])
        return (HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE), "application/json", orjson.dumps(body)

    async def _close_all(self) -> None:
        self._server.close()
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        for writer in list(self._connections):
            writer.transport.abort()
        # Each connection's cleanup runs before the loop stops (a check still running in a pool thread is
        # not waited for: its answer is dropped).
        await asyncio.gather(*pending, return_exceptions=True)
        self._loop.stop()

    def shutdown(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close_all(), self._loop)
            self._thread.join(10)
        self._shutdown_pools()

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def _shutdown_pools(self) -> None:
        for pool in (self._metrics_pool, self._checks_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    def server_close(self) -> None:
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """The request line of a request head whose lines end in CRLF or LF; reads up to the empty line.
    ValueError when the head is longer than ``MAX_REQUEST_HEAD``."""
    request_line = None
    size = 0
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise asyncio.IncompleteReadError(line, None)
        size += len(line)
        if size > MAX_REQUEST_HEAD:
            raise ValueError("request head too long")
        line = line.rstrip(b"\r\n")
        if request_line is None:
            request_line = line
        elif not line:
            return request_line


def start(host: str, port: int, metrics: Callable[[], bytes], health: Check, ready: Check) -> HttpServer:
    """Bind and serve in a daemon thread; raises OSError when the address cannot be bound."""
    return HttpServer(host, port, metrics, health, ready)
