"""The write watchdog acts on the connection it watches, never on a socket that later took its number
(issue 9 review, item 11)."""

from __future__ import annotations

import socket
import time

from writer.watchdog import Watchdog


def test_a_socket_reusing_the_watched_number_is_left_alone():
    watchdog = Watchdog()
    watched, watched_peer = socket.socketpair()
    number = watched.fileno()
    watchdog.arm(number, 0.2)
    watched.close()  # the connection closes while armed (e.g. the writer reconnects)...
    reused, reused_peer = socket.socketpair()  # ...and the lowest free number goes to a new socket
    try:
        assert number in (reused.fileno(), reused_peer.fileno())
        time.sleep(0.6)  # the deadline passes
        assert watchdog.fired
        reused_peer.sendall(b"x")
        reused.sendall(b"y")
        assert reused.recv(1) == b"x" and reused_peer.recv(1) == b"y"  # both ends still open
        assert watched_peer.recv(1) == b""  # the watched connection was the one shut down
    finally:
        watchdog.stop()
        for s in (reused, reused_peer, watched_peer):
            s.close()


def test_disarm_closes_the_duplicate():
    watchdog = Watchdog()
    watched, peer = socket.socketpair()
    try:
        watchdog.arm(watched.fileno(), 10)
        watched.close()
        watchdog.disarm()  # the last descriptor of the connection: the peer sees it end
        assert peer.recv(1) == b""
        assert not watchdog.fired
    finally:
        watchdog.stop()
        peer.close()
