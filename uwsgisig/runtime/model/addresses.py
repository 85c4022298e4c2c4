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
