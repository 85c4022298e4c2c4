"""The workers' RPC socket: uWSGI RPC requests (and remote signals) from other nodes.

The master binds the socket before it forks and every worker watches it in
its signal loop, as uWSGI's workers share their uwsgi socket: an idle worker
accepts the next connection, a busy one takes nothing, and while all are
busy connections wait in the listen backlog. The worker reads one request,
answers it and closes the connection:

- modifier1 173 calls one of its RPC functions (`wire.rpc` has the packets);
  with no such function, or no bytes from it, the connection closes with no
  answer, as uWSGI's does;
- modifier1 110 raises the signal in modifier2 and answers ``ff 00 00 01``
  (``ff 00 00 00`` when the master's queue stays full), so one address
  serves a uWSGI node both ways.

A peer has `RPC_TIMEOUT` seconds to send its request, so a silent one holds
a worker no longer than that. Only hosts of the allowed networks
(``--remote-allow``, and always loopback) are served: any other gets
``ff 00 00 00`` and the connection closes, logged at most once a second.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable

from ...errors import SignalQueueFullError
from ..model.addresses import LOOPBACK_NETWORKS, Network, RefusalLog, is_allowed
from ..model.rpc import RpcFunctions
from ..wire.remote import ACCEPTED, REJECTED, UWSGI_SIGNAL_MODIFIER
from ..wire.rpc import (
    RPC_MODIFIER,
    RPC_TIMEOUT,
    RpcPacketError,
    pack_response,
    parse_array,
    parse_header,
    read_exactly,
)

__all__ = ["RpcServer"]

log = logging.getLogger("uwsgisig")

HEADER_SIZE = 4


class RpcServer:
    """Answers the requests of a listening socket shared by the workers."""

    def __init__(
        self,
        sock: socket.socket,
        functions: RpcFunctions,
        raise_signal: Callable[[int], None],
        who: Callable[[], str],
        timeout: float = RPC_TIMEOUT,
        allowed: tuple[Network, ...] = LOOPBACK_NETWORKS,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._functions = functions
        self._raise = raise_signal
        self._who = who
        self._timeout = timeout
        self._allowed = allowed
        self._refusals = RefusalLog("RPC request")

    def fileno(self) -> int:
        """The listening socket's descriptor, for the loop's poller."""
        return self.sock.fileno()

    def serve_one(self) -> None:
        """Accept one connection and answer it; nothing if another worker took it."""
        try:
            conn, peer = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        with conn:
            conn.settimeout(self._timeout)
            if not is_allowed(str(peer[0]), self._allowed):
                self._refusals.refused(_peer(peer))
                with contextlib.suppress(OSError):
                    read_exactly(conn, HEADER_SIZE)  # answered once it spoke (no reset)
                    conn.sendall(REJECTED)
                return
            try:
                self._answer(conn)
            except (OSError, RpcPacketError) as exc:
                log.warning("RPC request from %s to %s: %s", _peer(peer), self._who(), exc)

    def _answer(self, conn: socket.socket) -> None:
        header = read_exactly(conn, HEADER_SIZE)
        modifier1 = header[0]
        size, modifier2 = parse_header(header)
        if modifier1 == UWSGI_SIGNAL_MODIFIER:
            conn.sendall(self._signal(modifier2))
            return
        if modifier1 != RPC_MODIFIER:
            raise RpcPacketError(f"modifier1 {modifier1} is neither RPC (173) nor a signal (110)")
        items = parse_array(read_exactly(conn, size))
        name = items[0].decode("utf-8", "surrogateescape")
        result = self._functions.call(name, items[1:])
        if result is not None:
            conn.sendall(pack_response(result, modifier2))

    def _signal(self, num: int) -> bytes:
        try:
            self._raise(num)
        except SignalQueueFullError:
            return REJECTED
        return ACCEPTED


def _peer(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
