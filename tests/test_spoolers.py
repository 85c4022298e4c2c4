"""Several spoolers, several processes per spooler, priorities, the spooler calls, and
kills in the middle of the flow: every job runs, on one process, and nothing is lost."""

from __future__ import annotations

import collections
import json
import os
import signal

import pytest

from tests.conftest import assert_all_gone, children_of, wait_for
from uwsgisig import compat, spooler
from uwsgisig.runtime.ipc.spool import SpoolDir

pytestmark = pytest.mark.timeout(120)

RECORDING = """
import time
from uwsgisig import spooler

@spooler.handler
def run(job):
    directory = os.path.basename(os.path.dirname(job["spooler_task_name"]))
    record("job", job["n"], directory)
    if job.get("park"):
        block()
"""


def test_each_spooler_runs_the_jobs_spooled_to_it_by_name_or_directory(start_app, tmp_path):
    first, second = tmp_path / "mail", tmp_path / "reports"
    app = start_app(
        RECORDING
        + """
@Signal(1).register_handler(target="worker1")
def go(num):
    for n in range(3):
        spooler.spool(n=n)                     # the first spooler: the default
        spooler.spool(n=10 + n, spooler="reports")          # by name
        spooler.spool(n=20 + n, spooler=SECOND)             # by directory
""".replace("SECOND", repr(str(second))),
        workers=1,
        spooler=[first, second],
    )
    app.handle.signal(1)
    jobs = app.wait_records("job", 9)
    by_dir = collections.defaultdict(set)
    for words in jobs:
        by_dir[words[2]].add(int(words[1]))
    assert by_dir == {"mail": {0, 1, 2}, "reports": {10, 11, 12, 20, 21, 22}}
    spoolers = {info.pid for info in app.handle.processes() if info.role == "spooler"}
    assert len(spoolers) == 2
    # Each directory is served by its own process.
    pids = {name: {int(words[-1]) for words in jobs if words[2] == name} for name in by_dir}
    assert len(pids["mail"]) == len(pids["reports"]) == 1
    assert pids["mail"] | pids["reports"] == spoolers


def test_the_processes_of_one_spooler_share_its_jobs_each_job_once(start_app, tmp_path):
    spool_dir = tmp_path / "spool"
    app = start_app(
        RECORDING
        + """
@Signal(1).register_handler(target="worker1")
def go(num):
    spooler.spool(n=-1, park=True)  # one process parks in it...
    spooler.spool(n=-2, park=True)  # ...and another in this one: they run side by side
    for n in range(60):
        spooler.spool(n=n)
""",
        workers=1,
        spooler=spool_dir,
        spooler_processes=3,
    )
    app.handle.signal(1)

    def parked() -> dict[int, int] | None:
        pids = {int(words[1]): int(words[-1]) for words in app.records("job") if int(words[1]) < 0}
        return pids if len(pids) == 2 else None

    pids = wait_for(parked, what="both parked jobs to start")
    assert pids[-1] != pids[-2]  # two processes at once, each parked in its job
    jobs = app.wait_records("job", 62)
    numbers = [int(words[1]) for words in jobs]
    assert sorted(numbers) == sorted([-1, -2, *range(60)])  # each exactly once
    app.release()
    wait_for(lambda: not SpoolDir(spool_dir).pending(), 30, "the spool to empty")
    assert len(app.handle.processes()) == 1 + 1 + 3  # master, worker, three spoolers


def test_jobs_run_by_priority_lower_first_then_those_without_one(start_app, tmp_path):
    spool_dir = tmp_path / "spool"
    for n, priority in [(1, None), (2, 5), (3, 1), (4, None), (5, 3), (6, 1), (7, 10)]:
        spooler.spool({"n": n}, priority=priority, spooler=spool_dir)
    app = start_app(RECORDING, workers=1, spooler=spool_dir, spooler_ordered=True)
    jobs = app.wait_records("job", 7)
    assert [int(words[1]) for words in jobs] == [3, 6, 5, 2, 7, 1, 4]
    assert {words[2] for words in jobs} == {"1", "3", "5", "10", "spool"}


def test_the_spooler_calls_from_a_worker(start_app, tmp_path):
    spool_dir = tmp_path / "spool"
    app = start_app(
        """
import json
from uwsgisig import spooler

@spooler.handler
def run(job):
    record("ran", job["n"])

@Signal(1).register_handler(target="worker1")
def go(num):
    spooler.set_period(3600)  # nothing runs again before an hour, or a new job
    path = spooler.spool(n=1, at=2e9)  # far in the future: it waits
    record("calls", json.dumps({
        "pids": spooler.get_pids(),
        "tasks": spooler.get_tasks(),
        "task": spooler.read_task_file(path),
        "not_a_task": spooler.read_task_file(OUT),
    }).replace(" ", ""))
""",
        workers=1,
        spooler=spool_dir,
        spooler_processes=2,
    )
    app.handle.signal(1)
    calls = json.loads(app.wait_records("calls", 1)[0][1])
    spoolers = sorted(info.pid for info in app.handle.processes() if info.role == "spooler")
    assert sorted(calls["pids"]) == spoolers
    (task,) = calls["tasks"]
    assert task.startswith(str(spool_dir))
    assert calls["task"] == {"n": 1, "spooler_task_name": task}
    assert calls["not_a_task"] == {}


def test_compat_spooler_calls_answer_as_uwsgis(start_app, tmp_path):
    compat.install()
    spool_dir = tmp_path / "spool"
    app = start_app(
        """
import uwsgi

def run(job):
    return uwsgi.SPOOL_OK

uwsgi.spooler = run

def go(num):
    path = uwsgi.spool({b"a": b"b", b"at": b"2000000000"})
    record("calls", repr([
        uwsgi.spooler_pid() in uwsgi.spooler_pids(),
        uwsgi.spooler_jobs() == [path],
        uwsgi.spooler_get_task(path.decode()),
        uwsgi.set_spooler_frequency(5),
    ]).replace(" ", ""))

uwsgi.register_signal(1, "worker1", go)
""",
        workers=1,
        spooler=spool_dir,
    )
    app.handle.signal(1)
    calls = app.wait_records("calls", 1)[0][1]
    assert calls.startswith("[True,True,{b'a':b'b',b'at':b'2000000000','spooler_task_name':b'job-")
    assert calls.endswith("},True]")


def live_spooler(app) -> int | None:
    """The pid of a spooler process that runs now (one being respawned has pid 0)."""
    return next(
        (info.pid for info in app.handle.processes() if info.role == "spooler" and info.pid),
        None,
    )


def test_killing_spooler_processes_mid_flow_loses_no_job(start_app, tmp_path):
    spool_dir = tmp_path / "spool"
    total = 200
    app = start_app(
        """
import time
from uwsgisig import spooler

@spooler.handler
def run(job):
    time.sleep(0.005)
    record("job", job["n"])

@Signal(1).register_handler(target="worker1")
def go(num):
    for n in range(TOTAL):
        spooler.spool(n=n)
    record("spooled")
""".replace("TOTAL", str(total)),
        workers=1,
        spooler=spool_dir,
        spooler_processes=2,
    )
    app.handle.signal(1)
    app.wait_records("spooled", 1)
    killed = 0
    for count in (20, 60, 100):
        app.wait_records("job", count)
        victim = wait_for(lambda: live_spooler(app), 30, "a live spooler process")
        assert isinstance(victim, int)
        assert victim > 0  # never os.kill(0): that is the whole process group
        os.kill(victim, signal.SIGKILL)
        killed += 1
        app.seen_pids.add(victim)
    wait_for(lambda: len({w[1] for w in app.records("job")}) == total, 60, "every job")
    runs = collections.Counter(int(words[1]) for words in app.records("job"))
    assert set(runs) == set(range(total))  # none lost
    duplicates = sum(times - 1 for times in runs.values())
    assert duplicates <= killed  # at most the job each killed process was running
    wait_for(lambda: not SpoolDir(spool_dir).pending(), 30, "the spool to empty")


def test_killing_the_whole_runtime_mid_flow_loses_no_job(start_app, tmp_path):
    spool_dir = tmp_path / "spool"
    total = 150
    handler = """
import time
from uwsgisig import spooler

@spooler.handler
def run(job):
    time.sleep(0.005)
    record("job", job["n"])
"""
    for n in range(total):
        spooler.spool({"n": n}, spooler=spool_dir)
    first = start_app(handler, workers=1, spooler=spool_dir, spooler_processes=2)
    first.wait_records("job", 40)
    pids = {first.handle.pid, *children_of(first.handle.pid)}
    os.kill(first.handle.pid, signal.SIGKILL)  # the master: its children die with it
    assert_all_gone(pids)
    first.seen_pids |= pids
    second = start_app(handler, workers=1, spooler=spool_dir, spooler_processes=2)
    wait_for(lambda: len({w[1] for w in second.records("job")}) == total, 60, "every job")
    runs = collections.Counter(int(words[1]) for words in second.records("job"))
    assert set(runs) == set(range(total))
    assert sum(times - 1 for times in runs.values()) <= 2  # one per killed spooler process
    wait_for(lambda: not SpoolDir(spool_dir).pending(), 30, "the spool to empty")
    assert not [p for p in spool_dir.iterdir() if p.name.endswith(".tmp")]


def test_a_new_frequency_applies_at_once_to_the_jobs_waiting_for_a_look(start_app, tmp_path):
    app = start_app(
        """
from uwsgisig import spooler

tries = 0

@spooler.handler
def run(job):
    global tries
    tries += 1
    record("try", tries)
    return spooler.SPOOL_RETRY if tries == 1 else spooler.SPOOL_OK

@Signal(1).register_handler(target="worker1")
def go(num):
    spooler.spool(n=1)

@Signal(2).register_handler(target="worker1")
def faster(num):
    spooler.set_period(1)
""",
        workers=1,
        spooler=tmp_path / "spool",
        spooler_frequency=3600,  # the retry would come in an hour
    )
    app.handle.signal(1)
    app.wait_records("try", 1)
    app.handle.signal(2)
    assert [words[1] for words in app.wait_records("try", 2, timeout=30)] == ["1", "2"]


def test_several_senders_at_once_each_job_runs_once(start_app, tmp_path):
    spool_dir = tmp_path / "spool"
    app = start_app(
        """
from uwsgisig import spooler

@spooler.handler
def run(job):
    record("job", job["n"])

@Signal(1).register_handler(target="workers")
def go(num):
    for i in range(50):
        spooler.spool(n=f"{uwsgisig.worker_id()}-{i}")
    record("spooled")
""",
        workers=4,
        spooler=spool_dir,
        spooler_processes=2,
    )
    app.handle.signal(1)
    app.wait_records("spooled", 4)
    wait_for(lambda: len(app.records("job")) >= 200, 60, "200 jobs")
    wait_for(lambda: not SpoolDir(spool_dir).pending(), 30, "the spool to empty")
    runs = collections.Counter(words[1] for words in app.records("job"))
    assert runs == {f"{w}-{i}": 1 for w in range(1, 5) for i in range(50)}
