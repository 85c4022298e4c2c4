"""Benchmark RPC calls: in the calling process, and over the uwsgi protocol to three servers.

Local: ``uwsgisig.rpc.call("echo", b"x")`` against calling the function itself.

Remote: one call is one TCP connection to 127.0.0.1, as uWSGI's own client
makes it: the request (modifier1 173, the name and one argument), the answer,
the close. The same client (``uwsgisig.rpc.rpc``) calls, in turn:

* uwsgisig: ``Runtime(app, workers=2, rpc_socket="127.0.0.1:0")``, whose
  workers answer in their signal loops;
* uWSGI (the ``uwsgi`` next to this Python): ``--master --processes 2
  --socket``, the same function registered with ``uwsgi.register_rpc``;
* the floor: a forked Python loop that accepts, reads the request, answers
  and closes, with nothing else to do.

Run by hand: ``python bench/bench_rpc.py`` (``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import start_child, stop_children, table

from uwsgisig import Runtime
from uwsgisig.rpc import call, register_rpc, rpc
from uwsgisig.runtime.wire.rpc import pack_response, parse_array

APP = """
import os

{import_line}


def echo(arg):
    return arg


{register}
"""
UWSGI_READY_TIMEOUT = 20.0


def echo(arg: bytes) -> bytes:
    return arg


def local_rates(n: int) -> tuple[float, float]:
    """Calls per second: the function itself, and through `call`."""
    register_rpc("echo")(echo)
    started = time.perf_counter()
    for _ in range(n):
        echo(b"x")
    direct = n / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(n):
        call("echo", b"x")
    return direct, n / (time.perf_counter() - started)


def remote_times(address: str, n: int) -> list[float]:
    """Seconds of each of ``n`` calls of ``echo`` at ``address``."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        answer = rpc(address, "echo", b"x")
        times.append(time.perf_counter() - started)
        if answer != b"x":
            raise RuntimeError(f"{address} answered {answer!r}")
    return times


def _floor_server(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        with conn:
            header = conn.recv(4)
            size = int.from_bytes(header[1:3], "little")
            body = b""
            while len(body) < size:
                body += conn.recv(size - len(body))
            conn.sendall(pack_response(parse_array(body)[1]))


def start_floor() -> str:
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    try:
        start_child(_floor_server, listener)
        host, port = listener.getsockname()[:2]
        return f"{host}:{port}"
    finally:
        listener.close()


def start_uwsgi(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    app = directory / "uwsgi_app.py"
    app.write_text(
        APP.format(import_line="import uwsgi", register='uwsgi.register_rpc("echo", echo)')
    )
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    uwsgi = Path(sys.executable).parent / "uwsgi"
    command = [
        str(uwsgi if uwsgi.exists() else "uwsgi"),
        "--master", "--processes", "2", "--socket", f"127.0.0.1:{port}",
        "--wsgi-file", str(app), "--logto", str(directory / "uwsgi.log"),
    ]  # fmt: skip
    if sys.prefix != sys.base_prefix:
        command += ["--home", sys.prefix]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + UWSGI_READY_TIMEOUT
    while rpc_or_none(address) != b"x":
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"uWSGI did not answer on {address}")
        time.sleep(0.05)
    return process, address


def rpc_or_none(address: str) -> bytes | None:
    try:
        return rpc(address, "echo", b"x")
    except OSError:
        return None


def stop_uwsgi(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGINT)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(15)


def row(name: str, times: list[float], floor: float) -> list[str]:
    ordered = sorted(times)
    p50 = statistics.median(ordered)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    rate = len(times) / sum(times)
    return [name, f"{rate:,.0f}", f"{p50 * 1e6:,.0f}", f"{p99 * 1e6:,.0f}", f"{floor / rate:.2f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls: a noisy estimate")
    args = parser.parse_args()
    local_n, remote_n, rounds = (100_000, 500, 1) if args.quick else (1_000_000, 3_000, 3)

    direct, through_call = local_rates(local_n)
    print(f"local, {local_n:,} calls: the function itself {direct:,.0f}/s, "
          f"call() {through_call:,.0f}/s ({direct / through_call:.1f}x slower)\n")  # fmt: skip

    measured: dict[str, list[float]] = {"uwsgisig": [], "uWSGI 2.0.31": [], "floor": []}
    with tempfile.TemporaryDirectory(prefix="uwsgisig-bench-rpc-") as directory:
        app = Path(directory) / "uwsgisig_app.py"
        app.write_text(
            APP.format(
                import_line="from uwsgisig.rpc import register_rpc",
                register='register_rpc("echo")(echo)',
            )
        )
        uwsgi, uwsgi_address = start_uwsgi(Path(directory))
        try:
            floor_address = start_floor()
            runtime = Runtime(
                str(app),
                workers=2,
                rpc_socket="127.0.0.1:0",
                log_file=Path(directory) / "runtime.log",
            )
            with runtime.start() as handle:
                ours = handle.rpc_socket
                assert ours is not None
                servers: list[tuple[str, Callable[[], list[float]]]] = [
                    ("uwsgisig", lambda: remote_times(ours, remote_n)),
                    ("uWSGI 2.0.31", lambda: remote_times(uwsgi_address, remote_n)),
                    ("floor", lambda: remote_times(floor_address, remote_n)),
                ]
                for _ in range(rounds):  # the servers take turns, round after round
                    for name, measure in servers:
                        measured[name] += measure()
        finally:
            stop_children()
            stop_uwsgi(uwsgi)
    floor_rate = len(measured["floor"]) / sum(measured["floor"])
    print(f"remote, {remote_n:,} calls x {rounds} rounds, one TCP connection each:")
    print(
        table(
            ["server", "calls/s", "p50 us", "p99 us", "floor / server"],
            [row(name, times, floor_rate) for name, times in measured.items()],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
