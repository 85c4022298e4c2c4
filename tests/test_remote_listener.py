"""The runtime's remote-signal listener answers the uwsgi protocol as uWSGI 2.0.31 does."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import assert_all_gone, wait_for
from uwsgisig import Runtime, Signal
from uwsgisig.cli import main
from uwsgisig.runtime.master.listener import (
    ACCEPTED,
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    REJECTED,
    is_loopback,
    parse_listen_address,
)
from uwsgisig.runtime.model.addresses import is_allowed, parse_networks
from uwsgisig.runtime.model.process import CURRENT
from uwsgisig.runtime.wire.remote import parse_address, send_remote_signal

pytestmark = pytest.mark.timeout(60)

HEADER = struct.Struct("<BHB")
LOOPBACK_ANY_PORT = "127.0.0.1:0"
NO_HANDLER = 99

APP = """
@Signal(17).register_handler(target="worker")
def seventeen(num):
    record("seventeen", num)

@Signal(18).register_handler(target="worker")
def eighteen(num):
    record("eighteen", num)
    block()
    record("released", num)

@Signal(19).register_handler(target="worker")
def nineteen(num):
    record("nineteen", num)
"""


def request(num: int, body: bytes = b"") -> bytes:
    """A uwsgi signal request: modifier1 110, datasize, modifier2 = ``num``, then ``body``."""
    return HEADER.pack(110, len(body), num) + body


def connect(address: str) -> socket.socket:
    return socket.create_connection(parse_address(address), timeout=10)


def read_to_eof(conn: socket.socket) -> bytes:
    """Everything the node sends until it closes (a socket timeout fails the test)."""
    received = b""
    while chunk := conn.recv(4096):
        received += chunk
    return received


def exchange(address: str, data: bytes, *, end: bool = False) -> bytes:
    """Send ``data`` (then end the stream if ``end``); return all the node answers."""
    with connect(address) as conn:
        conn.sendall(data)
        if end:
            conn.shutdown(socket.SHUT_WR)
        return read_to_eof(conn)


def log_lines(app, text: str) -> list[str]:
    if not app.log.exists():
        return []
    return [line for line in app.log.read_text().splitlines() if text in line]


def wait_log(app, text: str, count: int = 1) -> list[str]:
    wait_for(lambda: len(log_lines(app, text)) >= count, 10, f"{count} log lines with {text!r}")
    return log_lines(app, text)


def socket_holders(port: int) -> set[int]:
    """Pids holding the socket that listens on 127.0.0.1:``port``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        if links & inodes:
            holders.add(int(entry.name))
    return holders


def test_send_remote_runs_the_handler_and_the_node_answers_accepted(start_app):
    app = start_app(APP, remote_signals=LOOPBACK_ANY_PORT)
    address = app.handle.remote_signals
    host, port = parse_address(address)
    assert host == "127.0.0.1"
    assert port > 0
    assert CURRENT.role is None  # the sender is outside any runtime
    Signal(17).send(remote=address)
    app.wait_records("seventeen", 1)
    send_remote_signal(17, address)
    app.wait_records("seventeen", 2)
    assert exchange(address, request(17)) == ACCEPTED
    assert [words[1] for words in app.wait_records("seventeen", 3)] == ["17", "17", "17"]


def test_the_reply_does_not_wait_for_the_handler(start_app):
    app = start_app(APP, remote_signals=LOOPBACK_ANY_PORT)
    address = app.handle.remote_signals
    # The handler parks in block() until released: the answer comes meanwhile.
    assert exchange(address, request(18)) == ACCEPTED
    app.wait_records("eighteen", 1)
    assert app.records("released") == []
    app.release()
    app.wait_records("released", 1)


def test_only_the_master_holds_the_listening_socket(start_app):
    app = start_app(APP, remote_signals=LOOPBACK_ANY_PORT, workers=2, mules=1, spooler=True)
    _, port = parse_address(app.handle.remote_signals)
    assert len(app.handle.pids()) == 5
    assert socket_holders(port) == {app.handle.pid}


def test_a_signal_without_a_handler_is_accepted_and_routed(start_app):
    app = start_app(APP, remote_signals=LOOPBACK_ANY_PORT)
    assert exchange(app.handle.remote_signals, request(NO_HANDLER)) == ACCEPTED
    # Routed as a child's signal would be: whoever waits for it gets it.
    assert app.handle.wait(NO_HANDLER, timeout=10) == NO_HANDLER


def test_a_body_is_ignored_and_only_the_first_packet_is_handled(start_app):
    app = start_app(APP, remote_signals=LOOPBACK_ANY_PORT)
    address = app.handle.remote_signals
    # One write: a packet with a 5-byte body, then a second packet.
    assert exchange(address, request(17, b"hello") + request(19)) == ACCEPTED
    # The second packet sent after the answer is ignored too.
    with connect(address) as conn:
        conn.sendall(request(17, b"abc")[:4])
        received = b""
        while len(received) < 4 and (chunk := conn.recv(4 - len(received))):
            received += chunk
        assert received == ACCEPTED
        try:
            conn.sendall(b"abc" + request(19))
            assert read_to_eof(conn) == b""
        except (BrokenPipeError, ConnectionResetError):
            pass  # the node had closed already
    # One worker takes the worker queue in order: 19 would have come before this one.
    app.handle.signal(17)
    app.wait_records("seventeen", 3)
    assert app.records("nineteen") == []


def test_bad_connections_are_closed_with_a_log_line_and_signals_still_work(start_app):
    app = start_app(APP, remote_signals=LOOPBACK_ANY_PORT)
    address = app.handle.remote_signals
    assert exchange(address, b"GET / HTTP/1.0\r\n\r\n") == b""
    assert exchange(address, b"\x00") == b""  # closed at the first byte, without an end
    wait_log(app, "not a signal request", 2)
    assert exchange(address, request(17)[:2], end=True) == b""
    wait_log(app, "the peer hung up after 2 of 4 bytes")
    with connect(address) as silent:
        started = time.monotonic()
        assert read_to_eof(silent) == b""
        assert time.monotonic() - started >= IDLE_TIMEOUT * 0.9
    wait_log(app, f"sent 0 of 4 bytes in {IDLE_TIMEOUT:g} s")
    with connect(address) as slow:
        slow.sendall(request(17)[:3])
        assert read_to_eof(slow) == b""
    wait_log(app, f"sent 3 of 4 bytes in {IDLE_TIMEOUT:g} s")
    assert len(log_lines(app, "remote signal connection from 127.0.0.1:")) == 5
    assert exchange(address, request(17)) == ACCEPTED
    app.handle.signal(17)
    app.wait_records("seventeen", 2)


def test_a_flood_of_connections_is_capped_and_the_runtime_serves_on(start_app):
    app = start_app(APP, remote_signals=LOOPBACK_ANY_PORT)
    address = app.handle.remote_signals
    pids = set(app.handle.pids())
    flood = [connect(address) for _ in range(200)]
    try:
        # Past the cap each newcomer closes the oldest idle one; the rest stay silent.
        for conn in flood:
            assert read_to_eof(conn) == b""
    finally:
        for conn in flood:
            conn.close()
    evicted = log_lines(app, "the oldest idle goes")
    silent = log_lines(app, "sent 0 of 4 bytes")
    assert evicted
    assert f"{MAX_CONNECTIONS} connections are open" in evicted[0]
    assert len(evicted) + len(silent) == 200  # one line for each
    assert len(silent) <= MAX_CONNECTIONS
    assert set(app.handle.pids()) == pids
    assert exchange(address, request(17)) == ACCEPTED
    app.wait_records("seventeen", 1)


def test_idle_connections_cannot_starve_a_valid_request(start_app):
    app = start_app(APP, remote_signals=LOOPBACK_ANY_PORT)
    address = app.handle.remote_signals
    idle = [connect(address) for _ in range(MAX_CONNECTIONS)]
    try:
        wait_for(lambda: len(socket_peers(app.handle.pid, address)) >= MAX_CONNECTIONS, 10,
                 "the idle connections to be accepted")  # fmt: skip
        # The table is full of peers that say nothing: the valid request still gets in,
        # and the oldest idle one makes room for it.
        assert exchange(address, request(17)) == ACCEPTED
        app.wait_records("seventeen", 1)
        assert read_to_eof(idle[0]) == b""
        assert log_lines(app, "the oldest idle goes")
    finally:
        for conn in idle:
            conn.close()


def socket_peers(pid: int, address: str) -> list[str]:
    """The established connections to ``address`` (HOST:PORT), from /proc/net/tcp."""
    port = int(address.rpartition(":")[2])
    return [
        line
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[1] == f"0100007F:{port:04X}" and line.split()[3] == "01"
    ]


def test_loopback_senders_are_always_allowed(start_app):
    app = start_app(APP, remote_signals=LOOPBACK_ANY_PORT, remote_allow=["10.0.0.0/8"])
    address = app.handle.remote_signals
    assert exchange(address, request(17)) == ACCEPTED  # loopback always may
    app.wait_records("seventeen", 1)


def test_a_refused_sender_gets_the_reject_answer_and_raises_nothing(start_app, monkeypatch):
    # Loopback is always allowed, so pretend the peer is elsewhere: the listener asks
    # `is_allowed` about every peer it accepts.
    from uwsgisig.runtime.master import listener

    monkeypatch.setattr(listener, "is_allowed", lambda host, networks: False)
    app = start_app(APP, remote_signals=LOOPBACK_ANY_PORT)
    address = app.handle.remote_signals
    answers = [exchange(address, request(17)) for _ in range(20)]
    assert answers == [REJECTED] * 20
    lines = wait_log(app, "not in the allowed networks")
    assert len(lines) < 20  # at most one line a second, with a count
    assert app.records("seventeen") == []


def test_the_node_answers_rejected_only_when_its_queue_is_full(start_app):
    app = start_app(APP, remote_signals=LOOPBACK_ANY_PORT, queue_size=1)
    address = app.handle.remote_signals
    assert exchange(address, request(18)) == ACCEPTED  # parks the only worker
    app.wait_records("eighteen", 1)
    assert exchange(address, request(NO_HANDLER)) == ACCEPTED  # held apart: not in the queue
    assert exchange(address, request(17)) == ACCEPTED  # queued: the queue is now full
    assert exchange(address, request(17)) == REJECTED
    with pytest.raises(ValueError, match=f"node {re.escape(address)} rejected signal 17"):
        Signal(17).send(remote=address)
    wait_log(app, "rejected: the queue is full", 2)
    app.release()
    app.wait_records("seventeen", 1)
    assert exchange(address, request(17)) == ACCEPTED
    app.wait_records("seventeen", 2)
    app.handle.signal(19)
    app.wait_records("nineteen", 1)
    assert len(app.records("seventeen")) == 2  # the rejected ones never ran
    assert app.handle.wait(NO_HANDLER, timeout=10) == NO_HANDLER


@pytest.mark.parametrize(
    "address", ["10.1.2.3:3031", "0.0.0.0:3031", "[::]:3031", "[fe80::1]:0", "example.com:3031"]
)
def test_a_non_loopback_address_is_refused_unless_allowed(address):
    with pytest.raises(ValueError, match=re.escape(repr(address))) as info:
        Runtime(None, remote_signals=address)
    assert "remote_signals_any=True" in str(info.value)
    runtime = Runtime(None, remote_signals=address, remote_signals_any=True)
    assert runtime.config.remote_signals == address


@pytest.mark.parametrize("address", ["127.0.0.1:0", "127.9.8.7:3031", "[::1]:0", "localhost:3031"])
def test_loopback_addresses_are_allowed(address):
    assert Runtime(None, remote_signals=address).config.remote_signals == address


@pytest.mark.parametrize("bad", ["127.0.0.1", "127.0.0.1:", ":3031", "127.0.0.1:70000", "x:-1"])
def test_a_malformed_address_is_refused(bad):
    with pytest.raises(ValueError, match="invalid remote signals address"):
        Runtime(None, remote_signals=bad)


def test_loopback_and_address_helpers():
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.255.0.1")
    assert is_loopback("::1")
    assert is_loopback("LOCALHOST")
    assert not is_loopback("128.0.0.1")
    assert not is_loopback("::")
    assert not is_loopback("localhost.example.com")
    assert parse_listen_address("[::1]:3031") == ("::1", 3031)
    assert parse_listen_address("0.0.0.0:0", allow_any=True) == ("0.0.0.0", 0)


def test_an_address_in_use_is_reported_by_start():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(OSError, match=f"cannot listen for remote signals on {address}"):
            Runtime(None, remote_signals=address).start()


def test_cli_refuses_a_non_loopback_address(capsys):
    code = main(["run", "app.py", "--remote-signals", "192.0.2.7:3031"])
    assert code == 2
    err = capsys.readouterr().err
    assert "'192.0.2.7:3031'" in err
    assert "--remote-signals-any" in err


def test_cli_listens_on_the_address_it_is_given(tmp_path):
    out = tmp_path / "out.txt"
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(f"""
        import os
        from uwsgisig import Signal

        @Signal(17).register_handler(target="worker")
        def seventeen(num):
            with open({str(out)!r}, "a") as file:
                file.write(f"{{os.getpid()}}\\n")
    """)
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "uwsgisig", "run", str(app), "--remote-signals", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        found = re.search(r"listening for remote signals on (127\.0\.0\.1:\d+)", line)
        assert found, line
        address = found.group(1)
        Signal(17).send(remote=address)
        wait_for(lambda: out.exists() and out.read_text().strip(), 15, "the handler to run")
        worker = int(out.read_text().split()[0])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert_all_gone({proc.pid, worker})
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("::ffff:10.1.2.3", True),  # an IPv4 peer on a dual-stack socket
        ("192.0.2.7", True),
        ("192.0.2.8", False),
        ("11.0.0.1", False),
        ("2001:db8::1", True),
        ("2001:db9::1", False),
        ("not an address", False),
    ],
)
def test_allowed_networks(host, allowed):
    networks = parse_networks(("10.0.0.0/8", "192.0.2.7", "2001:db8::/32"))
    assert is_allowed(host, networks) is allowed


def test_a_bad_network_is_refused_before_anything_starts(capsys):
    with pytest.raises(ValueError, match="invalid remote-allow 'ten/8': give an address"):
        Runtime(remote_signals=LOOPBACK_ANY_PORT, remote_allow=["ten/8"])
    assert main(["run", "app.py", "--remote-allow", "300.0.0.0/8"]) == 2
    assert "invalid remote-allow '300.0.0.0/8'" in capsys.readouterr().err
