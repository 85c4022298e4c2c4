"""RPC: functions registered at import run in the calling process; other nodes reach
the workers through the RPC socket, where an idle worker answers; uWSGI's packets
(modifier1 173) both ways with a real uWSGI; the compat module refuses what uWSGI
on Python 3 refuses."""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import wait_for
from tests.servers import APPS, Server, start_uwsgi, uwsgi_ports
from uwsgisig import RpcError, RpcNotFoundError, Runtime, compat
from uwsgisig.rpc import call, get_rpc_list, make_rpc_call, register_rpc, rpc
from uwsgisig.runtime.wire.rpc import (
    MAX_ARGS,
    RpcPacketError,
    pack_request,
    pack_response,
    parse_array,
    parse_header,
)

pytestmark = pytest.mark.timeout(90)

ACCEPTED = b"\xff\x00\x00\x01"

RPC_APP = """
import time
from uwsgisig.rpc import register_rpc, make_rpc_call, get_rpc_list, call

@register_rpc()
def where(*args):
    record("where", *(arg.decode() for arg in args))
    return who() + " " + " ".join(arg.decode() for arg in args)

@register_rpc("park")
def park_rpc():
    record("parked")
    block()
    return b"released"

@register_rpc()
def big():
    return b"z" * 100_000

@register_rpc()
def nothing():
    return None

@register_rpc()
def fails():
    raise RuntimeError("the RPC function failed")

@Signal(1).register_handler(target="worker1")
def local_call(num):
    record("local", make_rpc_call("where", args=["from", 1]))

@Signal(3).register_handler(target="worker1")
def late_registration(num):
    register_rpc("only_here")(lambda: b"worker1 only")
    record("registered", ",".join(get_rpc_list()))

@Signal(4).register_handler(target="worker2")
def call_missing(num):
    try:
        call("only_here")
    except LookupError as exc:
        record("missing", type(exc).__name__)

@Signal(5).register_handler(target="worker1")
def call_late(num):
    record("late", call("only_here").decode())

@Signal(6).register_handler(target="worker1")
def park_signal(num):
    record("parked")
    block()

@Signal(7).register_handler(target="workers")
def park_everyone(num):
    record("parked")
    block()

@Signal(9).register_handler(target="workers")
def nine(num):
    record("nine")
"""

MULE_APP = """
@Signal(2).register_handler(target="mule1")
def local_in_mule(num):
    record("mule", call("where", b"x").decode())
"""


# ---------------------------------------------------------------- packets


@given(
    name=st.binary(min_size=1, max_size=50),
    args=st.lists(st.binary(max_size=200), max_size=20),
)
def test_a_request_parses_back_to_its_name_and_arguments(name, args):
    packet = pack_request(name, args)
    size, modifier2 = parse_header(packet[:4])
    assert packet[0] == 173
    assert (size, modifier2) == (len(packet) - 4, 0)
    assert parse_array(packet[4:]) == [name, *args]


def test_a_request_is_uwsgis_array_byte_for_byte():
    assert pack_request(b"hi", [b"a", b""]) == (
        b"\xad\x09\x00\x00" + b"\x02\x00hi" + b"\x01\x00a" + b"\x00\x00"
    )


def test_a_request_over_one_packet_or_with_too_many_arguments_is_refused():
    with pytest.raises(ValueError, match="at most 65535"):
        pack_request(b"f", [b"x" * 70000])
    with pytest.raises(ValueError, match=f"at most {MAX_ARGS}"):
        pack_request(b"f", [b""] * (MAX_ARGS + 1))


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "names no function"),
        (b"\x05", "cut short"),
        (b"\x05\x00ab", "runs past"),
    ],
)
def test_a_malformed_array_is_refused(body, why):
    with pytest.raises(RpcPacketError, match=why):
        parse_array(body)


def test_answers_short_long_and_raw():
    assert pack_response(b"ok") == b"\xad\x02\x00\x00ok"
    assert pack_response(b"ok", 1) == b"ok"
    long = pack_response(b"q" * 70000)
    size, modifier2 = parse_header(long[:4])
    assert modifier2 == 5
    key_size = struct.unpack_from("<H", long, 4)[0]
    assert long[6 : 6 + key_size] == b"CONTENT_LENGTH"
    assert long[4 + size :] == b"q" * 70000


# ---------------------------------------------------------------- in one process


def test_outside_a_runtime_a_registered_function_runs_here():
    register_rpc("double")(lambda arg: arg * 2)
    assert call("double", "ab") == b"abab"
    assert make_rpc_call("double", args=[21]) == "2121"
    assert get_rpc_list() == ["double"]


def test_calling_an_unknown_function_names_it_and_the_known_ones():
    register_rpc("known")(lambda: b"x")
    with pytest.raises(RpcNotFoundError, match=r"no RPC function 'unknown'.*'known'"):
        call("unknown")


@pytest.mark.parametrize(
    ("name", "why"), [("", "non-empty str"), (b"bytes", "non-empty str"), ("n" * 255, "254")]
)
def test_a_bad_name_is_refused(name, why):
    with pytest.raises(RpcError, match=why):
        register_rpc(name)(lambda: b"x")


def test_a_result_that_is_not_bytes_str_or_none_is_an_error_named():
    register_rpc("number")(lambda: 42)
    assert call("number") is None  # logged, as uWSGI logs a failing function
    register_rpc("text")(lambda: "été")
    assert call("text") == "été".encode()


# ---------------------------------------------------------------- in a runtime


def test_a_function_registered_at_import_runs_in_the_calling_worker_or_mule(start_app):
    app = start_app(RPC_APP + MULE_APP, workers=2, mules=1)
    app.handle.signal(1)
    app.handle.signal(2)
    local = app.wait_records("local", 1)[0]
    mule = app.wait_records("mule", 1)[0]
    pids = app.pids_by_who()
    # The function ran in the process that called it, and said so.
    assert local[1:3] == ["worker1", "from"]
    assert int(local[-1]) == pids["worker1"]
    assert mule[1] == "mule1"
    assert int(mule[-1]) == pids["mule1"]
    wheres = app.records("where")
    assert sorted(int(words[-1]) for words in wheres) == sorted([pids["worker1"], pids["mule1"]])


def test_a_function_registered_after_fork_lives_only_in_its_process(start_app):
    app = start_app(RPC_APP, workers=2)
    app.handle.signal(3)
    registered = app.wait_records("registered", 1)[0]
    assert "only_here" in registered[1].split(",")
    app.handle.signal(4)
    assert app.wait_records("missing", 1)[0][1] == "RpcNotFoundError"
    app.handle.signal(5)
    assert app.wait_records("late", 1)[0][1:3] == ["worker1", "only"]


def test_other_nodes_reach_a_worker_through_the_rpc_socket(start_app):
    app = start_app(RPC_APP, workers=2, rpc_socket="127.0.0.1:0")
    address = app.handle.rpc_socket
    assert address is not None
    answer = rpc(address, "where", "a", b"b")
    assert answer is not None
    assert answer.decode().split()[1:] == ["a", "b"]
    assert answer.decode().split()[0] in {"worker1", "worker2"}
    assert rpc(address, "big") == b"z" * 100_000  # past one packet: uWSGI's long answer
    assert rpc(address, "nothing") is None
    assert rpc(address, "no_such_function") is None
    assert rpc(address, "fails") is None
    assert "RPC function 'fails' raised" in app.log.read_text()
    assert make_rpc_call("where", args=["c"], remote=address).split()[1:] == ["c"]


def test_a_busy_worker_takes_no_request_and_the_idle_one_answers(start_app):
    app = start_app(RPC_APP, workers=2, rpc_socket="127.0.0.1:0")
    app.handle.signal(6)  # worker1 parks in a handler
    app.wait_records("parked", 1)
    pids = app.pids_by_who()
    for _ in range(5):
        answer = rpc(app.handle.rpc_socket, "where", "busy")
        assert answer is not None
        assert answer.split()[0] == b"worker2"
    assert {int(words[-1]) for words in app.records("where")} == {pids["worker2"]}
    app.release()


def test_with_every_worker_busy_a_request_waits_for_one_to_be_free(start_app):
    app = start_app(RPC_APP, workers=2, rpc_socket="127.0.0.1:0")
    app.handle.signal(7)
    app.wait_records("parked", 2)
    answers: list[bytes | None] = []
    caller = threading.Thread(target=lambda: answers.append(rpc(app.handle.rpc_socket, "where")))
    caller.start()
    # The request is in the backlog and nobody answers while the worker is parked:
    # the worker records "where" only once it runs the function.
    caller.join(0.5)
    assert caller.is_alive()
    assert app.records("where") == []
    app.release()
    caller.join(30)
    assert answers
    assert answers[0] is not None
    assert answers[0].startswith(b"worker")


def test_an_rpc_call_parks_its_worker_and_signals_go_to_the_other(start_app):
    app = start_app(RPC_APP, workers=2, rpc_socket="127.0.0.1:0")
    answers: list[bytes | None] = []
    caller = threading.Thread(target=lambda: answers.append(rpc(app.handle.rpc_socket, "park")))
    caller.start()
    parked = app.wait_records("parked", 1)[0]
    app.handle.signal(9)  # every worker: the idle one runs it now
    nine = app.wait_records("nine", 1)
    assert int(nine[0][-1]) != int(parked[-1])
    app.release()
    caller.join(30)
    assert answers == [b"released"]
    app.wait_records("nine", 2)  # the parked worker runs it once free


def test_the_rpc_socket_takes_remote_signals_too(start_app):
    app = start_app(RPC_APP, workers=2, rpc_socket="127.0.0.1:0")
    host, _, port = app.handle.rpc_socket.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(bytes([110, 0, 0, 9]))
        assert conn.recv(4) == ACCEPTED
    app.wait_records("nine", 2)


def test_a_silent_or_garbled_peer_is_logged_and_the_worker_serves_on(start_app):
    app = start_app(RPC_APP, workers=2, rpc_socket="127.0.0.1:0")
    host, _, port = app.handle.rpc_socket.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(bytes([7, 0, 0, 0]))
        assert conn.recv(4) == b""
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(bytes([173, 3, 0, 0]) + b"\x09\x00a")
        assert conn.recv(4) == b""
    wait_for(lambda: app.log.read_text().count("RPC request from") >= 2, 10, "two log lines")
    assert rpc(app.handle.rpc_socket, "where", "after") is not None


def test_a_host_outside_the_allowed_networks_calls_nothing(start_app, monkeypatch):
    # Loopback is always allowed: pretend the peer is elsewhere, in the forked workers.
    from uwsgisig.runtime.child import rpc as rpc_server

    monkeypatch.setattr(rpc_server, "is_allowed", lambda host, networks: False)
    app = start_app(RPC_APP, workers=2, rpc_socket="127.0.0.1:0")
    host, _, port = app.handle.rpc_socket.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(pack_request(b"where", [b"x"]))
        assert conn.recv(4) == b"\xff\x00\x00\x00"  # uWSGI's reject
    assert rpc(app.handle.rpc_socket, "where", "y") is None
    assert app.records("where") == []
    wait_for(lambda: "not in the allowed networks" in app.log.read_text(), 10, "a log line")


def test_a_non_loopback_rpc_socket_needs_an_opt_in():
    with pytest.raises(ValueError, match=r"RPC requests.*--rpc-socket-any"):
        Runtime(rpc_socket="0.0.0.0:3031")
    with pytest.raises(ValueError, match="invalid RPC requests address 'nope'"):
        Runtime(rpc_socket="nope")


def test_a_node_that_cannot_be_reached_is_an_oserror_naming_it():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(OSError, match=f"node 127.0.0.1:{port}"):
            rpc(f"127.0.0.1:{port}", "where")


# ---------------------------------------------------------------- uWSGI's module


def test_compat_refuses_what_uwsgi_on_python_3_refuses():
    uwsgi = compat.install()
    try:
        assert uwsgi.register_rpc("shout", lambda arg: arg.upper()) is True
        with pytest.raises(TypeError):
            uwsgi.register_rpc(b"bytes name", lambda: b"")
        with pytest.raises(ValueError, match="unable to call rpc function"):
            uwsgi.call("shout", b"a")  # a str name
        with pytest.raises(ValueError, match="unable to call rpc function"):
            uwsgi.call(b"shout", "a")  # a str argument
        with pytest.raises(ValueError, match="unable to call rpc function"):
            uwsgi.rpc("", "shout")
        assert uwsgi.call(b"shout", b"a") == b"A"
        assert uwsgi.rpc(b"", b"shout", b"b") == b"B"  # an empty node: here
        assert uwsgi.call(b"missing") is None
        assert uwsgi.rpc_list() == (b"shout",)
        uwsgi.register_rpc("text", lambda: "not bytes")
        assert uwsgi.call(b"text") is None  # uWSGI keeps bytes results only
        with pytest.raises(ValueError, match="unable to register rpc function"):
            uwsgi.register_rpc("n" * 300, lambda: b"")
    finally:
        compat.uninstall()


def test_compat_rpc_to_a_node_that_cannot_be_reached_is_none_as_in_uwsgi():
    uwsgi = compat.install()
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            assert uwsgi.rpc(f"127.0.0.1:{port}".encode(), b"x") is None
    finally:
        compat.uninstall()


# ---------------------------------------------------------------- a real uWSGI, both ways


@pytest.fixture(scope="module")
def uwsgi_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, str]]:
    workdir = tmp_path_factory.mktemp("uwsgi-rpc-node")
    server = start_uwsgi(
        APPS / "uwsgi_node.py",
        workdir,
        ["--processes", "1", "--socket", "127.0.0.1:0", "--http-socket", "127.0.0.1:0"],
        {"UWSGISIG_TEST_OUT": str(workdir / "out.txt")},
    )
    try:
        socket_port, http_port = uwsgi_ports(server, 2)
        yield server, f"127.0.0.1:{socket_port}", f"127.0.0.1:{http_port}"
    finally:
        server.stop()


def ask_uwsgi_to_call(http: str, to: str, name: str, *args: str) -> str:
    query = urlencode([("to", to), ("name", name), *(("arg", arg) for arg in args)])
    with urllib.request.urlopen(f"http://{http}/rpc?{query}", timeout=15) as reply:
        return reply.read().decode()


def test_uwsgisig_calls_a_function_of_a_real_uwsgi_node(uwsgi_node):
    server, address, _ = uwsgi_node
    answer = rpc(address, "shout", "ab", b"cd")
    assert answer is not None
    assert answer.split()[:2] == [b"AB,CD", b"uwsgi"]
    assert int(answer.split()[2]) in server.pids | set(server_children(server))
    assert rpc(address, "big") == b"y" * 100_000
    assert rpc(address, "nothing") is None
    assert rpc(address, "missing") is None


def test_a_real_uwsgi_node_calls_a_function_of_a_runtime(uwsgi_node, start_app):
    _, _, http = uwsgi_node
    app = start_app(RPC_APP, workers=2, rpc_socket="127.0.0.1:0")
    to = app.handle.rpc_socket
    said = ask_uwsgi_to_call(http, to, "where", "from", "uwsgi")
    assert said.startswith("b'worker")
    assert said.endswith(" from uwsgi'")
    assert ask_uwsgi_to_call(http, to, "big") == repr(b"z" * 100_000)
    assert ask_uwsgi_to_call(http, to, "nothing") == "None"
    assert ask_uwsgi_to_call(http, to, "no_such_function") == "None"


def server_children(server: Server) -> list[int]:
    from tests.conftest import children_of

    return list(children_of(server.process.pid))


def test_rpc_and_locks_under_a_real_uwsgi_through_the_api(tmp_path: Path):
    server = start_uwsgi(
        APPS / "api_under_uwsgi.py",
        tmp_path,
        ["--processes", "1", "--locks", "2", "--http-socket", "127.0.0.1:0"],
        {},
    )
    try:
        (http_port,) = uwsgi_ports(server, 1)
        said = {}
        for path in ("/rpc", "/locks"):
            url = f"http://127.0.0.1:{http_port}{path}"
            with urllib.request.urlopen(url, timeout=15) as reply:
                said[path] = reply.read().decode()
    finally:
        server.stop()
    assert said["/rpc"] == "hello abc|hello x|['hello']|RpcNotFoundError"
    assert said["/locks"] == "False|True|False|LockNumberError"


def test_many_callers_at_once_are_all_answered_by_the_workers(start_app):
    app = start_app(RPC_APP, workers=2, rpc_socket="127.0.0.1:0")
    address = app.handle.rpc_socket
    answers: list[bytes | None] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        for i in range(50):
            answer = rpc(address, "where", f"{n}-{i}")
            with lock:
                answers.append(answer)

    callers = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(60)
    assert len(answers) == 200
    assert all(answer is not None for answer in answers)
    served = {answer.split()[0] for answer in answers if answer is not None}
    assert served <= {b"worker1", b"worker2"}
    got = sorted(answer.split()[1].decode() for answer in answers if answer is not None)
    assert got == sorted(f"{n}-{i}" for n in range(4) for i in range(50))  # each once


def test_a_worker_killed_in_the_middle_of_a_call_fails_that_call_alone(start_app):
    app = start_app(RPC_APP, workers=2, rpc_socket="127.0.0.1:0")
    address = app.handle.rpc_socket
    results: list[object] = []

    def parked_call() -> None:
        try:
            results.append(rpc(address, "park"))
        except OSError as exc:
            results.append(exc)

    caller = threading.Thread(target=parked_call)
    caller.start()
    parked = app.wait_records("parked", 1)[0]
    os.kill(int(parked[-1]), signal.SIGKILL)
    caller.join(30)
    # The connection closed without an answer: None, as uWSGI's client says, never a hang.
    assert not caller.is_alive()
    assert len(results) == 1
    assert results[0] is None or isinstance(results[0], OSError)
    answers = {rpc(address, "where", "after") for _ in range(20)}  # the others, and the new one
    assert None not in answers
    wait_for(
        lambda: len({i.pid for i in app.handle.processes() if i.role == "worker" and i.pid}) == 2,
        20,
        "the killed worker to be replaced",
    )
