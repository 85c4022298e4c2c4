"""uWSGI's RPC packets (modifier1 173), and a call to another node.

A request is a uwsgi header ``ad LL LL 00`` (modifier1 173, a little-endian
datasize, modifier2 0) and a uwsgi array: the function's name, then each
argument, every item a little-endian u16 length and its bytes. The node
answers with the same header kind whose datasize is the result's length, then
the result; a result over 65535 bytes comes as modifier2 5, a uwsgi
dictionary holding ``CONTENT_LENGTH``, then the raw result. A request with
modifier2 1 asks for the raw result alone. A node with no such function, or
whose function gave no bytes, closes without answering.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence

__all__ = [
    "MAX_ARGS",
    "MAX_PACKET",
    "RAW",
    "RPC_MODIFIER",
    "RpcPacketError",
    "call_remote",
    "pack_request",
    "pack_response",
    "parse_array",
    "parse_header",
    "read_exactly",
]

RPC_MODIFIER = 173
# modifier2 of a request that wants the result without a header.
RAW = 1
# modifier2 of an answer whose result follows a dictionary with CONTENT_LENGTH.
LONG_ANSWER = 5
# A packet's datasize is a u16; uWSGI reads at most 255 items (the name and 254 arguments).
MAX_PACKET = 0xFFFF
MAX_ARGS = 254
# uWSGI's socket timeout, which its RPC client uses too.
RPC_TIMEOUT = 4.0

_HEADER = struct.Struct("<BHB")
_LENGTH = struct.Struct("<H")


class RpcPacketError(ValueError):
    """A packet that is not a well-formed RPC request or answer."""


def pack_request(name: bytes, args: Sequence[bytes], modifier2: int = 0) -> bytes:
    """The request calling ``name`` with ``args``; ValueError if it cannot fit a packet."""
    if len(args) > MAX_ARGS:
        raise ValueError(f"too many RPC arguments ({len(args)}): at most {MAX_ARGS}")
    size = sum(2 + len(item) for item in (name, *args))
    if size > MAX_PACKET:
        raise ValueError(
            f"RPC request for {name!r} is {size} bytes: a packet holds at most {MAX_PACKET}"
        )
    body = b"".join(_LENGTH.pack(len(item)) + item for item in (name, *args))
    return _HEADER.pack(RPC_MODIFIER, len(body), modifier2) + body


def parse_array(body: bytes) -> list[bytes]:
    """The items of a uwsgi array; RpcPacketError if one runs past the end."""
    items: list[bytes] = []
    offset = 0
    while offset < len(body):
        if offset + 2 > len(body):
            raise RpcPacketError("an RPC array item's length is cut short")
        (size,) = _LENGTH.unpack_from(body, offset)
        offset += 2
        if offset + size > len(body):
            raise RpcPacketError(f"an RPC array item of {size} bytes runs past the packet")
        items.append(body[offset : offset + size])
        offset += size
    if not items:
        raise RpcPacketError("an empty RPC request names no function")
    if len(items) > MAX_ARGS + 1:
        raise RpcPacketError(f"an RPC request with {len(items) - 1} arguments: at most {MAX_ARGS}")
    return items


def pack_response(result: bytes, modifier2: int = 0) -> bytes:
    """The answer carrying ``result``, for a request that had ``modifier2``."""
    if modifier2 == RAW:
        return result
    if len(result) <= MAX_PACKET:
        return _HEADER.pack(RPC_MODIFIER, len(result), 0) + result
    length = str(len(result)).encode()
    key = b"CONTENT_LENGTH"
    vars_ = _LENGTH.pack(len(key)) + key + _LENGTH.pack(len(length)) + length
    return _HEADER.pack(RPC_MODIFIER, len(vars_), LONG_ANSWER) + vars_ + result


def parse_header(header: bytes) -> tuple[int, int]:
    """``(datasize, modifier2)`` of a 4-byte uwsgi header (a request's or an answer's)."""
    _, size, modifier2 = _HEADER.unpack(header)
    return size, modifier2


def call_remote(
    node: str,
    host: str,
    port: int,
    name: bytes,
    args: Sequence[bytes],
    timeout: float = RPC_TIMEOUT,
) -> bytes | None:
    """Call ``name`` on the node at ``host:port``; its result, or None if it gave none.

    OSError (naming ``node``) if the node cannot be reached or the answer is cut.
    """
    request = pack_request(name, args)
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(request)
            first = conn.recv(_HEADER.size)
            if not first:
                return None  # no such function, or it gave no bytes
            header = first + read_exactly(conn, _HEADER.size - len(first))
            size, modifier2 = parse_header(header)
            payload = read_exactly(conn, size)
            if modifier2 == LONG_ANSWER:
                payload = read_exactly(conn, _content_length(payload))
    except OSError as exc:
        raise OSError(f"unable to call RPC function {name!r} on node {node}: {exc}") from exc
    return payload or None


def _content_length(vars_: bytes) -> int:
    offset = 0
    while offset + 2 <= len(vars_):
        (key_size,) = _LENGTH.unpack_from(vars_, offset)
        key = vars_[offset + 2 : offset + 2 + key_size]
        offset += 2 + key_size
        (value_size,) = _LENGTH.unpack_from(vars_, offset)
        value = vars_[offset + 2 : offset + 2 + value_size]
        offset += 2 + value_size
        if key == b"CONTENT_LENGTH" and value.isdigit():
            return int(value)
    raise OSError("the node's long answer has no CONTENT_LENGTH")


def read_exactly(conn: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``conn``; OSError if the peer closes before."""
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise OSError(f"the peer closed after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)
