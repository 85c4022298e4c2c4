"""A runtime's cluster: the Redis (or Valkey) server its nodes meet on, and what they say.

Every key of a cluster starts with ``uwsgisig:NAME:``. A node announces itself
in ``uwsgisig:NAME:node:NODE`` (its pid and the signals it has handlers for,
as JSON), a key that expires `MEMBER_TTL` after its last heartbeat; cluster
signals are the entries of the stream ``uwsgisig:NAME:signals``, which each
node reads from where it last read, so a node that lost its connection for a
while runs the signals raised meanwhile when it is back.

A *unique* timer or cron fires on one node per tick: each node's master asks
for the tick's lease, ``uwsgisig:NAME:once:SIGNUM:LENGTH:SLOT`` set if absent
(``SET NX PX``), and runs the signal only if it got it. The slot is the
period of the wall clock the tick falls in (`slot_of`: a unique timer ticks
in the middle of its periods; a cron in its minute), so nodes name a tick
alike, and the lease lives `lease_ttl`: nodes whose clocks differ by less
than that fire each tick once (no leader to elect or to lose).

The master and its cluster agent (`runtime.child.cluster`) speak JSON over a
``SOCK_SEQPACKET`` socket pair: one message per packet (`encode`, `decode`).
"""

from __future__ import annotations

import json
import math
import socket
import urllib.parse
from typing import Any

import attrs

__all__ = [
    "HEARTBEAT",
    "MEMBER_TTL",
    "MIN_LEASE",
    "SCOPES",
    "STREAM_LENGTH",
    "URL_ENV",
    "ClusterSpec",
    "decode",
    "default_node_name",
    "encode",
    "lease_ttl",
    "slot_of",
]

URL_ENV = "UWSGISIG_CLUSTER_URL"  # the agent's URL: in its environment, out of ps
HEARTBEAT = 1.0  # seconds between two announcements of a node
MEMBER_TTL = 3.0  # seconds after its last announcement a node is gone
MIN_LEASE = 30.0  # seconds: the least a tick's lease lives
STREAM_LENGTH = 10_000  # about how many signals the stream keeps for nodes that were away
# Who a cluster signal reaches: every live node, by a handler's `cluster` target; the
# nodes with a handler for it; every live node, by `Signal.send(cluster=True)`.
SCOPES = ("cluster", "subscribed", "all")
_SCHEMES = ("redis", "rediss", "unix")


@attrs.frozen
class ClusterSpec:
    """Where a cluster meets (``url``, as redis-py reads it) and its name."""

    url: str = attrs.field()
    name: str = attrs.field(default="uwsgisig")

    @url.validator
    def _check_url(self, _: object, url: str) -> None:
        if not isinstance(url, str):
            raise TypeError(f"invalid cluster {url!r}: give a URL such as redis://127.0.0.1:6379/0")
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in _SCHEMES:
            raise ValueError(
                f"invalid cluster {url!r}: give a redis://HOST:PORT/DB, rediss://... (TLS) or "
                "unix://PATH URL"
            )

    @name.validator
    def _check_name(self, _: object, name: str) -> None:
        if not isinstance(name, str) or not name or any(c in name for c in ":*?[] \n"):
            raise ValueError(
                f"invalid cluster name {name!r}: give a non-empty name without ':', spaces or "
                "glob characters"
            )

    def key(self, *parts: str) -> str:
        """The Redis key ``uwsgisig:NAME:PARTS...``."""
        return ":".join(("uwsgisig", self.name, *parts))

    @property
    def stream(self) -> str:
        """The stream of the cluster's signals."""
        return self.key("signals")

    def member_key(self, node: str) -> str:
        """The key that says ``node`` is alive."""
        return self.key("node", node)

    def lease_key(self, signum: int, length: float, slot: int) -> str:
        """The key of the lease on tick ``slot`` of signal ``signum``'s unique schedule."""
        return self.key("once", str(signum), f"{length:g}", str(slot))

    def redacted_url(self) -> str:
        """The URL without its password, for logs and stats."""
        parts = urllib.parse.urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def slot_of(unix_time: float, length: float) -> int:
    """The period of ``length`` seconds that ``unix_time`` falls in: a tick's name."""
    return math.floor(unix_time / length)


def lease_ttl(length: float) -> float:
    """How long a tick's lease lives: the clock skew between nodes it tolerates."""
    return max(3 * length, MIN_LEASE)


def default_node_name(pid: int) -> str:
    """A node's name unless given: this host's name and the master's pid."""
    return f"{socket.gethostname()}:{pid}"


def encode(message: dict[str, Any]) -> bytes:
    """One message between the master and its cluster agent."""
    return json.dumps(message, separators=(",", ":")).encode()


def decode(packet: bytes) -> dict[str, Any]:
    """The message in ``packet``; ValueError if it is none."""
    message = json.loads(packet)
    if not isinstance(message, dict):
        raise ValueError(f"not a cluster message: {packet[:80]!r}")
    return message
