"""Remote signals between a real uWSGI and uwsgisig, both ways, on the wire.

One uWSGI node runs ``tests/apps/uwsgi_node.py`` for the whole module: its
uwsgi socket takes signals, and its HTTP socket makes it send them
(``GET /signal?num=N&to=HOST:PORT`` calls ``uwsgi.signal(N, "HOST:PORT")``).
"""

from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import attrs
import pytest

from tests.conftest import wait_for
from tests.servers import APPS, Server, start_uwsgi, uwsgi_ports
from uwsgisig import Signal

ACCEPTED = b"\xff\x00\x00\x01"
NO_HANDLER = 99

LISTENER_APP = """
@Signal(17).register_handler(target="workers")
def seventeen(num):
    record("seventeen")

@Signal(18).register_handler(target="worker1")
def park(num):
    record("parked")
    block()
"""


@attrs.frozen
class UwsgiNode:
    server: Server
    signals: str  # HOST:PORT of its uwsgi socket
    http: str  # HOST:PORT of its HTTP socket
    out: Path

    def send(self, num: int, to: str) -> str:
        """Make the node call ``uwsgi.signal(num, to)``; return what it said."""
        url = f"http://{self.http}/signal?{urlencode({'num': num, 'to': to})}"
        with urllib.request.urlopen(url, timeout=15) as reply:
            return reply.read().decode()

    def handled(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UwsgiNode]:
    workdir = tmp_path_factory.mktemp("uwsgi-node")
    out = workdir / "out.txt"
    server = start_uwsgi(
        APPS / "uwsgi_node.py",
        workdir,
        ["--processes", "1", "--socket", "127.0.0.1:0", "--http-socket", "127.0.0.1:0"],
        {"UWSGISIG_TEST_OUT": str(out)},
    )
    try:
        signals_port, http_port = uwsgi_ports(server, 2)
        yield UwsgiNode(server, f"127.0.0.1:{signals_port}", f"127.0.0.1:{http_port}", out)
    finally:
        server.stop()


def exchange(address: str, packet: bytes) -> bytes:
    """Send ``packet`` to ``address``; return everything the peer answers before it closes."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(packet)
        answer = b""
        while chunk := connection.recv(16):
            answer += chunk
    return answer


def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"  # nobody listens once it is closed


# ---------------------------------------------------------------- uwsgisig -> uWSGI


@pytest.mark.timeout(60)
def test_uwsgi_answers_our_packet_as_we_expect(node):
    assert exchange(node.signals, bytes([110, 0, 0, 17])) == ACCEPTED
    wait_for(lambda: len(node.handled()) >= 1, 10, "uWSGI to run the handler of 17")


@pytest.mark.timeout(60)
def test_our_send_raises_a_signal_on_uwsgi(node):
    before = len(node.handled())
    Signal(17).send(remote=node.signals)
    wait_for(lambda: len(node.handled()) > before, 10, "uWSGI to run the handler of 17")


@pytest.mark.timeout(60)
def test_uwsgi_accepts_a_number_with_no_handler_and_so_does_our_send(node):
    # uWSGI answers "accepted" and logs the failure when it dispatches: no error here.
    assert exchange(node.signals, bytes([110, 0, 0, NO_HANDLER])) == ACCEPTED
    Signal(NO_HANDLER).send(remote=node.signals)
    wait_for(
        lambda: f"error managing signal {NO_HANDLER}" in node.server.log_text(),
        10,
        "uWSGI to log the signal it could not handle",
    )


@pytest.mark.timeout(60)
def test_our_send_to_a_closed_port_is_an_oserror_naming_it():
    address = closed_port()
    with pytest.raises(OSError, match=re.escape(address)):
        Signal(17).send(remote=address)


# ---------------------------------------------------------------- uWSGI -> uwsgisig


@pytest.mark.timeout(60)
def test_uwsgi_raises_a_signal_on_our_listener(node, start_app):
    app = start_app(LISTENER_APP, workers=2, remote_signals="127.0.0.1:0")
    assert node.send(17, app.handle.remote_signals) == "ok"
    app.wait_records("seventeen", 2)  # target "workers": both ran it


@pytest.mark.timeout(60)
def test_uwsgi_sees_our_answer_for_a_number_with_no_handler_as_uwsgi_would(node, start_app):
    # As uWSGI does, the listener accepts it; here it waits in the queue for a signal_wait().
    app = start_app(LISTENER_APP, remote_signals="127.0.0.1:0")
    assert node.send(NO_HANDLER, app.handle.remote_signals) == "ok"
    assert app.handle.wait(NO_HANDLER, timeout=10) == NO_HANDLER


@pytest.mark.timeout(60)
def test_uwsgi_sees_our_rejection_when_our_queue_is_full(node, start_app):
    app = start_app(LISTENER_APP, remote_signals="127.0.0.1:0", queue_size=1)
    address = app.handle.remote_signals
    app.handle.signal(18)
    app.wait_records("parked", 1)
    assert node.send(17, address) == "ok"  # it waits for the parked worker: the queue is full
    assert node.send(17, address) == f"ValueError: node {address} rejected signal 17"
    app.release()
    app.wait_records("seventeen", 1)
    assert node.send(17, address) == "ok"
    app.wait_records("seventeen", 2)


@pytest.mark.timeout(60)
def test_uwsgi_sees_a_closed_port_as_undeliverable(node):
    address = closed_port()
    assert node.send(17, address) == f"OSError: unable to deliver signal 17 to node {address}"
