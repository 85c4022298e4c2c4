"""The stats server: the runtime's state as JSON, in uWSGI's shape, for uwsgitop and the like.

``--stats ADDR`` (a unix socket path, or a loopback ``host:port``) answers each
connection with one JSON document and closes it, as uWSGI's stats server
does; with ``--stats-http`` the document comes as an HTTP response. The keys
are uWSGI 2.0.31's (measured: ``version``, ``listen_queue``,
``listen_queue_errors``, ``signal_queue``, ``load``, ``pid``, ``uid``, ``gid``,
``cwd``, ``locks``, ``sockets``, ``workers[]`` with ``id``, ``pid``,
``accepting``, ``requests``, ``delta_requests``, ``exceptions``,
``harakiri_count``, ``signals``, ``signal_queue``, ``status``, ``rss``,
``vsz``, ``running_time``, ``last_spawn``, ``respawn_count``, ``tx``,
``avg_rt``, ``apps``, ``cores``), with values that are true here: the
runtime serves no requests, so the request counters are 0. What uWSGI lacks
comes beside them: ``mules[]``, ``spooler``, ``timers``, ``crons`` and
``signal_counts``.

A connection is answered in the master's loop, with one send that may block
for at most `SEND_TIMEOUT`: the document is small, and the peer is local.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import stat
from collections.abc import Callable
from typing import Any

from ..model.addresses import parse_listen_address

__all__ = ["StatsServer", "bind_stats", "memory_of"]

log = logging.getLogger("uwsgisig")

SEND_TIMEOUT = 1.0  # seconds
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def bind_stats(address: str) -> socket.socket:
    """Listen on ``address``: a unix socket path (made 0600) or a loopback ``host:port``."""
    if ":" in address and not address.startswith(("/", ".")):
        host, port = parse_listen_address(address)  # loopback only: it tells a lot
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family, backlog=16)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot serve stats on {address}: {exc.strerror}") from exc
    else:
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(os.lstat(address).st_mode):
                raise FileExistsError(f"stats socket {address!r} exists and is not a socket")
            os.unlink(address)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(address)
        finally:
            os.umask(old_umask)
        sock.listen(16)
    sock.setblocking(False)
    return sock


def memory_of(pid: int) -> tuple[int, int]:
    """``(rss, vsz)`` of ``pid`` in bytes, from /proc; zeros if it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            size, resident = statm.read().split()[:2]
    except (OSError, ValueError):
        return 0, 0
    return int(resident) * _PAGE, int(size) * _PAGE


class StatsServer:
    """Answers each connection on ``listening`` with ``snapshot()`` as JSON."""

    def __init__(
        self,
        listening: socket.socket,
        poll: select.poll,
        snapshot: Callable[[], dict[str, Any]],
        *,
        http: bool = False,
    ) -> None:
        self.listening = listening
        self._poll = poll
        self._snapshot = snapshot
        self._http = http

    def start(self) -> None:
        self._poll.register(self.listening, select.POLLIN)

    def owns(self, fd: int) -> bool:
        return fd == self.listening.fileno()

    def fds(self) -> list[int]:
        return [self.listening.fileno()]

    def ready(self) -> None:
        """Answer every connection waiting to be accepted."""
        while True:
            try:
                peer, _ = self.listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("stats server: cannot accept: %s", exc)
                return
            with peer:
                self._answer(peer)

    def _answer(self, peer: socket.socket) -> None:
        body = json.dumps(self._snapshot(), indent=1).encode()
        peer.settimeout(SEND_TIMEOUT)
        try:
            if self._http:
                _read_request(peer)
                head = (
                    "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                body = head.encode() + body
            peer.sendall(body)
        except OSError as exc:
            log.warning("stats server: a client left before its answer: %s", exc)

    def close(self) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._poll.unregister(self.listening)
        address = self.listening.getsockname()
        self.listening.close()
        if isinstance(address, str) and address:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address)


def _read_request(peer: socket.socket) -> None:
    """Read an HTTP request's head, so closing after the answer sends no reset."""
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        chunk = peer.recv(4096)
        if not chunk:
            return
        head += chunk
