"""The master's listener for remote signals: uwsgi-protocol requests from other nodes.

A request is the 4-byte uwsgi header ``6e LL LL NN``: modifier1 110, a
little-endian datasize and the signal number as modifier2. As uWSGI 2.0.31
does, the listener raises the signal, answers ``ff 00 00 01`` (``ff 00 00 00``
only when the master's queue is full) and closes the connection: a body after
the header and any further packet are ignored.

The master's poll loop drives it and no call blocks. A connection that sends
something else, closes early or stays silent is closed with one log line, and
the connections open at once are capped, so no peer can stall the master or
use up its descriptors: when the table is full, the oldest connection that
has not sent its request yet makes room for the new one, so idle peers cannot
starve valid requests.

Only hosts of the allowed networks (``--remote-allow``, and always loopback)
may raise signals: any other gets uWSGI's reject answer, ``ff 00 00 00``,
before it is read, and the log says so at most once a second.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Callable

from ..model.addresses import (
    LOOPBACK_NETWORKS,
    Network,
    RefusalLog,
    is_allowed,
    is_loopback,
    parse_listen_address,
)
from ..wire.remote import ACCEPTED, REJECTED, UWSGI_SIGNAL_MODIFIER

__all__ = [
    "ACCEPTED",
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
    "REJECTED",
    "RemoteListener",
    "address_of",
    "bind_listener",
    "is_loopback",
    "parse_listen_address",
]

log = logging.getLogger("uwsgisig")

HEADER_SIZE = 4
# A peer has this long from its connection to send its 4 bytes.
IDLE_TIMEOUT = 2.0
MAX_CONNECTIONS = 64
# Accepts per pass of the loop, so a flood of connections cannot starve the children.
ACCEPT_BATCH = 64
# How long to stop accepting after accept() failed for want of descriptors.
ACCEPT_PAUSE = 1.0
LISTEN_BACKLOG = 128
# One read takes the header and, usually, the whole of a body to ignore.
READ_SIZE = 65536
# Reads of leftover input before a close: a socket closed with unread input
# sends a reset instead of an end of stream.
DRAIN_READS = 4


def bind_listener(
    address: str,
    allow_any: bool = False,
    *,
    what: str = "remote signals",
    allow_with: str = "remote_signals_any=True (--remote-signals-any)",
) -> socket.socket:
    """A listening socket on ``address``; OSError naming it if it cannot be bound."""
    host, port = parse_listen_address(address, allow_any, what=what, allow_with=allow_with)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        raise OSError(
            exc.errno, f"cannot listen for {what} on {address}: {exc.strerror or exc}"
        ) from exc
    sock.setblocking(False)
    return sock


def address_of(sock: socket.socket) -> str:
    """The ``host:port`` a socket is bound to, as `Signal.send(remote=...)` takes it."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Connection:
    """One peer: the header bytes received so far, then the reply not yet sent."""

    __slots__ = ("deadline", "header", "peer", "refused", "reply", "sock")

    def __init__(
        self, sock: socket.socket, peer: str, deadline: float, refused: bool = False
    ) -> None:
        self.sock = sock
        self.peer = peer
        self.deadline = deadline
        self.refused = refused  # not an allowed sender: its request is answered "rejected"
        self.header = bytearray()
        self.reply: bytearray | None = None


class RemoteListener:
    """Accepts signal requests on a listening socket and answers them, never blocking.

    ``raise_signal(num)`` routes a signal and returns False when the master's
    queue is full. The owner's ``poll`` object watches the listener's sockets:
    the owner passes their events to `ready` and calls `expire` on every pass.
    """

    def __init__(
        self,
        sock: socket.socket,
        poll: select.poll,
        raise_signal: Callable[[int], bool],
        allowed: tuple[Network, ...] = LOOPBACK_NETWORKS,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.address = address_of(sock)
        self._poll = poll
        self._raise = raise_signal
        self._allowed = allowed
        self._refusals = RefusalLog("remote signal")
        # By fd, in the order of their deadlines (all get the same timeout).
        self.connections: dict[int, Connection] = {}
        self._paused_until: float | None = None

    def start(self) -> None:
        """Watch the listening socket."""
        self._poll.register(self.sock, select.POLLIN)
        log.info("listening for remote signals on %s", self.address)

    def fds(self) -> list[int]:
        """Every descriptor of the listener, for a forked child to close."""
        return [self.sock.fileno(), *self.connections]

    def owns(self, fd: int) -> bool:
        """Whether ``fd`` is the listening socket or one of its connections."""
        return fd == self.sock.fileno() or fd in self.connections

    def ready(self, fd: int, events: int) -> None:
        """Act on what ``poll`` reported for one of the listener's descriptors."""
        if fd == self.sock.fileno():
            self._accept()
            return
        conn = self.connections.get(fd)
        if conn is None:
            return
        if conn.reply is not None:
            if events & (select.POLLOUT | select.POLLHUP | select.POLLERR):
                self._send(conn)
        elif events & (select.POLLIN | select.POLLHUP | select.POLLERR):
            self._read(conn)

    def timeout(self) -> float | None:
        """Seconds until the next connection times out (or accepting resumes), None if none."""
        # The first connection is the oldest: its deadline is the nearest.
        deadlines = [next(iter(self.connections.values())).deadline] if self.connections else []
        if self._paused_until is not None:
            deadlines.append(self._paused_until)
        return max(min(deadlines) - time.monotonic(), 0.0) if deadlines else None

    def expire(self) -> None:
        """Close the connections past their deadline; resume accepting after a pause."""
        now = time.monotonic()
        if self._paused_until is not None and self._paused_until <= now:
            self._paused_until = None
            self._poll.modify(self.sock, select.POLLIN)
        while self.connections:
            conn = next(iter(self.connections.values()))
            if conn.deadline > now:
                break
            if conn.reply is not None:
                self._close(conn, f"did not take its answer in {IDLE_TIMEOUT:g} s")
            else:
                self._close(conn, f"sent {len(conn.header)} of 4 bytes in {IDLE_TIMEOUT:g} s")

    def close(self) -> None:
        """Close the listening socket and every connection."""
        for conn in self.connections.values():
            conn.sock.close()
        self.connections.clear()
        self.sock.close()

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                # Out of descriptors, most likely. The pending connection keeps the
                # socket readable, so polling on would spin: stop listening a while.
                log.error(
                    "remote signals: accept failed (%s): not accepting for %g s", exc, ACCEPT_PAUSE
                )
                self._poll.modify(self.sock, 0)
                self._paused_until = time.monotonic() + ACCEPT_PAUSE
                return
            peer = describe_peer(address)
            refused = not is_allowed(str(address[0]), self._allowed)
            if refused:
                self._refusals.refused(peer)
            if len(self.connections) >= MAX_CONNECTIONS and not self._evict_idle():
                log.warning(
                    "remote signal connection from %s refused: %d connections are open",
                    peer,
                    MAX_CONNECTIONS,
                )
                sock.close()
                continue
            sock.setblocking(False)
            self.connections[sock.fileno()] = Connection(
                sock, peer, time.monotonic() + IDLE_TIMEOUT, refused
            )
            self._poll.register(sock, select.POLLIN)

    def _evict_idle(self) -> bool:
        """Close the oldest connection still waiting for its request; False if none is."""
        for conn in self.connections.values():  # oldest first
            if conn.reply is None:
                self._close(conn, f"{MAX_CONNECTIONS} connections are open: the oldest idle goes")
                return True
        return False

    def _read(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # reset by the peer: as good as closed
        if not data:
            self._close(conn, f"the peer hung up after {len(conn.header)} of 4 bytes")
            return
        if conn.refused:
            conn.reply = bytearray(REJECTED)  # answered once it spoke, then closed
            self._send(conn)
            return
        conn.header += data[: HEADER_SIZE - len(conn.header)]
        if conn.header[0] != UWSGI_SIGNAL_MODIFIER:
            self._close(conn, f"not a signal request (modifier1 {conn.header[0]}, not 110)")
            return
        if len(conn.header) < HEADER_SIZE:
            return
        num = conn.header[3]
        # uWSGI answers 1 even for a signal no handler takes; 0 only when its queue is full.
        if self._raise(num):
            log.debug("remote signal %d from %s", num, conn.peer)
            conn.reply = bytearray(ACCEPTED)
        else:
            log.warning("remote signal %d from %s rejected: the queue is full", num, conn.peer)
            conn.reply = bytearray(REJECTED)
        self._send(conn)

    def _send(self, conn: Connection) -> None:
        assert conn.reply is not None
        try:
            sent = conn.sock.send(conn.reply)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # The peer left before its answer; its signal was raised all the same.
            self._close(conn)
            return
        del conn.reply[:sent]
        if conn.reply:
            self._poll.modify(conn.sock, select.POLLOUT)
        else:
            self._close(conn)

    def _close(self, conn: Connection, problem: str | None = None) -> None:
        if problem is not None:
            log.warning("remote signal connection from %s closed: %s", conn.peer, problem)
        fd = conn.sock.fileno()
        self._poll.unregister(fd)
        del self.connections[fd]
        for _ in range(DRAIN_READS):
            try:
                if not conn.sock.recv(READ_SIZE):
                    break
            except OSError:
                break
        conn.sock.close()


def describe_peer(address: object) -> str:
    """``host:port`` of a peer, for log lines."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)
