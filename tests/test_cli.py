"""`uwsgisig run APP` and `python -m uwsgisig run APP`, as a user runs them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import assert_all_gone, wait_for

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uwsgisig", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_example_app_runs_and_stops_by_itself():
    result = run("run", "examples/hello.py", "--workers", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "worker 1 (pid" in out
    assert "worker 2 (pid" in out
    assert out.count("the first free worker was worker") == 3
    assert "all 6 handlers ran: stopping the runtime" in out
    assert "running 2 workers, 1 mules" in result.stderr


def test_sigint_stops_the_runtime_and_every_child(tmp_path):
    pids = tmp_path / "pids"
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(f"""
        import os
        import uwsgisig

        uwsgisig.Farm("pool", mules=[1, 2])

        @uwsgisig.postfork
        def report():
            with open({str(pids)!r}, "a") as file:
                file.write(f"{{os.getpid()}}\\n")
    """)
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "uwsgisig", "run", str(app), "--workers", "3", "--spooler"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # 3 workers, 2 mules, a spooler: the master logs once it forked them all.
        line = proc.stderr.readline()
        assert "running 3 workers, 2 mules, a spooler" in line
        wait_for(
            lambda: pids.exists() and len(pids.read_text().split()) == 6,
            15,
            "every child to run its post-fork hook",
        )
        children = {int(pid) for pid in pids.read_text().split()}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert len(children) == 6
    assert_all_gone(children)


def test_missing_app_file_is_an_error_naming_it():
    result = run("run", "no/such/app.py")
    assert result.returncode == 2
    assert "app file 'no/such/app.py' does not exist" in result.stderr


def test_target_naming_a_missing_process_fails_at_start(tmp_path):
    app = tmp_path / "bad.py"
    app.write_text(
        "from uwsgisig import Signal\nSignal(3).register_handler(target='mule2')(print)\n"
    )
    result = run("run", str(app), "--mules", "1")
    assert result.returncode == 2
    assert "signal 3 targets 'mule2', which names no process of this runtime" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "invalid workers 0"),
        (["--farm", "images"], "invalid farm 'images'"),
        (["--farm", "bad name:1"], "invalid farm name 'bad name'"),
        (["--attach", "-1"], "invalid attach -1"),
        (["--", "no-such-server-command"], "command 'no-such-server-command' not found on PATH"),
        (["--"], "nothing after '--': give the COMMAND to run"),
    ],
)
def test_bad_options_are_errors_naming_the_value(tmp_path, args, message):
    app = tmp_path / "empty.py"
    app.write_text("")
    result = run("run", str(app), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_the_web_example_runs_under_gunicorn_and_stops_by_itself():
    with socket.socket() as probe:  # the README uses 8000; any free port will do here
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "uwsgisig", "run", "examples/web.py", "--",
         str(Path(sys.executable).parent / "gunicorn"), "-c", "python:uwsgisig.gunicorn",
         "-w", "2", "-b", f"127.0.0.1:{port}", "--chdir", "examples", "web:app"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "WEB_EXAMPLE_PORT": str(port)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "GET /: workers ['1', '2'] have answered" in out
    assert "worker 1 (pid" in out
    assert "worker 2 (pid" in out
    assert "mule 1 resized photo.jpg" in out
    assert "all 3 handlers ran: stopping the runtime and gunicorn" in out


def test_a_command_that_ignores_sigterm_is_killed_after_the_stop_timeout(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("")
    started = tmp_path / "started"
    stubborn = (
        "import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(started)!r}).write_text('x'); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "uwsgisig", "run", str(app), "--workers", "1",
         "--stop-timeout", "1", "--", sys.executable, "-c", stubborn],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    everything = {proc.pid}
    try:
        wait_for(started.exists, 20, "the command to start")
        everything |= _children(proc.pid)
        command_pids = {pid for pid in everything if _cmdline(pid).split(" ")[1:2] == ["-c"]}
        assert len(command_pids) == 1
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "did not stop: killing it" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert_all_gone(everything)


def _children(pid: int) -> set[int]:
    from tests.conftest import children_of

    return children_of(pid)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except FileNotFoundError:
        return ""
