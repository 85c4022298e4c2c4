"""The master's side of the cluster: its agent process, and the messages to and from it.

The agent (`runtime.child.cluster`) runs as a supervised `Command`, restarted
with the children's backoff if it dies. The socket pair between them outlives
each agent: what the master sends while no agent runs waits in the socket for
the next one.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..model.cluster import URL_ENV, ClusterSpec, decode, encode
from .command import Command

__all__ = ["ClusterLink"]

log = logging.getLogger("uwsgisig")

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class ClusterLink:
    """The master's link to its cluster agent.

    ``raise_here(num, scope)`` runs a signal that came from the cluster on this
    node; ``run_won(num)`` one whose unique tick this node leased; ``signals()``
    gives the numbers this node has handlers for.
    """

    def __init__(
        self,
        spec: ClusterSpec,
        node: str,
        *,
        call_later: Callable[[float, Callable[[], None]], None],
        raise_here: Callable[[int, str], None],
        run_won: Callable[[int], None],
        signals: Callable[[], Iterable[int]],
    ) -> None:
        self.spec = spec
        self.node = node
        self.members: list[dict[str, Any]] = []
        self.published = 0
        self.received = 0
        self.failed = 0
        self.ticks = {"won": 0, "lost": 0, "failed": 0}  # unique ticks leased, or not
        self._raise_here = raise_here
        self._run_won = run_won
        self._signals = signals
        self.sock, agent_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.setblocking(False)
        self._agent_end = agent_end  # kept open: each agent inherits it
        argv = [sys.executable, "-m", "uwsgisig.runtime.child.cluster"]
        env = {**os.environ, URL_ENV: spec.url}
        self.command = Command(
            [*argv, str(agent_end.fileno()), spec.name, node],
            env,
            call_later=call_later,
            name="cluster agent",
            keep_fds=(agent_end.fileno(),),
            on_start=self.announce,
        )

    def publish(self, num: int, scope: str) -> None:
        """Raise signal ``num`` on the nodes of ``scope`` (`model.cluster.SCOPES`)."""
        self.published += 1
        self._send({"publish": num, "scope": scope})

    def lease(self, signum: int, length: float, slot: int) -> None:
        """Ask for the lease on tick ``slot`` of ``signum``'s unique schedule; the signal
        runs here if this node gets it."""
        self._send({"lease": signum, "length": length, "slot": slot, "at": time.time()})

    def announce(self) -> None:
        """Tell the agent which signals this node has handlers for."""
        self._send({"signals": sorted(set(self._signals()))})

    def ready(self, events: int) -> None:
        """The agent's socket is readable: act on every message waiting in it."""
        if not events & select.POLLIN:
            return
        while True:
            try:
                packet = self.sock.recv(65536)
            except BlockingIOError:
                return
            if not packet:
                return
            try:
                self._on_message(decode(packet))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("cluster agent: a message makes no sense (%s): %r", exc, packet[:80])

    def _on_message(self, message: dict[str, Any]) -> None:
        if "raise" in message:
            self.received += 1
            self._raise_here(int(message["raise"]), str(message.get("scope", "cluster")))
        elif "members" in message:
            self.members = list(message["members"])
            log.info(
                "cluster %s: %d node(s): %s",
                self.spec.name,
                len(self.members),
                ", ".join(member["node"] for member in self.members),
            )
        elif "log" in message:
            level = _LEVELS.get(str(message["log"]), logging.WARNING)
            log.log(level, "cluster %s: %s", self.spec.name, message["text"])
        elif "failed" in message:
            self.failed += 1
        elif "won" in message:
            self.ticks["won"] += 1
            self._run_won(int(message["won"]))
        elif "lost" in message:
            self.ticks["lost"] += 1
        elif "lease_failed" in message:
            self.ticks["failed"] += 1

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.sock.send(encode(message))
        except BlockingIOError:
            log.error("cluster agent is not keeping up: %s is lost (its socket is full)", message)

    def stats(self) -> dict[str, Any]:
        """What the stats say of the cluster."""
        return {
            "name": self.spec.name,
            "url": self.spec.redacted_url(),
            "node": self.node,
            "members": self.members,
            "agent_pid": self.command.pid,
            "published": self.published,
            "received": self.received,
            "failed": self.failed,
            "unique_ticks": dict(self.ticks),
        }

    def close(self) -> None:
        """The master leaves."""
        self.sock.close()
        self._agent_end.close()
