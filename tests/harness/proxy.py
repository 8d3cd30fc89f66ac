"""A TCP proxy that can stop forwarding: half-open connections on demand."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class StallingProxy:
    """Forwards 127.0.0.1:<port> to a target; ``stall()`` makes every connection open so far, and every
    new one until ``heal()``, silent for ever on the client's side: still open and acknowledged by the
    kernel, never forwarded or answered (a failover without RST, a load balancer that lost its backend).
    Connections made after ``heal()`` work."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._generation = 0  # connections of an older generation than _live_from are dead
        self._live_from = 0
        self._sockets: list[socket.socket] = []
        self._upstreams: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        self._generation += 1
        self._live_from = None  # nothing is forwarded until heal()
        # The server's side goes away (the old primary is gone, or noticed the client was): its sessions
        # end and release their locks. The client's side stays open and silent: that is the half-open
        # connection the client has to notice.
        for upstream in self._upstreams:
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_RDWR)

    def heal(self) -> None:
        self._generation += 1
        self._live_from = self._generation

    def _alive(self, generation: int) -> bool:
        return self._live_from is not None and generation >= self._live_from

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            generation = self._generation
            self._sockets.append(client)
            threading.Thread(target=self._serve, args=(client, generation), daemon=True).start()

    def _serve(self, client: socket.socket, generation: int) -> None:
        while self._live_from is None and not self._closed:
            time.sleep(0.05)
        if self._closed or not self._alive(generation):
            return self._hold(client)  # accepted while stalled: dead for ever
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self._sockets.append(upstream)
        self._upstreams.append(upstream)
        threading.Thread(target=self._pump, args=(upstream, client, generation), daemon=True).start()
        self._pump(client, upstream, generation)

    def _hold(self, client: socket.socket) -> None:
        """A connection accepted while stalled stays silent for ever (until close())."""
        while not self._closed:
            time.sleep(0.2)

    def _pump(self, source: socket.socket, destination: socket.socket, generation: int) -> None:
        source.settimeout(0.1)
        while not self._closed:
            if not self._alive(generation):
                time.sleep(0.05)  # stalled: read nothing, forward nothing, close nothing
                continue
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                destination.sendall(data)
            except OSError:
                break
        if self._alive(generation) or self._closed:
            for end in (source, destination):
                with contextlib.suppress(OSError):
                    end.close()

    def close(self) -> None:
        self._closed = True
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()
