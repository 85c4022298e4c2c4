"""Signals to another node over the uwsgi protocol (modifier1 110).

A request is the 4-byte uwsgi header ``6e 00 00 NN``: modifier1 110, a
datasize of 0 (little-endian u16) and the signal number as modifier2. The node
answers with a header whose modifier2 is 1 (accepted) or 0 (rejected).
"""

from __future__ import annotations

import socket
import struct

__all__ = [
    "ACCEPTED",
    "REJECTED",
    "REMOTE_TIMEOUT",
    "UWSGI_SIGNAL_MODIFIER",
    "parse_address",
    "send_remote_signal",
]

UWSGI_SIGNAL_MODIFIER = 110
# A node's answers: modifier1 255, modifier2 1 (accepted) or 0 (rejected).
ACCEPTED = bytes([255, 0, 0, 1])
REJECTED = bytes([255, 0, 0, 0])
# uWSGI's own sender gives up after 4 s.
REMOTE_TIMEOUT = 4.0
_HEADER = struct.Struct("<BHB")


def parse_address(remote: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too); raise ValueError naming a bad address."""
    host, sep, port = remote.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"invalid remote address {remote!r}: write HOST:PORT, e.g. '127.0.0.1:3031'"
        )
    return host.strip("[]"), int(port)


def send_remote_signal(num: int, remote: str, timeout: float = REMOTE_TIMEOUT) -> None:
    """Raise ``num`` on the node at ``remote``; ValueError if it rejects, OSError if unreachable."""
    host, port = parse_address(remote)
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(_HEADER.pack(UWSGI_SIGNAL_MODIFIER, 0, num))
            reply = b""
            while len(reply) < _HEADER.size:
                chunk = conn.recv(_HEADER.size - len(reply))
                if not chunk:
                    break
                reply += chunk
    except OSError as exc:
        raise OSError(f"unable to deliver signal {num} to node {remote}: {exc}") from exc
    if len(reply) < _HEADER.size:
        raise OSError(f"unable to deliver signal {num} to node {remote}: it closed without a reply")
    if reply[3] == 0:
        raise ValueError(f"node {remote} rejected signal {num}")
