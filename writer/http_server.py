"""The supervisor's HTTP server: GET /metrics and GET /health, nothing else."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import orjson

log = logging.getLogger(__name__)

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def start(host: str, port: int, metrics: Callable[[], bytes], health: Callable[[], tuple[bool, dict]]) -> ThreadingHTTPServer:
    """Bind and serve in a daemon thread; raises OSError when the address cannot be bound."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, METRICS_CONTENT_TYPE, metrics())
            elif path == "/health":
                ok, body = health()
                self._send(200 if ok else 503, "application/json", orjson.dumps(body))
            else:
                self._send(404, "text/plain", b"not found: the server serves /metrics and /health\n")

        def do_POST(self) -> None:  # noqa: N802
            self._send(405, "text/plain", b"method not allowed\n")

        do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = do_POST

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":  # a HEAD response has no body
                self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
            log.debug("http: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
