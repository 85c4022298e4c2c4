"""The stats server: uWSGI's JSON shape, true values, HTTP, and the real uwsgitop reading it."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(90)

# uWSGI 2.0.31's keys (measured with --stats), with their JSON types.
TOP = {
    "version": str, "listen_queue": int, "listen_queue_errors": int, "signal_queue": int,
    "load": int, "pid": int, "uid": int, "gid": int, "cwd": str, "locks": list,
    "sockets": list, "workers": list,
}  # fmt: skip
WORKER = {
    "id": int, "pid": int, "accepting": int, "requests": int, "delta_requests": int,
    "exceptions": int, "harakiri_count": int, "signals": int, "signal_queue": int,
    "status": str, "rss": int, "vsz": int, "running_time": int, "last_spawn": int,
    "respawn_count": int, "tx": int, "avg_rt": int, "apps": list, "cores": list,
}  # fmt: skip
# What uWSGI lacks.
OURS = {
    "mules": list, "spooler": (dict, type(None)), "timers": list, "crons": list,
    "signal_counts": dict, "signals_raised": int, "signals_held": int, "signals_dropped": int,
    "paused": bool,
}  # fmt: skip


def check_shape(document: dict, shape: dict) -> None:
    for key, kind in shape.items():
        assert key in document, f"missing key {key!r}"
        assert isinstance(document[key], kind), f"{key!r} is {type(document[key]).__name__}"


def read_stats(path: Path) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(path))
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    return json.loads(data)


APP = """
from uwsgisig import scheduling, spooler

Farm("images", mules=[1])

@Signal(5).register_handler(target="worker1")
def slow(num):
    record("slow", num)
    block()

@Signal(6).register_handler(target="worker")
def quick(num):
    record("quick", num)

@scheduling.register_timer(30, target="worker")
def tick(num):
    pass

@scheduling.register_cron(minute=-1, target="worker")
def every_minute(num):
    pass

@spooler.handler
def job(job):
    pass
"""


def test_the_stats_have_uwsgis_shape_and_true_values(start_app, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    address = tmp_path / "stats.sock"
    app = start_app(APP, workers=2, stats=address, spooler=spool, spooler_frequency=60)
    app.handle.signal(5)
    app.wait_records("slow", 1)
    for _ in range(3):
        app.handle.signal(6)
    app.wait_records("quick", 3)
    app.handle.signal(77)  # nobody takes it: held
    by_who = app.pids_by_who()

    def settled() -> dict | None:
        # 5 raised (5, 6, 6, 6, 77); 5 taken by workers: 5, three 6s, and the
        # all -1 cron's first run, which comes from the master, not a raise.
        stats = read_stats(address)
        taken = sum(worker["signals"] for worker in stats["workers"])
        return stats if stats["signals_raised"] == 5 and taken == 5 else None

    stats = wait_for(settled, 20, "the master to count five raises and five runs")
    check_shape(stats, {**TOP, **OURS})
    assert stats["pid"] == app.handle.pid
    assert stats["cwd"] == os.getcwd()
    workers = {worker["id"]: worker for worker in stats["workers"]}
    for worker in workers.values():
        check_shape(worker, WORKER)
    assert workers[1]["pid"] == by_who["worker1"]
    assert workers[1]["status"] == "sig5"  # uWSGI's word for a worker in a signal handler
    assert workers[2]["status"] == "idle"
    assert workers[1]["rss"] > 0
    assert workers[1]["vsz"] >= workers[1]["rss"]
    assert workers[1]["respawn_count"] == 1
    assert abs(workers[1]["last_spawn"] - time.time()) < 60
    assert stats["mules"][0]["farms"] == ["images"]
    assert stats["spooler"]["pid"] == by_who["spooler"]
    assert stats["spooler"]["jobs_queued"] == 0
    assert [(t["signal"], t["period"]) for t in stats["timers"]] == [(0, 30.0)]
    [cron] = stats["crons"]
    assert (cron["signal"], cron["spec"]) == (1, "* * * * *")
    assert cron["next"] is not None  # the next whole minute, in local time
    assert stats["signal_counts"]["6"] == {"raised": 3, "held": 0}
    assert stats["signal_counts"]["77"] == {"raised": 1, "held": 1}
    os.kill(by_who["worker2"], signal.SIGKILL)
    wait_for(
        lambda: {w["id"]: w for w in read_stats(address)["workers"]}[2]["respawn_count"] == 2,
        20,
        "worker 2's respawn to be counted",
    )
    app.release()


def test_a_paused_runtime_says_so(start_app, tmp_path):
    address = tmp_path / "stats.sock"
    app = start_app("", workers=1, stats=address)
    os.kill(app.handle.pid, signal.SIGTSTP)
    wait_for(lambda: read_stats(address)["paused"], 20, "the pause")
    assert read_stats(address)["workers"][0]["status"] == "pause"


def test_stats_over_http_on_a_loopback_port(start_app):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = start_app("", workers=2, stats=f"127.0.0.1:{port}", stats_http=True)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        assert response.headers["Content-Type"] == "application/json"
        stats = json.loads(response.read())
    check_shape(stats, TOP)
    assert stats["pid"] == app.handle.pid
    assert len(stats["workers"]) == 2


def test_a_stats_address_that_is_not_loopback_is_refused(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "uwsgisig", "run", str(app), "--stats", "0.0.0.0:0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "0.0.0.0" in result.stderr
    assert "loopback" in result.stderr


def test_the_real_uwsgitop_reads_it(start_app, tmp_path):
    address = tmp_path / "stats.sock"
    app = start_app(APP, workers=2, stats=address)
    app.handle.signal(5)
    app.wait_records("slow", 1)
    uwsgitop = Path(sys.executable).parent / "uwsgitop"
    pid, fd = pty.fork()
    if pid == 0:  # the child: uwsgitop on a terminal of its own
        os.environ["TERM"] = "xterm"
        os.execv(sys.executable, [sys.executable, str(uwsgitop), str(address)])
    screen = b""
    try:
        deadline = time.monotonic() + 20
        while b"sig5" not in screen and time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                try:
                    screen += os.read(fd, 65536)
                except OSError:
                    break
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    text = screen.decode(errors="replace")
    assert "uwsgi-0.1.0" in text  # its header: "uwsgi" + "-" + our version
    assert f"masterpid: {app.handle.pid}" in text
    assert "sig5" in text  # worker 1, in the handler of signal 5
    app.release()
