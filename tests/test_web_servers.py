"""Real web servers whose workers are the runtime's workers: gunicorn, uvicorn, granian.

Each test runs ``uwsgisig run webapp.py ... -- SERVER ...`` as a new user
would, talks HTTP to it on 127.0.0.1, and reads what the handlers recorded
(``tests/apps/webapp.py``). Waits are on log lines and records, all bounded;
stopping asserts that no process of the runtime or of the server survives.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import assert_all_gone, children_of, pid_alive, wait_for

pytestmark = pytest.mark.timeout(120)

APP = Path(__file__).parent / "apps" / "webapp.py"
REPO = Path(__file__).resolve().parent.parent
ATTACHED = re.compile(r"pid (\d+) attached as worker (\d+)")
DETACHED = re.compile(r"worker (\d+) \(pid (\d+)\) detached")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_command(name: str) -> str:
    """The server's command, next to this Python (the test extra installs it)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f'no {name} command: install the test extras, pip install -e ".[test]"')
    return found


def gunicorn_extra_args() -> list[str]:
    # Gunicorn 25+ opens a control socket in ~/.gunicorn by default; tests run several.
    help_text = subprocess.run(
        [server_command("gunicorn"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    return ["--no-control-socket"] if "--no-control-socket" in help_text else []


class Web:
    """``uwsgisig run webapp.py -- SERVER``: its logs, records and processes."""

    def __init__(self, workdir: Path, runtime_args: list[str], server: list[str], **env: str):
        shutil.copy(APP, workdir / "webapp.py")
        self.workdir = workdir
        self.out = workdir / "out.txt"
        self.runtime_log = workdir / "runtime.log"
        self.server_log = workdir / "server.log"
        self.port = free_port()
        argv = [
            sys.executable, "-m", "uwsgisig", "run", "webapp.py",
            "--log-file", str(self.runtime_log), "--mules", "1",
            "--spooler", str(workdir / "spool"), "--spooler-frequency", "1",
            *runtime_args, "--",
            *[part.replace("PORT", str(self.port)) for part in server],
        ]  # fmt: skip
        (workdir / "spool").mkdir()
        environment = {
            **os.environ,
            "WEBAPP_OUT": str(self.out),
            "PYTHONPATH": os.pathsep.join([str(REPO), str(workdir)]),
            **env,
        }
        with open(self.server_log, "wb") as output:
            self.process = subprocess.Popen(
                argv, cwd=workdir, env=environment, stdout=output, stderr=subprocess.STDOUT
            )
        self.pids: set[int] = {self.process.pid}

    # ---------------------------------------------------------------- reading

    def log(self) -> str:
        paths = (self.runtime_log, self.server_log)
        texts = [p.read_text(errors="replace") for p in paths if p.exists()]
        return "\n".join(texts)

    def attached(self) -> dict[int, int]:
        """Worker id -> pid of the workers attached now (from the runtime's log)."""
        text = self.runtime_log.read_text() if self.runtime_log.exists() else ""
        events = sorted(
            [(m.start(), "in", int(m.group(2)), int(m.group(1))) for m in ATTACHED.finditer(text)]
            + [(m.start(), "out", int(m.group(1)), int(m.group(2)))
               for m in DETACHED.finditer(text)]
        )  # fmt: skip
        now: dict[int, int] = {}
        for _, kind, worker_id, pid in events:
            if kind == "in":
                now[worker_id] = pid
                self.pids.add(pid)
            elif now.get(worker_id) == pid:
                del now[worker_id]
        return now

    def wait_attached(self, count: int, exclude: set[int] = frozenset()) -> dict[int, int]:
        def enough() -> dict[int, int] | None:
            if self.process.poll() is not None:
                pytest.fail(f"uwsgisig run exited ({self.process.returncode}):\n{self.log()}")
            now = self.attached()
            fresh = {i: p for i, p in now.items() if p not in exclude}
            return now if len(fresh) >= count else None

        return wait_for(enough, START_TIMEOUT, f"{count} attached workers:\n{self.log()}")  # type: ignore[return-value]

    def records(self, first_word: str) -> list[list[str]]:
        if not self.out.exists():
            return []
        lines = [line.split() for line in self.out.read_text().splitlines()]
        return [words for words in lines if words[0] == first_word]

    def wait_records(self, first_word: str, count: int) -> list[list[str]]:
        wait_for(
            lambda: len(self.records(first_word)) >= count,
            START_TIMEOUT,
            f"{count} {first_word!r} records; have {self.records(first_word)}\n{self.log()}",
        )
        return self.records(first_word)

    def wait_log(self, text: str) -> None:
        wait_for(lambda: text in self.log(), START_TIMEOUT, f"{text!r} in the logs")

    # ---------------------------------------------------------------- acting

    def get(self, path: str) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=START_TIMEOUT) as response:
            assert response.status == 200
            return json.loads(response.read())

    def stop(self) -> None:
        """SIGTERM ``uwsgisig run``; assert it and every process it ran are gone."""
        self.pids.update(children_of(self.process.pid))
        for pid in list(self.pids):
            self.pids.update(children_of(pid))
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
            pytest.fail(f"uwsgisig run ignored SIGTERM:\n{self.log()}")
        assert_all_gone(self.pids)


@pytest.fixture
def web(tmp_path):
    """``web(runtime_args, server_argv, **env)`` starts one; it is stopped after the test."""
    started: list[Web] = []

    def start(runtime_args: list[str], server: list[str], **env: str) -> Web:
        instance = Web(tmp_path, runtime_args, server, **env)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


def gunicorn(*args: str, workers: int = 4) -> list[str]:
    return [
        server_command("gunicorn"), "-c", "python:uwsgisig.gunicorn", "-w", str(workers),
        "-b", "127.0.0.1:PORT", *gunicorn_extra_args(), *args, "webapp:wsgi",
    ]  # fmt: skip


def uvicorn() -> list[str]:
    return [
        server_command("uvicorn"), "--workers", "2", "--host", "127.0.0.1", "--port", "PORT",
        "webapp:asgi",
    ]  # fmt: skip


def granian(interface: str = "asgi") -> list[str]:
    return [
        server_command("granian"), "--interface", interface, "--workers", "2",
        "--host", "127.0.0.1", "--port", "PORT",
        "webapp:asgi" if interface == "asgi" else "webapp:wsgi",
    ]  # fmt: skip


def hypercorn() -> list[str]:
    return [
        server_command("hypercorn"), "--workers", "2", "--bind", "127.0.0.1:PORT",
        "webapp:asgi",
    ]  # fmt: skip


def hammer(instance: Web, path: str, requests: int, threads: int) -> list[dict]:
    """``requests`` GETs of ``path`` from each of ``threads`` client threads at once."""
    answers: list[dict] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            for _ in range(requests):
                answers.append(instance.get(path))
        except BaseException as exc:
            errors.append(exc)

    clients = [threading.Thread(target=client) for _ in range(threads)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(START_TIMEOUT * 2)
    assert not errors, errors
    assert len(answers) == requests * threads
    return answers


# -------------------------------------------------------------------- gunicorn


@pytest.mark.parametrize(
    "options",
    [[], ["-k", "gthread", "--threads", "4"], ["--preload"]],
    ids=["sync", "gthread", "preload"],
)
def test_gunicorn_workers_are_the_runtimes_workers(web, options):
    instance = web([], gunicorn(*options))
    by_id = instance.wait_attached(4)
    assert sorted(by_id) == [1, 2, 3, 4]
    answers = {instance.get("/id")["worker"] for _ in range(8)}
    assert answers <= {1, 2, 3, 4}
    instance.get("/raise/10")
    every = instance.wait_records("every", 4)
    assert sorted(words[-2] for words in every) == ["worker1", "worker2", "worker3", "worker4"]
    instance.get("/raise/12")
    third = instance.wait_records("third", 1)
    assert third[0][-2:] == ["worker3", str(by_id[3])]
    # Requests in flight while signals flow: each request raises one `worker` signal.
    hammer(instance, "/raise/11", requests=25, threads=4)
    ones = instance.wait_records("one", 100)
    assert len(ones) == 100
    assert {words[-2] for words in ones} <= {"worker1", "worker2", "worker3", "worker4"}
    assert len(instance.records("every")) == 4  # nothing ran twice


def test_gunicorn_views_spool_offload_message_and_register(web):
    instance = web([], gunicorn(workers=2))
    instance.wait_attached(2)
    instance.get("/spool/alpha")
    instance.get("/offload/beta")
    instance.get("/farm/gamma")
    assert [w[1:3] for w in instance.wait_records("job", 1)] == [["alpha", "spooler"]]
    assert [w[1:3] for w in instance.wait_records("offloaded", 1)] == [["beta", "mule1"]]
    assert [w[1:3] for w in instance.wait_records("mailed", 1)] == [["gamma", "mule1"]]
    # A handler registered after the attach runs in the worker that registered it.
    registered_in = instance.get("/register/50")["pid"]
    for _ in range(4):
        instance.get("/raise/50")
    assert {w[-1] for w in instance.wait_records("late", 4)} == {str(registered_in)}


def test_a_killed_gunicorn_worker_is_replaced_and_its_id_and_signals_go_on(web):
    instance = web([], gunicorn())
    by_id = instance.wait_attached(4)
    os.kill(by_id[2], signal.SIGKILL)
    instance.wait_log(f"worker 2 (pid {by_id[2]}) detached")
    for _ in range(3):
        instance.get("/raise/13")  # for worker2: queued until its next holder comes
    now = instance.wait_attached(4, exclude=set())
    wait_for(lambda: instance.attached().get(2) not in (None, by_id[2]), START_TIMEOUT, "id 2")
    new_second = instance.attached()[2]
    second = instance.wait_records("second", 3)
    assert {words[-1] for words in second} == {str(new_second)}
    assert sorted(now) == [1, 2, 3, 4]
    instance.get("/raise/10")
    every = instance.wait_records("every", 4)
    assert Counter(words[-2] for words in every) == Counter(
        {"worker1": 1, "worker2": 1, "worker3": 1, "worker4": 1}
    )
    assert len(instance.records("second")) == 3


def test_a_gunicorn_reload_keeps_ids_and_loses_no_signal_for_a_numbered_worker(web):
    instance = web([], gunicorn())
    old = instance.wait_attached(4)
    # Requests raise signals for worker3 all through the reload.
    traffic = threading.Thread(target=hammer, args=(instance, "/raise/12", 20, 2))
    traffic.start()
    os.kill(instance.process.pid, signal.SIGHUP)  # the runtime passes it on to gunicorn
    wait_for(
        lambda: not set(instance.attached().values()) & set(old.values())
        and len(instance.attached()) == 4,
        START_TIMEOUT,
        f"a new generation of workers:\n{instance.log()}",
    )
    traffic.join(START_TIMEOUT * 2)
    new = instance.attached()
    assert sorted(new) == [1, 2, 3, 4]  # the new workers took the old ones' ids
    assert_all_gone(set(old.values()))
    third = instance.wait_records("third", 40)
    assert len(third) == 40  # none lost, none run twice
    assert {words[-1] for words in third} <= {str(old[3]), str(new[3])}
    instance.get("/raise/10")
    every = instance.wait_records("every", 4)
    assert {words[-1] for words in every} == {str(pid) for pid in new.values()}


def test_a_gunicorn_worker_whose_table_differs_is_refused_loudly(web):
    instance = web([], ["env", "WEBAPP_EXTRA=1", *gunicorn(workers=1)])
    instance.wait_log("its signal table differs from the runtime's")
    log = instance.log()
    assert "signal 40: the runtime has no handler, the worker has target 'worker'" in log
    assert "webapp:only_in_the_server" in log
    assert not instance.attached()


def test_a_timer_runs_once_per_tick_across_gunicorn_workers(web):
    instance = web([], gunicorn(), WEBAPP_TICK="1")
    instance.wait_attached(4)
    ticks = [float(words[1]) for words in instance.wait_records("tick", 4)]
    # One timer in the master, 1 s apart; one per worker would come in bursts of 4.
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert min(gaps) > 0.3, gaps


def test_hooks_from_a_gunicorn_conf_py_of_ones_own(web, tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text(
        "from uwsgisig.gunicorn import post_worker_init, worker_exit\n"
        "workers = 2\n"
    )
    server = [
        server_command("gunicorn"), "-c", "gunicorn.conf.py", "-b", "127.0.0.1:PORT",
        *gunicorn_extra_args(), "webapp:wsgi",
    ]  # fmt: skip
    instance = web([], server)
    assert sorted(instance.wait_attached(2)) == [1, 2]
    instance.get("/raise/10")
    assert len(instance.wait_records("every", 2)) == 2


def test_a_dead_server_is_restarted_and_its_workers_attach_again(web):
    instance = web([], gunicorn(workers=2))
    first = instance.wait_attached(2)
    arbiter = instance.log().split("started command")[1].split("(pid ")[1].split(")")[0]
    os.kill(int(arbiter), signal.SIGKILL)
    instance.wait_log("exited with signal SIGKILL: restarting it")
    again = instance.wait_attached(2, exclude=set(first.values()))
    assert sorted(again) == [1, 2]
    instance.get("/raise/10")
    every = instance.wait_records("every", 2)
    assert {w[-1] for w in every} == {str(pid) for pid in again.values()}


def test_forked_workers_beside_a_servers_take_the_first_ids(web):
    instance = web(["--workers", "1"], gunicorn(workers=2))
    attached = instance.wait_attached(2)
    assert sorted(attached) == [2, 3]
    instance.get("/raise/10")
    every = instance.wait_records("every", 3)
    assert sorted(w[-2] for w in every) == ["worker1", "worker2", "worker3"]


def test_stopping_the_runtime_stops_gunicorn_and_leaves_no_process(web):
    instance = web([], gunicorn(workers=2))
    workers = instance.wait_attached(2)
    instance.stop()  # asserts that every pid is gone
    assert all(not pid_alive(pid) for pid in workers.values())
    assert "exited with code 0" in instance.log()


# -------------------------------------------------------------------- ASGI servers


@pytest.mark.parametrize(
    "server", [uvicorn, granian, hypercorn], ids=["uvicorn", "granian", "hypercorn"]
)
def test_asgi_workers_are_the_runtimes_workers(web, server):
    instance = web([], server())
    by_id = instance.wait_attached(2)
    assert sorted(by_id) == [1, 2]
    instance.get("/raise/10")
    every = instance.wait_records("every", 2)
    assert sorted(words[-2] for words in every) == ["worker1", "worker2"]
    hammer(instance, "/raise/11", requests=10, threads=4)
    assert len(instance.wait_records("one", 40)) == 40
    instance.get("/raise/14")
    coroutine = instance.wait_records("coroutine", 1)
    assert coroutine[0][2] == "False"  # it ran on the event loop, not in the signal thread
    instance.get("/spool/gamma")
    assert [w[1] for w in instance.wait_records("job", 1)] == ["gamma"]
    assert len(instance.records("every")) == 2


def test_a_wsgi_module_that_attaches_at_import_under_granian(web):
    instance = web([], granian("wsgi"), WEBAPP_ATTACH_AT_IMPORT="1")
    assert sorted(instance.wait_attached(2)) == [1, 2]
    instance.get("/raise/10")
    assert sorted(w[-2] for w in instance.wait_records("every", 2)) == ["worker1", "worker2"]
    hammer(instance, "/raise/11", requests=10, threads=2)
    assert len(instance.wait_records("one", 20)) == 20


def test_an_asgi_worker_whose_table_differs_fails_its_startup_and_serves_nothing(web):
    instance = web([], ["env", "WEBAPP_EXTRA=1", *uvicorn()])
    instance.wait_log("its signal table differs from the runtime's")
    instance.wait_log("signal 40: the runtime has no handler")
    assert not instance.attached()


@pytest.mark.parametrize(
    "server",
    [uvicorn, lambda: [*granian(), "--respawn-failed-workers"]],
    ids=["uvicorn", "granian"],
)
def test_a_killed_asgi_worker_is_replaced_and_takes_its_id_back(web, server):
    instance = web([], server())
    by_id = instance.wait_attached(2)
    os.kill(by_id[2], signal.SIGKILL)
    instance.wait_log(f"worker 2 (pid {by_id[2]}) detached")
    wait_for(lambda: instance.attached().get(2) not in (None, by_id[2]), START_TIMEOUT, "id 2")
    new_second = instance.attached()[2]
    for _ in range(3):
        instance.get("/raise/13")
    second = instance.wait_records("second", 3)
    assert {words[-1] for words in second} == {str(new_second)}
