"""Addresses the runtime listens on: ``host:port`` text, checked before anything binds."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback", "parse_listen_address"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or an address in 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen_address(address: str, allow_any: bool = False) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too; port 0 picks a free port).

    A host that is not a loopback address is refused unless ``allow_any``:
    whoever reaches the port can raise any signal.
    """
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(
            f"invalid remote signals address {address!r}: write HOST:PORT, e.g. '127.0.0.1:3031'"
        )
    if not allow_any and not is_loopback(host):
        raise ValueError(
            f"refusing to listen for remote signals on {address!r}: {host} is not a loopback "
            "address (127.0.0.0/8, ::1, localhost) and any host that reaches it could raise "
            "signals here; allow it with remote_signals_any=True (--remote-signals-any)"
        )
    return host, int(port)
