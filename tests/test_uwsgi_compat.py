"""The uwsgi-compatible module: ``import uwsgi`` and uwsgidecorators on our runtime."""

from __future__ import annotations

import ast
import importlib.util
import os
import signal
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import App, assert_all_gone, children_of, jobs_in, wait_for
from tests.servers import start_uwsgi
from uwsgisig import compat
from uwsgisig.cli import build_parser
from uwsgisig.runtime.ipc.spool import SpoolDir
from uwsgisig.runtime.model.app import DECLARED

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "uwsgidecorators_app.py"
EXAMPLE_OPTIONS = "--uwsgi-compat --workers 2 --mules 2 --farm pool:2"
# The same processes under uWSGI; it starts workers only with a socket.
UWSGI_OPTIONS = ["--processes", "2", "--mules", "2", "--farm", "pool:2", "--socket", "127.0.0.1:0"]
EXAMPLE_CHILDREN = ["mule1", "mule2", "spooler", "worker1", "worker2"]

# Prepended to the apps below: ``dump(name, value)`` writes ``repr(value)`` to
# NAME.repr beside out.txt, whole or not at all.
HELPERS = """
import uwsgi


def dump(name, value):
    path = os.path.join(os.path.dirname(OUT), name + ".repr")
    with open(path + ".tmp", "w") as file:
        file.write(repr(value))
    os.replace(path + ".tmp", path)
"""


@pytest.fixture(autouse=True)
def no_uwsgi_module_left() -> Iterator[None]:
    """Other tests must not find a ``uwsgi`` (or uwsgidecorators) module."""
    yield
    compat.uninstall()
    sys.modules.pop("uwsgidecorators", None)


def dumped(app: App, name: str) -> object:
    """The value the app dumped under ``name``, once it exists."""
    path = app.dir / f"{name}.repr"
    wait_for(path.exists, 10, f"{path.name}; records {app.lines()}; log {read_log(app.log)}")
    return ast.literal_eval(path.read_text())


def read_log(path: Path) -> str:
    return path.read_text() if path.exists() else ""


# ---------------------------------------------------------------- the example, with the CLI


class Records:
    """The lines ``WHAT ... WHO PID`` the example writes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        return [line.split() for line in self.path.read_text().splitlines()]

    def of(self, what: str, count: int = 1) -> list[list[str]]:
        """Wait until ``count`` lines start with ``what``; return them all."""
        wait_for(
            lambda: len([words for words in self.lines() if words[0] == what]) >= count,
            15,
            f"{count} {what!r} records; have {self.lines()}",
        )
        return [words for words in self.lines() if words[0] == what]

    def who(self, what: str) -> set[str]:
        """The processes that wrote a line starting with ``what``."""
        return {words[-2] for words in self.lines() if words[0] == what}


def assert_the_example_ran(records: Records, spool: Path) -> set[int]:
    """Check every record the example writes; return the pids of the processes that wrote."""
    started = records.of("started", 5)
    assert sorted(words[1] for words in started) == EXAMPLE_CHILDREN
    assert sorted(words[2] for words in records.of("hello", 2)) == ["worker1", "worker2"]
    assert [words[1:3] for words in records.of("crunch")] == [["84", "mule1"]]
    assert [words[1:3] for words in records.of("farm")] == [["resize_cat.png", "mule2"]]
    assert [words[1:4] for words in records.of("report")] == [["daily", "3", "spooler"]]
    wait_for(
        lambda: records.who("changed") == {"worker1", "worker2"},
        15,
        "both workers to see the watched directory change",
    )
    assert records.of("cron")[0][2].startswith("worker")
    ticks = records.of("tick", 2)
    assert all(words[1] == "20" and words[2].startswith("worker") for words in ticks)
    wait_for(
        lambda: not jobs_in(spool),
        10,
        "the spooler to delete the done job",
    )
    return {int(words[-1]) for words in started}


def test_the_uwsgidecorators_example_runs_under_uwsgi_compat(tmp_path):
    records = Records(tmp_path / "records.txt")
    output = open(tmp_path / "output.txt", "w")  # noqa: SIM115 - closed in finally
    files = ["--spooler", str(tmp_path / "spool"), "--log-file", str(tmp_path / "log.txt")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "uwsgisig", "run", str(EXAMPLE), *EXAMPLE_OPTIONS.split(), *files],
        env={**os.environ, "UWSGIDECORATORS_APP_DIR": str(tmp_path)},
        cwd=ROOT,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    children: set[int] = set()
    try:
        children = assert_the_example_ran(records, tmp_path / "spool") | children_of(proc.pid)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0, (tmp_path / "output.txt").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        output.close()
    assert_all_gone(children)


def test_the_same_example_runs_alike_under_a_real_uwsgi(tmp_path):
    (tmp_path / "spool").mkdir()
    server = start_uwsgi(
        EXAMPLE,
        tmp_path,
        # uWSGI wakes its spooler with SIGUSR1 when a job is spooled; one sent before the
        # spooler is ready is lost, and the job waits for the next look: make it soon.
        [*UWSGI_OPTIONS, "--spooler", str(tmp_path / "spool"), "--spooler-frequency", "1"],
        {"UWSGIDECORATORS_APP_DIR": str(tmp_path)},
    )
    pids: set[int] = set()
    try:
        pids = assert_the_example_ran(Records(tmp_path / "records.txt"), tmp_path / "spool")
    finally:
        server.stop(more_pids=sorted(pids))


def test_the_cli_has_the_flag():
    assert build_parser().parse_args(["run", "app.py", "--uwsgi-compat"]).uwsgi_compat
    assert not build_parser().parse_args(["run", "app.py"]).uwsgi_compat


# ---------------------------------------------------------------- install / uninstall


def test_install_puts_one_module_named_uwsgi_in_sys_modules():
    module = compat.install()
    assert isinstance(module, types.ModuleType)
    assert compat.install() is module
    import uwsgi

    assert uwsgi is module
    assert uwsgi.UWSGISIG_COMPAT is True
    assert importlib.util.find_spec("uwsgi") is not None
    compat.uninstall()
    assert "uwsgi" not in sys.modules
    assert compat.install() is not module


def test_install_refuses_to_replace_a_real_uwsgi_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "uwsgi", types.ModuleType("uwsgi"))
    with pytest.raises(RuntimeError, match="a uwsgi module is already imported"):
        compat.install()


def test_outside_a_runtime_the_module_says_so_as_uwsgi_does():
    uwsgi = compat.install()
    assert (uwsgi.numproc, uwsgi.opt, uwsgi.masterpid(), uwsgi.worker_id()) == (0, {}, 0, 0)
    assert (uwsgi.SPOOL_OK, uwsgi.SPOOL_RETRY, uwsgi.SPOOL_IGNORE) == (-2, -1, 0)
    assert uwsgi.version == b"2.0.31"
    # uwsgidecorators' own check: it needs a master.
    with pytest.raises(Exception, match="enable the uWSGI master process"):
        import uwsgidecorators  # noqa: F401


# ---------------------------------------------------------------- what is not implemented


@pytest.mark.parametrize("name", compat.NOT_IMPLEMENTED)
def test_every_other_call_raises_not_implemented_naming_it(name):
    uwsgi = compat.install()
    with pytest.raises(NotImplementedError) as caught:
        getattr(uwsgi, name)("k", 1)
    assert str(caught.value) == (
        f"uwsgi.{name}() is not implemented by uwsgisig's uwsgi-compatible module "
        f"(--uwsgi-compat): it offers {compat.OFFERED}"
    )
    assert "RPC" in compat.OFFERED


def test_the_implemented_calls_and_the_others_do_not_overlap():
    assert not set(compat.IMPLEMENTED) & set(compat.NOT_IMPLEMENTED)
    uwsgi = compat.install()
    assert all(callable(getattr(uwsgi, name)) for name in compat.IMPLEMENTED)


@pytest.mark.parametrize("call", ["spool", "send_to_spooler"])
def test_a_priority_job_goes_to_its_numbered_subdirectory_and_keeps_the_key(tmp_path, call):
    uwsgi = compat.install()
    path = getattr(uwsgi, call)({b"priority": b"3", b"spooler": bytes(tmp_path), b"a": b"b"})
    assert Path(os.fsdecode(path)).parent == tmp_path / "3"
    loaded = SpoolDir(tmp_path).job_named(os.path.relpath(os.fsdecode(path), tmp_path))
    assert loaded.message["priority"] == b"3"  # uWSGI keeps it in the job
    with pytest.raises(ValueError, match="invalid priority b'high'"):
        uwsgi.spool({b"priority": b"high", b"spooler": bytes(tmp_path)})


# ---------------------------------------------------------------- spooling


def test_spool_takes_uwsgi_jobs_and_returns_the_path_as_bytes(tmp_path):
    uwsgi = compat.install()
    path = uwsgi.spool(
        {b"name": b"alpha", b"at": b"1700000000", b"spooler": bytes(tmp_path), b"body": b"\0"}
    )
    assert isinstance(path, bytes)
    assert Path(os.fsdecode(path)).parent == tmp_path
    loaded = SpoolDir(tmp_path).job_named(os.path.relpath(os.fsdecode(path), tmp_path))
    message, at = loaded.message, loaded.at
    assert at == 1700000000.0
    assert message == {
        "name": b"alpha",
        "at": b"1700000000",
        "spooler": bytes(tmp_path),
        "body": b"\0",
    }
    path = uwsgi.send_to_spooler({b"spooler": bytes(tmp_path), b"at": b"12.5", b"kind": b"x"})
    loaded = SpoolDir(tmp_path).job_named(os.path.relpath(os.fsdecode(path), tmp_path))
    message, at = loaded.message, loaded.at
    assert at == 12.5
    assert message == {"kind": b"x", "at": b"12.5", "spooler": bytes(tmp_path)}


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        # Measured on uWSGI 2.0.31 with Python 3: each raises ValueError.
        (({"a": "b"},), {}, "must contains only bytes"),
        (({b"a": "b"},), {}, "must contains only bytes"),
        (({"a": b"b"},), {}, "must contains only bytes"),
        (({b"a": b"b", b"at": 1.5},), {}, "must contains only bytes"),
        (({b"a": b"b", b"at": 1700000000},), {}, "must contains only bytes"),
        ((), {"a": b"b"}, "must contains only bytes"),  # keyword names are str
        (([b"a", b"b"],), {}, "must be a dictionary"),
    ],
)
def test_spool_refuses_what_uwsgi_on_python_3_refuses(tmp_path, args, kwargs, error):
    uwsgi = compat.install()
    with pytest.raises(ValueError, match=error):
        uwsgi.spool(*args, **kwargs)


def test_spool_ignores_keywords_after_a_dict_as_uwsgi_does(tmp_path):
    uwsgi = compat.install()
    path = uwsgi.spool({b"spooler": bytes(tmp_path), b"a": b"b"}, ignored="x", at=5)
    loaded = SpoolDir(tmp_path).job_named(os.path.relpath(os.fsdecode(path), tmp_path))
    message, at = loaded.message, loaded.at
    assert (message, at) == ({"a": b"b", "spooler": bytes(tmp_path)}, None)


def test_spool_refuses_a_bad_at(tmp_path):
    uwsgi = compat.install()
    with pytest.raises(ValueError, match="invalid at b'soon'"):
        uwsgi.spool({b"at": b"soon", b"spooler": bytes(tmp_path)})


@pytest.mark.parametrize(
    ("mule", "error"),
    [("pool", ValueError), (1.5, ValueError), ([1], ValueError)],
)
def test_mule_msg_refuses_what_uwsgi_on_python_3_refuses(mule, error):
    uwsgi = compat.install()
    with pytest.raises(error):
        uwsgi.mule_msg(b"x", mule)


def test_messages_of_another_type_are_refused_as_uwsgi_refuses_them():
    uwsgi = compat.install()
    with pytest.raises(TypeError, match="argument 1 must be str or read-only bytes-like"):
        uwsgi.mule_msg(42, 1)
    with pytest.raises(TypeError, match="argument 1 must be str, not bytes"):
        uwsgi.farm_msg(b"pool", b"x")


def test_uwsgi_environment_variables_are_options(monkeypatch):
    monkeypatch.setenv("UWSGI_XFOO", "bar")
    monkeypatch.setenv("UWSGI_HARAKIRI_VERBOSE", "1")
    monkeypatch.setenv("UWSGI_RELOADS", "3")  # uWSGI's own bookkeeping, not an option
    uwsgi = compat.install()
    assert uwsgi.opt["xfoo"] == b"bar"
    assert uwsgi.opt["harakiri-verbose"] == b"1"
    assert "reloads" not in uwsgi.opt


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(None, -1), ("done", -1), (-2, -2), (-1, -1), (0, 0), (7, 7)],
)
def test_a_spool_handler_gets_uwsgi_jobs_and_any_non_int_answer_means_retry(answer, expected):
    uwsgi = compat.install()
    jobs = []

    def handler(job):
        jobs.append(job)
        return answer

    uwsgi.spooler = handler
    assert uwsgi.spooler is handler
    assert DECLARED.spool_handler is not None
    job = {"name": "alpha", "data": b"\xff", "spooler_task_name": "/spool/job-1", "body": b"b"}
    assert DECLARED.spool_handler(job) == expected
    assert jobs == [
        {b"name": b"alpha", b"data": b"\xff", "spooler_task_name": b"job-1", "body": b"b"}
    ]
    del uwsgi.spooler
    assert DECLARED.spool_handler is None


def test_setting_the_mule_message_hook_hands_it_to_the_runtime():
    uwsgi = compat.install()

    def hook(message: bytes) -> None: ...

    uwsgi.mule_msg_hook = hook
    assert DECLARED.message_hook is hook
    compat.uninstall()
    assert DECLARED.message_hook is None


SPOOL_APP = (
    HELPERS
    + """
attempts = 0


def run_job(job):
    global attempts
    attempts += 1
    dump(f"job{attempts}", job)
    record("attempt", attempts)
    return None if attempts == 1 else uwsgi.SPOOL_OK  # None is not an int: retry


uwsgi.spooler = run_job


def send(num):
    dump("spooled", uwsgi.spool(
        {b"name": b"alpha", b"text": "caf\\u00e9".encode(), b"body": b"\\x00\\xff"}
    ))


uwsgi.register_signal(1, "worker1", send)
"""
)


def test_the_spooler_runs_jobs_in_uwsgi_form_and_retries_a_non_int_answer(start_app, tmp_path):
    compat.install()
    app = start_app(SPOOL_APP, workers=1, spooler=tmp_path / "spool", spooler_frequency=0.2)
    app.handle.signal(1)
    path = dumped(app, "spooled")
    assert isinstance(path, bytes)
    assert Path(os.fsdecode(path)).parent == tmp_path / "spool"
    attempts = app.wait_records("attempt", 2)
    assert [words[1:3] for words in attempts] == [["1", "spooler"], ["2", "spooler"]]
    expected = {
        b"name": b"alpha",
        b"text": "caf\u00e9".encode(),
        "body": b"\x00\xff",
        "spooler_task_name": os.path.basename(path),  # the file's name, as uWSGI gives it
    }
    assert dumped(app, "job1") == expected
    assert dumped(app, "job2") == expected
    wait_for(lambda: not os.path.exists(path), 10, "the done job's file to go")
    assert len(app.records("attempt")) == 2


# ---------------------------------------------------------------- signals, mules, farms


SIGNALS_APP = (
    HELPERS
    + """
def forked():
    record("forked")
    if uwsgi.worker_id() == 2:
        raise ValueError("a failing post-fork hook")


uwsgi.post_fork_hook = forked


def waiter(num):
    record("waiting")
    got = uwsgi.signal_wait(40)
    record("waited", repr(got), uwsgi.signal_received())


def check(num):
    dump("check", {
        "signal": uwsgi.signal(40),
        "registered": [uwsgi.signal_registered(3), uwsgi.signal_registered(99)],
        "spooler": uwsgi.i_am_the_spooler(),
    })


def ticked(num):
    record("ticked", num)


uwsgi.register_signal(3, "worker2", waiter)
uwsgi.register_signal(4, "worker1", check)
uwsgi.register_signal(5, "worker", ticked)
uwsgi.register_signal(6, "worker", ticked)
dump("scheduled", [uwsgi.add_rb_timer(5, 1, 1), uwsgi.add_cron(6, -1, -1, -1, -1, -1)])
"""
)


def test_signal_calls_return_what_uwsgi_returns(start_app):
    compat.install()
    app = start_app(SIGNALS_APP, workers=2)
    assert dumped(app, "scheduled") == [None, True]
    assert sorted(words[1] for words in app.wait_records("forked", 2)) == ["worker1", "worker2"]
    assert "ValueError: a failing post-fork hook" in app.log.read_text()
    app.handle.signal(3)
    app.wait_records("waiting", 1)
    app.handle.signal(4)
    assert dumped(app, "check") == {"signal": None, "registered": [True, None], "spooler": None}
    assert [words[1:4] for words in app.wait_records("waited", 1)] == [["b''", "40", "worker2"]]
    # A cron job also fires at the turn of the minute: count numbers, not lines.
    wait_for(
        lambda: {words[1] for words in app.records("ticked")} == {"5", "6"},
        10,
        f"the timer's and the cron job's signals; have {app.lines()}",
    )


MESSAGES_APP = (
    HELPERS
    + """
def mule_main():  # mule 1, as uWSGI's --mule=app:mule_main
    while True:
        message = uwsgi.mule_get_msg()
        record("mule-got", message.decode(), uwsgi.in_farm(), uwsgi.mule_id())


def farm_main():  # mule 2, the farm "pool"
    while True:
        message = uwsgi.farm_get_msg()
        record("farm-got", message.decode(), uwsgi.in_farm("pool"), uwsgi.in_farm("other"))


def report(num):
    dump("report", {
        "worker_id": uwsgi.worker_id(),
        "mule_id": uwsgi.mule_id(),
        "masterpid": uwsgi.masterpid(),
        "numproc": uwsgi.numproc,
        "opt": uwsgi.opt,
        "in_farm": uwsgi.in_farm(),
        "mule_msg": [uwsgi.mule_msg(b"direct", 1), uwsgi.mule_msg("by-name", b"pool")],
        "farm_msg": uwsgi.farm_msg("pool", b"farm-msg"),
        "refused": [refusal(lambda: uwsgi.mule_msg(b"x", "pool")),
                    refusal(lambda: uwsgi.mule_msg(b"x", b"nope"))],
    })


def refusal(call):
    try:
        call()
    except Exception as exc:
        return type(exc).__name__
    return "accepted"


uwsgi.register_signal(1, "worker1", report)
"""
)


def test_messages_and_identity_calls_behave_as_in_uwsgi(start_app):
    compat.install()
    app = start_app(
        MESSAGES_APP,
        workers=2,
        farms=["pool:2"],
        mule_loops=["app0:mule_main", "app0:farm_main"],
    )
    app.handle.signal(1)
    assert dumped(app, "report") == {
        "worker_id": 1,
        "mule_id": 0,
        "masterpid": app.handle.pid,
        "numproc": 2,
        "opt": {"master": True, "processes": b"2", "mules": b"2", "farm": b"pool:2"},
        "in_farm": None,
        "mule_msg": [True, True],
        "farm_msg": None,
        "refused": ["ValueError", "TargetError"],
    }
    assert [words[1:5] for words in app.wait_records("mule-got", 1)] == [
        ["direct", "None", "1", "mule1"]
    ]
    assert [words[1:5] for words in app.wait_records("farm-got", 2)] == [
        ["by-name", "True", "None", "mule2"],
        ["farm-msg", "True", "None", "mule2"],
    ]


LOCKS_APP = (
    HELPERS
    + """
def refusal(call):
    try:
        call()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "accepted"


def try_locks(num):
    dump(who(), [refusal(lambda: uwsgi.lock(1)), refusal(lambda: uwsgi.unlock(1)),
                 refusal(lambda: uwsgi.is_locked(1))])


uwsgi.register_signal(1, "spooler", try_locks)
uwsgi.register_signal(2, "worker1", try_locks)
"""
)


def test_the_spooler_cannot_lock_as_in_uwsgi(start_app, tmp_path):
    compat.install()
    app = start_app(LOCKS_APP, workers=1, spooler=True, locks=1)
    app.handle.signal(1)
    app.handle.signal(2)
    assert dumped(app, "spooler") == ["ValueError: The spooler cannot lock/unlock resources"] * 3
    assert dumped(app, "worker1") == ["accepted"] * 3
