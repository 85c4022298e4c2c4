"""Processes the runtime did not fork attach as its workers (`uwsgisig.attach`).

Each attached process runs ``tests/apps/attached_worker.py``: it imports the
same app file as the runtime, attaches, and then obeys commands on stdin,
answering each with a JSON line, so every step here waits on an answer or a
record, never on time.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import assert_all_gone, wait_for
from uwsgisig.rpc import rpc

pytestmark = pytest.mark.timeout(90)

DRIVER = Path(__file__).parent / "apps" / "attached_worker.py"
REPO = Path(__file__).resolve().parent.parent
ANSWER_TIMEOUT = 30.0


class Attached:
    """One attached process, driven over its stdin and stdout.

    With ``wait=False`` it does not wait for the hello (the process may be
    waiting for a worker id): call `read` for it.
    """

    def __init__(self, app_path: Path, socket_path: str, wait: bool = True, **env: str) -> None:
        environment = {
            **os.environ,
            "UWSGISIG_ATTACH": socket_path,
            "PYTHONPATH": str(REPO),
            **env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), str(app_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            text=True,
        )
        self.pid = self.proc.pid
        self.hello: dict = {}
        self.id: int | None = None
        if wait:
            self.read_hello()

    def read_hello(self) -> dict:
        self.hello = self.read()
        self.id = self.hello.get("id")
        return self.hello

    def read(self) -> dict:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], ANSWER_TIMEOUT)
        if not ready:
            pytest.fail(f"attached process {self.proc.pid} did not answer in {ANSWER_TIMEOUT} s")
        line = self.proc.stdout.readline()
        if not line:
            pytest.fail(f"attached process {self.proc.pid} exited ({self.proc.wait()})")
        return json.loads(line)

    def command(self, line: str) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.read()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=ANSWER_TIMEOUT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=ANSWER_TIMEOUT)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def attach_to(tmp_path):
    """``attach_to(app, **env)`` starts an attached process for ``app``; all die after the test."""
    started: list[Attached] = []

    def start(app, wait: bool = True, **env: str) -> Attached:
        attached = Attached(tmp_path / "app0.py", app.handle.config.attach_socket, wait, **env)
        started.append(attached)
        return attached

    yield start
    for attached in started:
        attached.close()
    assert_all_gone({attached.pid for attached in started})


def ids_of(app, count: int) -> dict[int, int]:
    """Worker id -> pid, once ``count`` attached workers are ready."""

    def ready():
        infos = [i for i in app.handle.processes() if i.role == "worker" and i.ready]
        return {i.id: i.pid for i in infos} if len(infos) == count else None

    return wait_for(ready, 20, f"{count} ready attached workers")  # type: ignore[return-value]


APP = """
@Signal(10).register_handler(target="workers")
def every_worker(num):
    record("every", num)

@Signal(11).register_handler(target="worker2")
def second(num):
    record("second", num)

@Signal(12).register_handler(target="active-workers")
def active(num):
    record("active", num)

@Signal(13).register_handler(target="worker")
def first_free(num):
    record("free", num)
"""


def test_attached_processes_get_the_lowest_free_ids_and_are_routed_to(start_app, attach_to):
    app = start_app(APP, workers=0, attach=4)
    workers = [attach_to(app) for _ in range(3)]
    assert sorted(w.id for w in workers) == [1, 2, 3]
    by_id = ids_of(app, 3)
    assert by_id == {w.id: w.pid for w in workers}
    app.handle.signal(10)
    app.handle.signal(11)
    app.handle.signal(12)
    app.handle.signal(13)
    every = app.wait_records("every", 3)
    assert sorted(words[-2] for words in every) == ["worker1", "worker2", "worker3"]
    assert [int(words[-1]) for words in app.wait_records("second", 1)] == [by_id[2]]
    active = app.wait_records("active", 3)
    assert {int(words[-1]) for words in active} == set(by_id.values())
    assert len(app.wait_records("free", 1)) == 1
    assert len(app.records("every")) == 3  # once each: a vacant slot (worker 4) got nothing


def test_a_worker_beside_forked_ones_takes_the_first_id_after_them(start_app, attach_to):
    app = start_app(APP, workers=2, attach=2)
    attached = attach_to(app)
    assert attached.id == 3
    app.handle.signal(10)
    every = app.wait_records("every", 3)
    assert sorted(words[-2] for words in every) == ["worker1", "worker2", "worker3"]


def test_first_available_skips_a_busy_attached_worker(start_app, attach_to, tmp_path):
    app = start_app(
        """
        import time

        @Signal(20).register_handler(target="worker")
        def slow(num):
            record("start", num)
            deadline = time.monotonic() + 30
            while not os.path.exists(os.path.join(os.path.dirname(OUT), "go")):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            record("end", num)
        """,
        workers=0,
        attach=2,
    )
    pids = {attach_to(app).pid, attach_to(app).pid}
    ids_of(app, 2)
    app.handle.signal(20)
    app.handle.signal(20)
    started = app.wait_records("start", 2)
    assert not app.records("end")  # both run side by side, one on each worker
    assert {int(words[-1]) for words in started} == pids
    (tmp_path / "go").touch()
    app.wait_records("end", 2)


def test_a_killed_attached_worker_leaves_its_queued_signals_to_the_next_holder_of_its_id(
    start_app, attach_to
):
    app = start_app(
        """
        @Signal(21).register_handler(target="worker1")
        def park(num):
            record("parked", num)
            block()

        @Signal(22).register_handler(target="worker1")
        def later(num):
            record("later", num)
        """,
        workers=0,
        attach=2,
    )
    first = attach_to(app)
    second = attach_to(app)
    assert (first.id, second.id) == (1, 2)
    app.handle.signal(21)
    app.wait_records("parked", 1)
    for _ in range(5):
        app.handle.signal(22)  # queued behind the parked handler
    first.kill()
    wait_for(lambda: 1 not in {i.id for i in app.handle.processes() if i.role == "worker"},
             20, "worker 1 to be detached")
    third = attach_to(app)
    assert third.id == 1  # the id is reused
    later = app.wait_records("later", 5)
    assert {int(words[-1]) for words in later} == {third.pid}
    assert len(app.records("parked")) == 1  # the one it was running is not run again
    assert len(app.records("later")) == 5


def test_a_worker_whose_server_ids_are_all_held_waits_for_one_of_them(start_app, attach_to):
    # A server reloading starts new workers before the old ones leave: the new
    # ones must take the old ones' ids, not ids above them.
    app = start_app(APP, workers=0, attach=4)
    old = [attach_to(app, ATTACH_WORKERS="2") for _ in range(2)]
    assert [w.id for w in old] == [1, 2]
    newcomer = attach_to(app, wait=False, ATTACH_WORKERS="2")
    waits = f"pid {newcomer.pid} waits for one of its server's worker ids 1-2"
    wait_for(lambda: waits in app.log.read_text(), 20, "the newcomer to wait")
    assert [i.id for i in app.handle.processes() if i.role == "worker"] == [1, 2]
    old[1].kill()
    assert newcomer.read_hello()["id"] == 2
    app.handle.signal(11)  # worker2: the newcomer holds it now
    assert [int(words[-1]) for words in app.wait_records("second", 1)] == [newcomer.pid]


def test_a_worker_that_waited_too_long_for_its_servers_ids_takes_another(
    start_app, attach_to, monkeypatch
):
    from uwsgisig.runtime.master import door

    monkeypatch.setattr(door, "PATIENCE", 0.2)  # the master is forked from this process
    app = start_app(APP, workers=0, attach=3)
    held = attach_to(app, ATTACH_WORKERS="1")
    assert held.id == 1
    later = attach_to(app, ATTACH_WORKERS="1")
    assert later.id == 2
    wait_for(lambda: "worker ids 1-1 of its server are all held" in app.log.read_text(), 10)


def test_a_worker_that_detaches_hands_its_id_on(start_app, attach_to):
    app = start_app(APP, workers=0, attach=2)
    first = attach_to(app)
    assert first.command("detach") == {"done": "detach", "id": 0}
    wait_for(lambda: not [i for i in app.handle.processes() if i.role == "worker"],
             20, "the detach")
    app.handle.signal(11)  # for worker2: nobody holds it yet, it waits
    again = attach_to(app)
    other = attach_to(app)
    assert (again.id, other.id) == (1, 2)
    assert [int(words[-1]) for words in app.wait_records("second", 1)] == [other.pid]


def test_a_worker_whose_table_differs_is_refused_with_the_signal_and_both_values(
    start_app, attach_to
):
    app = start_app(
        APP
        + textwrap.dedent(
            """
            if os.environ.get("EXTRA_HANDLER"):
                @Signal(40).register_handler(target="worker")
                def only_here(num):
                    pass
            """
        ),
        workers=0,
        attach=2,
    )
    refused = attach_to(app, EXTRA_HANDLER="1").hello["refused"]
    assert "signal 40" in refused
    assert "the runtime has no handler" in refused
    assert "the worker has target 'worker' with handler app0:only_here" in refused
    assert "did not import the same app" in refused
    assert attach_to(app).id == 1  # the refusal took no slot


def test_no_free_slot_is_refused_and_names_the_option(start_app, attach_to):
    app = start_app(APP, workers=0, attach=2)
    assert [attach_to(app).id for _ in range(2)] == [1, 2]
    refused = attach_to(app).hello["refused"]
    assert "every attach slot is taken" in refused
    assert "--attach" in refused


def test_sends_from_many_threads_of_an_attached_worker_all_arrive_once(start_app, attach_to):
    app = start_app(
        """
        count = 0

        @Signal(30).register_handler(target="mule1")
        def counted(num):
            global count
            count += 1
            if count % 1000 == 0:
                record("thousand", count)
        """,
        workers=0,
        attach=1,
        mules=1,
        queue_size=256,  # small: the threads wait for credit again and again
    )
    worker = attach_to(app)
    assert worker.command("send 30 2000 8") == {"done": "send"}
    thousands = app.wait_records("thousand", 16, timeout=60)
    assert [int(words[1]) for words in thousands] == list(range(1000, 16001, 1000))


def test_wait_in_a_server_thread_gets_the_signal_while_handlers_run_beside_it(
    start_app, attach_to
):
    app = start_app(APP, workers=0, attach=2)
    worker = attach_to(app)
    ids_of(app, 1)
    app.handle.signal(10)  # registered: runs in the signal thread
    app.handle.signal(41)  # no handler: held for a waiter of the worker pool
    assert worker.command("wait 41 20") == {"done": "wait", "got": 41}
    assert len(app.wait_records("every", 1)) == 1


def test_an_attached_worker_spools_jobs_and_offloads_calls(start_app, attach_to, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    app = start_app(
        """
        from uwsgisig import spooler

        jobs = Mule(1)

        @spooler.handler
        def run_job(job):
            record("job", job["name"])

        @jobs.offload
        def offloaded(word):
            record("offloaded", word)

        def spool_it(word):
            spooler.spool({"name": word})

        def offload_it(word):
            offloaded(word)
        """,
        workers=0,
        attach=1,
        spooler=spool,
        spooler_frequency=1.0,
    )
    worker = attach_to(app)
    worker.command("call spool_it alpha")
    worker.command("call offload_it beta")
    assert [words[1:3] for words in app.wait_records("job", 1)] == [["alpha", "spooler"]]
    assert [words[1:3] for words in app.wait_records("offloaded", 1)] == [["beta", "mule1"]]


def test_a_timer_fires_once_per_tick_for_all_attached_workers(start_app, attach_to):
    app = start_app(
        """
        import time
        from uwsgisig import scheduling

        @scheduling.register_timer_ms(200, target="worker")
        def tick(num):
            record("tick", time.monotonic())
        """,
        workers=0,
        attach=3,
    )
    for _ in range(3):
        attach_to(app)
    # A tick raised before a worker attached waits for one and runs late, close to
    # the next: count the ticks from one period after the last worker attached.
    settled = time.monotonic() + 0.25  # CLOCK_MONOTONIC is the same in every process

    def ticks_after() -> list[float]:
        return [t for t in (float(words[1]) for words in app.records("tick")) if t > settled]

    wait_for(lambda: len(ticks_after()) >= 6, 30, "6 ticks after the workers attached")
    # One timer in the master: ticks come 200 ms apart. Had each worker armed
    # its own copy, three would come within microseconds of each other.
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks_after())]
    assert min(gaps) > 0.05, gaps


def test_the_attach_socket_is_private_to_the_runtime_user(start_app, tmp_path):
    app = start_app(APP, workers=0, attach=2)
    path = app.handle.config.attach_socket
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    if os.geteuid() != 0:
        return  # the check below needs another user to become
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            import socket

            os.setgid(65534)
            os.setuid(65534)
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except PermissionError:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "another user could connect"


def test_the_private_socket_directory_is_removed_when_the_runtime_stops(start_app):
    app = start_app(APP, workers=0, attach=2)
    directory = os.path.dirname(app.handle.config.attach_socket)
    app.handle.stop()
    assert not os.path.exists(directory)


def test_attach_outside_a_runtime_does_nothing(monkeypatch):
    import uwsgisig

    monkeypatch.delenv("UWSGISIG_ATTACH", raising=False)
    assert uwsgisig.attach() == 0
    assert uwsgisig.worker_id() == 0


def test_bad_attach_options_are_refused_before_anything_starts():
    from uwsgisig import Runtime

    with pytest.raises(ValueError, match="at least one worker"):
        Runtime(workers=0)
    with pytest.raises(ValueError, match="invalid attach -1"):
        Runtime(attach=-1)


def test_stopping_the_runtime_leaves_attached_processes_alone_and_detached(start_app, attach_to):
    app = start_app(APP, workers=0, attach=2)
    worker = attach_to(app)
    ids_of(app, 1)
    app.handle.stop()
    assert worker.proc.poll() is None  # the server owns it; it just left the runtime
    assert worker.command("detach") == {"done": "detach", "id": 0}
    os.kill(worker.pid, signal.SIGTERM)
    worker.proc.wait(timeout=ANSWER_TIMEOUT)


def _raw_hello(path: str, data: bytes) -> dict:
    """Send ``data`` at the door as a visitor would, and return the answer line."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as door:
        door.settimeout(ANSWER_TIMEOUT)
        door.connect(path)
        door.sendall(data)
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = door.recv(65536)
            if not chunk:
                break
            answer += chunk
    return json.loads(answer)


@pytest.mark.parametrize(
    ("hello", "reason"),
    [
        (b"not json\n", "hello is not a JSON object"),
        (b"[1, 2]\n", "hello is not a JSON object"),
        (b'{"pid": 1}\n', "the hello has no signal table"),
        (b'{"table": {}, "workers": 0}\n', "invalid workers 0 in the hello"),
    ],
)
def test_a_bad_hello_is_refused_with_its_reason_and_takes_no_slot(
    start_app, attach_to, hello, reason
):
    app = start_app(APP, workers=0, attach=2)
    answer = _raw_hello(app.handle.config.attach_socket, hello)
    assert answer["ok"] is False
    assert reason in answer["error"]
    assert attach_to(app).id == 1


def test_a_visitor_that_says_nothing_is_turned_away(start_app, monkeypatch):
    from uwsgisig.runtime.master import door

    monkeypatch.setattr(door, "HELLO_TIMEOUT", 0.2)  # the master is forked from this process
    app = start_app(APP, workers=0, attach=2)
    answer = _raw_hello(app.handle.config.attach_socket, b"")
    assert answer == {"ok": False, "error": "no hello within 0.2 s"}


def test_attached_workers_answer_the_rpc_socket_too(start_app, attach_to):
    app = start_app(
        """
        from uwsgisig.rpc import register_rpc

        @register_rpc()
        def where():
            return who()
        """,
        workers=0,
        attach=2,
        rpc_socket="127.0.0.1:0",
    )
    first, second = attach_to(app), attach_to(app)
    ids_of(app, 2)
    answers = {rpc(app.handle.rpc_socket, "where") for _ in range(40)}
    assert answers <= {b"worker1", b"worker2"}
    assert answers  # served by the attached processes: the runtime forked no worker
    second.command("detach")
    wait_for(lambda: len(ids_of_now(app)) == 1, 20, "one attached worker left")
    assert {rpc(app.handle.rpc_socket, "where") for _ in range(20)} == {
        f"worker{first.id}".encode()
    }


def ids_of_now(app) -> dict[int, int]:
    return {i.id: i.pid for i in app.handle.processes() if i.role == "worker" and i.pid}
