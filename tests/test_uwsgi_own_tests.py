"""uWSGI's own example apps, unchanged, under ``uwsgisig run --uwsgi-compat`` and under a
real uWSGI: the lines they print are the same.

``tests/decoratortest.py`` and ``tests/mulefunc.py`` come from the source release of the
uWSGI that the test extra installs (``pip download`` finds it in pip's cache or on the
package index). ``decoratortest`` imports ``uwsgicc`` (uWSGI's control-center web app) only
to serve it: a stand-in module takes its place, and ``uwsgi.c`` (which it spools as a body)
is the release's ``core/uwsgi.c``.

Both servers, measured on uWSGI 2.0.31 with Python 3.11:

- ``decoratortest`` stops at its line 138: on Python 3, ``uwsgi.call('helloworld')`` (a str
  name) raises ``ValueError: unable to call rpc function``. The server logs it and goes on
  with what the module registered before: signals 0-4 and 100, the timers, the post-fork
  chain, whose second hook waits for signal 100 in every worker, and its threads.
- ``mulefunc``'s view sends to mule 0, to mule 2, then to the farm ``'topogigio'`` by a str
  name, which uWSGI on Python 3 refuses (``ValueError: invalid mule``): the response is a
  500, and the first two calls have run in the mules.

uWSGI 2.0.31 also prints ``SystemError: error waiting for signal`` when a timer signal
reaches a worker blocked in ``signal_wait(100)``: its workers race to read the shared
signal socket, and the loser's ``read()`` fails with EAGAIN. uwsgisig gives each signal to
one worker and the waiter goes on waiting, so that line has no counterpart; the rest of
the post-fork chain is never reached on either server.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import assert_all_gone, children_of, wait_for
from tests.servers import Server, uwsgi_binary, uwsgi_ports

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parent.parent
FROM_THE_RELEASE = {
    "tests/decoratortest.py": "decoratortest.py",
    "tests/mulefunc.py": "mulefunc.py",
    "core/uwsgi.c": "uwsgi.c",
}
UWSGICC_STAND_IN = '''"""Stands in for uWSGI's control-center app, which decoratortest serves."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"uwsgicc"]
'''
WAIT = 60.0  # seconds, for a line the app prints

# What decoratortest prints on both servers (the 10 s red-black timer included).
DECORATORTEST_LINES = {
    "fork() has been called [1]",
    "worker 1 is waiting for signal 100...",
    "worker 2 is waiting for signal 100...",
    "Salut !!! 3 seconds elapsed and signal 0 raised",
    "Hello from a thread in worker 1",
    "Hello from a thread in worker 2",
    "Hello from a thread in the spooler",
    "red black timer !!! 10 seconds elapsed and signal 2 raised",
    "ValueError: unable to call rpc function",
}
# Lines decoratortest would print past the point where Python 3 stops it, or that need
# signal 100, which nothing raises then: neither server prints them. (Its hourly cron,
# "received signal 4 after 1 hour", prints on both when a run falls in minute 59: it is
# in neither set.)
DECORATORTEST_NEVER = (
    "[RPC] Hello World",
    "spool filename",
    "I AM THE WORKER",
    "starting locked function",
    "worker 1 received signal",
    "worker 2 received signal",
    "i am a no-args thread",
    "infinite:",
)
MULEFUNC_LINES = {
    "conto_fino_a_dieci 1 2 3",
    "MULE ID 2: conto_fino_a_venti 4 5 6",
    "3 seconds elapsed",
    "ValueError: invalid mule",
}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with uWSGI's two apps, uwsgi.c and the uwsgicc stand-in."""
    version = importlib.metadata.version("uwsgi")
    downloads = tmp_path_factory.mktemp("uwsgi-release")
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
         ":all:", f"uwsgi=={version}", "--dest", str(downloads)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    tarballs = list(downloads.glob("uwsgi-*.tar.gz"))
    if fetched.returncode != 0 or not tarballs:
        pytest.fail(f"cannot get uWSGI {version}'s source release:\n{fetched.stderr}")
    apps = tmp_path_factory.mktemp("uwsgi-apps")
    with tarfile.open(tarballs[0]) as tar:
        for member in tar.getmembers():
            inside = member.name.partition("/")[2]
            if inside in FROM_THE_RELEASE:
                data = tar.extractfile(member)
                assert data is not None
                (apps / FROM_THE_RELEASE[inside]).write_bytes(data.read())
    missing = [name for name in FROM_THE_RELEASE.values() if not (apps / name).exists()]
    assert not missing, f"uWSGI {version}'s release lacks {missing}"
    (apps / "uwsgicc.py").write_text(UWSGICC_STAND_IN)
    return apps


def copy_of(release: Path, workdir: Path) -> Path:
    workdir.mkdir()
    for path in release.iterdir():
        shutil.copy(path, workdir / path.name)
    (workdir / "myspool").mkdir()
    return workdir


# Every Python process of a server writes each printed line in one write(), so the
# lines of several processes sharing output.txt never mix (unbuffered, a print of
# several values is several writes).
LINE_AT_A_TIME = """import sys

for stream in (sys.stdout, sys.stderr):
    try:
        stream.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass
"""


def start(argv: list[str], workdir: Path) -> Server:
    """Run ``argv`` in ``workdir`` with its output in ``output.txt``."""
    log = workdir / "output.txt"
    (workdir / "sitecustomize.py").write_text(LINE_AT_A_TIME)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {
        **{name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"},
        "PATH": path,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(workdir)]),
    }
    with open(log, "ab") as output:
        process = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    return Server(process, log)


def descendants(pid: int) -> set[int]:
    found = children_of(pid)
    for child in list(found):
        found |= descendants(child)
    return found


def stop(server: Server) -> None:
    """Stop ``server`` and every process under it (a web server's workers too)."""
    server.stop(sorted(descendants(server.process.pid)))


def stop_uwsgi(server: Server) -> None:
    """SIGINT uWSGI's master; SIGKILL what is left after a while, by pid.

    A uWSGI worker still blocked in ``signal_wait(100)`` inside its post-fork hook
    does not die on the master's signal, and the master waits for it.
    """
    pids = {server.process.pid, *descendants(server.process.pid)}
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.process.wait(10)
    assert_all_gone(pids)


def uwsgi_argv(*args: str) -> list[str]:
    argv = [uwsgi_binary(), "--master", "--pythonpath", ".", *args]
    if sys.prefix != sys.base_prefix:
        argv += ["--home", sys.prefix]
    return argv


def seen(server: Server, lines: set[str], never: tuple[str, ...] = ()) -> set[str]:
    """Wait until every line of ``lines`` was printed; return the lines of ``lines`` and
    ``never`` that were."""

    def printed() -> set[str]:
        text = server.log_text()
        return {line for line in lines if line in text}

    wait_for(
        lambda: printed() == lines or server.process.poll() is not None,
        WAIT,
        f"{sorted(lines)} in {server.log}",
    )
    text = server.log_text()
    return printed() | {line for line in never if line in text}


def printed_by(
    server: Server, stopper: Callable[[Server], None], never: tuple[str, ...] = ()
) -> tuple[set[str], str]:
    """What decoratortest printed of its lines under ``server``, and the whole output."""
    try:
        return seen(server, DECORATORTEST_LINES, never), server.log_text()
    finally:
        stopper(server)


def test_decoratortest_prints_the_same_under_uwsgisig_as_under_uwsgi(release, tmp_path):
    under_uwsgi = start(
        uwsgi_argv(
            "--import", "decoratortest", "-s", "127.0.0.1:0", "--spooler", "myspool",
            "--enable-threads", "-p", "2", "--spooler-ordered",
        ),
        copy_of(release, tmp_path / "uwsgi"),
    )  # fmt: skip
    uwsgi_printed, uwsgi_text = printed_by(under_uwsgi, stop_uwsgi, DECORATORTEST_NEVER)
    under_uwsgisig = start(
        [sys.executable, "-m", "uwsgisig", "run", "--uwsgi-compat", "decoratortest.py",
         "-p", "2", "--spooler", "myspool"],
        copy_of(release, tmp_path / "uwsgisig"),
    )  # fmt: skip
    uwsgisig_printed, text = printed_by(under_uwsgisig, stop, DECORATORTEST_NEVER)
    assert uwsgi_printed == DECORATORTEST_LINES, uwsgi_text
    assert uwsgisig_printed == uwsgi_printed, text
    # The first post-fork hook ran once in each worker and in the spooler, on both.
    assert uwsgi_text.count("fork() has been called [1]") == 3
    assert text.count("fork() has been called [1]") == 3


def get_status(url: str) -> int | None:
    """The response's status; None when the server closed without a response, as uWSGI's
    HTTP socket does when the app raises (its log says 500)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except http.client.RemoteDisconnected:
        return None


def mulefunc_lines(server: Server, url: Callable[[], str]) -> tuple[int | None, set[str]]:
    status = get_status(url())
    return status, seen(server, MULEFUNC_LINES)


def test_mulefunc_behaves_the_same_under_uwsgisig_and_gunicorn_as_under_uwsgi(release, tmp_path):
    under_uwsgi = start(
        uwsgi_argv(
            "--http-socket", "127.0.0.1:0", "--wsgi-file", "mulefunc.py", "--mule", "--mule",
            "--farm", "topogigio:1,2",
        ),
        copy_of(release, tmp_path / "uwsgi"),
    )  # fmt: skip
    try:
        (port,) = uwsgi_ports(under_uwsgi, 1)
        wait_for(lambda: under_uwsgi.log_text().count("spawned uWSGI mule") == 2, WAIT, "mules")
        uwsgi_status, uwsgi_printed = mulefunc_lines(
            under_uwsgi, lambda: f"http://127.0.0.1:{port}/"
        )
    finally:
        stop_uwsgi(under_uwsgi)
    under_uwsgisig = start(
        [sys.executable, "-m", "uwsgisig", "run", "--uwsgi-compat", "mulefunc.py",
         "--mules", "2", "--farm", "topogigio:1,2", "--",
         "gunicorn", "-c", "python:uwsgisig.gunicorn", "-w", "1", "-b", "127.0.0.1:0",
         "mulefunc:application"],
        copy_of(release, tmp_path / "uwsgisig"),
    )  # fmt: skip
    listening = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
    try:
        under_uwsgisig.wait_log(re.compile(r"attached as worker 1"))
        (match,) = under_uwsgisig.wait_log(listening)
        uwsgisig_status, uwsgisig_printed = mulefunc_lines(
            under_uwsgisig, lambda: f"http://127.0.0.1:{match.group(1)}/"
        )
    finally:
        stop(under_uwsgisig)
    assert uwsgi_printed == MULEFUNC_LINES, under_uwsgi.log_text()
    assert uwsgi_status is None
    assert "(HTTP/1.1 500)" in under_uwsgi.log_text()
    assert uwsgisig_printed == uwsgi_printed, under_uwsgisig.log_text()
    assert uwsgisig_status == 500  # gunicorn answers the failed request with a 500
