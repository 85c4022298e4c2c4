"""Real servers for the interoperability tests: a uWSGI and a ``uwsgisig run``, as subprocesses.

Both bind port 0 and report the port they got in their log, so no test guesses
a free port. `Server.stop` stops the master with SIGINT and asserts that every
process the server started is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import assert_all_gone, children_of, wait_for

APPS = Path(__file__).parent / "apps"
START_TIMEOUT = 20.0  # seconds, for a server to bind and fork
STOP_TIMEOUT = 15.0

_UWSGI_BOUND = re.compile(r"uwsgi socket (\d+) bound to TCP address 127\.0\.0\.1:(\d+)")
_UWSGISIG_BOUND = re.compile(r"listening for remote signals on (127\.0\.0\.1:\d+)")


def uwsgi_binary() -> str:
    """The ``uwsgi`` command next to this Python (``pip install -e ".[test]"`` builds it)."""
    beside = Path(sys.executable).parent / "uwsgi"
    found = str(beside) if beside.exists() else shutil.which("uwsgi")
    if found is None:
        pytest.fail('no uwsgi command: install the test extras, pip install -e ".[test]"')
    return found


class Server:
    """A server subprocess, its log, and every pid it was seen to own."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self.pids: set[int] = {process.pid}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, pattern: re.Pattern[str], count: int = 1) -> list[re.Match[str]]:
        """Wait until ``pattern`` matches ``count`` times in the log; return the matches."""

        def found() -> list[re.Match[str]] | None:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with {self.process.returncode}:\n{self.log_text()}")
            matches = list(pattern.finditer(self.log_text()))
            return matches if len(matches) >= count else None

        return wait_for(found, START_TIMEOUT, f"{pattern.pattern!r} in {self.log}")  # type: ignore[return-value]

    def stop(self, more_pids: Sequence[int] = ()) -> None:
        """SIGINT the master, wait for it, and assert that none of its processes survives."""
        self.pids.update(children_of(self.process.pid))
        self.pids.update(more_pids)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
            pytest.fail(f"server {self.process.pid} ignored SIGINT:\n{self.log_text()}")
        assert_all_gone(self.pids)


def start_uwsgi(app: Path, workdir: Path, args: Sequence[str], env: dict[str, str]) -> Server:
    """Start ``uwsgi --master`` on ``app`` with ``args``, logging into ``workdir``."""
    log = workdir / "uwsgi.log"
    command = [
        uwsgi_binary(),
        "--master",
        "--wsgi-file",
        str(app),
        "--pythonpath",
        str(app.parent),  # as `uwsgisig run` does: the app's own modules beside it
        "--logto",
        str(log),
        "--die-on-term",
        *args,
    ]
    if sys.prefix != sys.base_prefix:
        command += ["--home", sys.prefix]  # the virtualenv that has uwsgisig
    process = subprocess.Popen(command, env={**os.environ, **env}, cwd=workdir)
    return Server(process, log)


def uwsgi_ports(server: Server, sockets: int) -> list[int]:
    """The ports of the first ``sockets`` sockets of a uWSGI started on 127.0.0.1:0."""
    matches = server.wait_log(_UWSGI_BOUND, sockets)
    return [int(match.group(2)) for match in sorted(matches, key=lambda m: int(m.group(1)))]


def start_uwsgisig(app: Path, workdir: Path, args: Sequence[str], env: dict[str, str]) -> Server:
    """Start ``uwsgisig run`` on ``app`` with ``args``, logging into ``workdir``."""
    log = workdir / "uwsgisig.log"
    command = [sys.executable, "-m", "uwsgisig", "run", str(app), "--log-file", str(log), *args]
    process = subprocess.Popen(command, env={**os.environ, **env}, cwd=workdir)
    return Server(process, log)


def uwsgisig_remote_address(server: Server) -> str:
    """The HOST:PORT of a ``uwsgisig run --remote-signals 127.0.0.1:0``."""
    return server.wait_log(_UWSGISIG_BOUND)[0].group(1)
