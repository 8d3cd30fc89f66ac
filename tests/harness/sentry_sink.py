"""A Sentry endpoint on loopback: records every envelope the SDK sends, decompressed."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SentrySink:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding == "br":
                    import brotli

                    body = brotli.decompress(body)
                sink.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def dsn(self) -> str:
        return f"http://sinkpublickey@127.0.0.1:{self.server.server_address[1]}/42"

    def events(self) -> list[dict]:
        """The payloads of the envelope items of type "event" (errors and messages)."""
        found = []
        for body in self.bodies:
            lines = body.split(b"\n")
            for header, payload in zip(lines[1:], lines[2:], strict=False):
                try:
                    item = json.loads(header)
                except ValueError:
                    continue
                if isinstance(item, dict) and item.get("type") == "event":
                    found.append(json.loads(payload))
        return found

    def everything(self) -> str:
        return b"\n".join(self.bodies).decode("utf-8", "replace")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
