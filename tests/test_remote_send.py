"""Signal.send(remote=...) speaks the uwsgi protocol to a peer on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from uwsgisig import Signal

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def peer() -> Iterator[Callable[[bytes | None], tuple[str, list[bytes]]]]:
    """A one-connection uwsgi peer on loopback that answers with ``reply`` (None: close)."""
    servers: list[tuple[socket.socket, threading.Thread]] = []

    def start(reply: bytes | None) -> tuple[str, list[bytes]]:
        server = socket.create_server(("127.0.0.1", 0))
        received: list[bytes] = []

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                data = b""
                while len(data) < 4:
                    chunk = conn.recv(4 - len(data))
                    if not chunk:
                        break
                    data += chunk
                received.append(data)
                if reply is not None:
                    conn.sendall(reply)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"127.0.0.1:{server.getsockname()[1]}", received

    yield start
    for server, thread in servers:
        thread.join(5)
        server.close()


def test_accepted_remote_signal_sends_the_uwsgi_header(peer):
    address, received = peer(b"\xff\x00\x00\x01")
    Signal(17).send(remote=address)
    assert received == [bytes([110, 0, 0, 17])]


def test_rejected_remote_signal_raises_value_error_naming_the_node(peer):
    address, _ = peer(b"\xff\x00\x00\x00")
    with pytest.raises(ValueError, match=f"node {address} rejected signal 18"):
        Signal(18).send(remote=address)


def test_remote_that_closes_without_a_reply_raises_os_error(peer):
    address, _ = peer(None)
    with pytest.raises(OSError, match=f"unable to deliver signal 19 to node {address}"):
        Signal(19).send(remote=address)


def test_unreachable_remote_raises_os_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: the connection is refused
        with pytest.raises(OSError, match=f"unable to deliver signal 20 to node 127.0.0.1:{port}"):
            Signal(20).send(remote=f"127.0.0.1:{port}")


@pytest.mark.parametrize("bad", ["localhost", "host:", ":3031", "host:0", "host:70000"])
def test_bad_remote_address_is_refused(bad):
    with pytest.raises(ValueError, match="invalid remote address"):
        Signal(21).send(remote=bad)
