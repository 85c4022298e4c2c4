"""Addresses the runtime listens on (``host:port`` text, checked before anything binds),
and the networks whose hosts may reach them."""

from __future__ import annotations

import ipaddress
import logging
import math
import time

__all__ = [
    "LOOPBACK_NETWORKS",
    "Network",
    "RefusalLog",
    "is_allowed",
    "is_loopback",
    "parse_listen_address",
    "parse_networks",
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or an address in 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen_address(
    address: str,
    allow_any: bool = False,
    *,
    what: str = "remote signals",
    allow_with: str = "remote_signals_any=True (--remote-signals-any)",
) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too; port 0 picks a free port).

    A host that is not a loopback address is refused unless ``allow_any``:
    whoever reaches the port can raise any signal (or call any RPC function).
    ``what`` and ``allow_with`` name the listener and its opt-in in messages.
    """
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(
            f"invalid {what} address {address!r}: write HOST:PORT, e.g. '127.0.0.1:3031'"
        )
    if not allow_any and not is_loopback(host):
        raise ValueError(
            f"refusing to listen for {what} on {address!r}: {host} is not a loopback "
            "address (127.0.0.0/8, ::1, localhost) and any host that reaches it could raise "
            f"signals here; allow it with {allow_with}"
        )
    return host, int(port)


log = logging.getLogger("uwsgisig")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_NETWORKS: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


def parse_networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    """``--remote-allow`` values (``10.0.0.0/8``, ``192.0.2.7``, ``2001:db8::/32``) as
    networks, with the loopback ones always in; ValueError naming a bad one."""
    networks = list(LOOPBACK_NETWORKS)
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(
                f"invalid remote-allow {value!r}: give an address or a network, "
                "e.g. '10.0.0.0/8' or '192.0.2.7'"
            ) from None
    return tuple(networks)


def is_allowed(host: str, networks: tuple[Network, ...]) -> bool:
    """Whether a peer at ``host`` is in one of ``networks`` (an IPv4-mapped IPv6 too)."""
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class RefusalLog:
    """Logs refused peers, at most one line a second, with the count since the last."""

    def __init__(self, what: str, interval: float = 1.0) -> None:
        self.what = what
        self.interval = interval
        self._last = -math.inf
        self._since = 0

    def refused(self, peer: str) -> None:
        """Count one refusal of ``peer``; log it unless a line was written this second."""
        self._since += 1
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        log.warning(
            "%s from %s refused: not in the allowed networks (--remote-allow)%s",
            self.what,
            peer,
            f"; {self._since} refused since the last line" if self._since > 1 else "",
        )
        self._last = now
        self._since = 0
