"""The spool journal: one data sync per spooled job and no file per job; jobs handed out
from journals each to exactly one spooler process; a job that does not end done becomes a
file; journals retired once done with; after a machine restart nothing spooled is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests.conftest import wait_for
from uwsgisig.runtime.child.spooler import Spooler
from uwsgisig.runtime.ipc import journal
from uwsgisig.runtime.ipc.journal import (
    RECORD,
    Dispenser,
    JobRef,
    close_journals,
    read_header,
    read_records,
)
from uwsgisig.runtime.ipc.spool import SPOOL_IGNORE, SPOOL_RETRY, SpoolDir
from uwsgisig.spooler import read_task_file

pytestmark = pytest.mark.timeout(90)

THIS_BOOT = journal.BOOT_ID or "this-boot"


@pytest.fixture(autouse=True)
def boot(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same boot id everywhere (a machine without one gets a made-up one)."""
    monkeypatch.setattr(journal, "BOOT_ID", THIS_BOOT)


def journals(directory: Path) -> list[Path]:
    return sorted(directory.glob(".journal-*"))


def names_in(path: Path) -> list[str]:
    data = path.read_bytes()
    return [record.name for record in read_records(data, read_header(data)[1])]


class Recorder:
    """A spool handler that records the ``n`` of each job and answers ``answer``."""

    def __init__(self, answer: object = None) -> None:
        self.answer = answer
        self.seen: list[object] = []

    def __call__(self, job: dict) -> object:
        self.seen.append(job["n"])
        return self.answer


def spooler(directory: Path, handler: object, now: float = 1000.0) -> Spooler:
    return Spooler(SpoolDir(directory), handler, 10.0, clock=lambda: now, rand=lambda: 1.0)  # type: ignore[arg-type]


def run_all(spool: Spooler, limit: int = 10_000) -> None:
    """Run every job due now."""
    for _ in range(limit):
        if spool.run_next() > 0:
            return
    raise AssertionError("the spooler never ran out of jobs")


def test_a_job_to_run_now_is_a_journal_record_and_runs_without_a_file(tmp_path):
    spool = SpoolDir(tmp_path)
    paths = [spool.put({"n": n}, retries=1) for n in range(3)]
    assert not any(path.exists() for path in paths)
    [only] = journals(tmp_path)
    assert read_header(only.read_bytes())[0] == THIS_BOOT
    assert names_in(only) == [path.name for path in paths]
    assert spool.pending() == paths
    assert read_task_file(str(paths[1])) == {"n": 1, "spooler_task_name": str(paths[1])}
    handler = Recorder()
    run_all(spooler(tmp_path, handler))
    assert handler.seen == [0, 1, 2]
    assert spool.pending() == []
    assert not list(tmp_path.glob("job-*"))  # no job file was ever needed


def test_jobs_with_at_or_priority_are_files_at_once(tmp_path):
    spool = SpoolDir(tmp_path)
    later = spool.put({"n": 1}, at=5.0)
    first = spool.put({"n": 2}, priority=0)
    assert later.exists()
    assert first.exists()
    assert not journals(tmp_path)


@pytest.mark.parametrize(
    ("answer", "attempts"), [(SPOOL_RETRY, 1), (RuntimeError("boom"), 1), (SPOOL_IGNORE, 0)]
)
def test_a_journal_job_that_does_not_end_done_goes_on_as_a_file(tmp_path, answer, attempts):
    spool = SpoolDir(tmp_path)
    path = spool.put({"n": 7}, retries=3)

    def handler(job: dict) -> object:
        if isinstance(answer, BaseException):
            raise answer
        return answer

    run_all(spooler(tmp_path, handler))
    job = spool.load(path)
    assert job.message == {"n": 7}
    assert job.attempts == attempts
    assert spool.pending() == [path]


def test_without_a_handler_a_journal_job_waits_as_a_file(tmp_path):
    path = SpoolDir(tmp_path).put({"n": 1})
    run_all(spooler(tmp_path, None))
    assert SpoolDir(tmp_path).load(path).message == {"n": 1}


def test_spooler_processes_dispensing_one_journal_each_get_different_jobs(tmp_path):
    spool = SpoolDir(tmp_path)
    spooled = [spool.put({"n": n}).name for n in range(200)]
    [path] = journals(tmp_path)
    children = []
    for _ in range(3):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.close(read)
                names = []
                dispenser = Dispenser(path)
                while (ref := dispenser.next(THIS_BOOT, lambda ref: None)) is not None:
                    names.append(ref.name)
                os.write(write, "\n".join(names).encode())
            finally:
                os._exit(0)
        os.close(write)
        children.append((pid, read))
    handed = []
    for pid, read in children:
        with os.fdopen(read, "rb") as pipe:
            handed += pipe.read().decode().split()
        assert os.waitpid(pid, 0)[1] == 0
    assert sorted(handed) == sorted(spooled)  # each one once


def spooler_dies_in_a_job(directory: Path) -> None:
    """A spooler process takes the next journal job and dies running it."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            Spooler(
                SpoolDir(directory), lambda job: os.kill(os.getpid(), signal.SIGKILL), 1.0
            ).run_next()
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)


def test_a_journal_job_its_spooler_died_in_becomes_a_file_with_the_try_counted(tmp_path):
    spool = SpoolDir(tmp_path)
    path = spool.put({"n": 1}, retries=2)
    close_journals()
    spooler_dies_in_a_job(tmp_path)
    assert spool.pending() == [path]  # no file yet, and still a job
    assert spool.retire_journals() == 0  # the dead spooler's mark holds its journal
    spooler(tmp_path, Recorder()).recover()
    assert spool.load(path).attempts == 1
    assert spool.retire_journals() == 1
    handler = Recorder()
    run_all(spooler(tmp_path, handler, now=1e12))
    assert handler.seen == [1]
    assert spool.pending() == []


def test_a_recovery_that_dies_midway_is_taken_up_by_the_next_spooler(tmp_path):
    spool = SpoolDir(tmp_path)
    path = spool.put({"n": 1}, retries=2)
    close_journals()
    spooler_dies_in_a_job(tmp_path)
    [mark] = tmp_path.glob(".running-*")
    # A replacement took the mark to recover the job, and was killed before it was done.
    os.rename(mark, mark.with_name(f"{mark.name}.taken-999999999"))
    assert spool.pending() == [path]
    spooler(tmp_path, Recorder()).recover()
    assert spool.load(path).attempts == 1
    # Only the recovering process's own mark is left: the taken one was done with.
    assert [m.name for m in tmp_path.glob(".running-*")] == [f".running-{os.getpid()}"]
    handler = Recorder()
    run_all(spooler(tmp_path, handler, now=1e12))
    assert handler.seen == [1]
    assert spool.pending() == []


def test_a_mark_taken_by_a_live_spooler_is_left_to_it(tmp_path):
    spool = SpoolDir(tmp_path)
    path = spool.put({"n": 1})
    close_journals()
    spooler_dies_in_a_job(tmp_path)
    [mark] = tmp_path.glob(".running-*")
    taken = mark.with_name(f"{mark.name}.taken-{os.getppid()}")  # a live process
    os.rename(mark, taken)
    assert spool.interrupted() == []
    assert taken.exists()
    assert spool.pending() == [path]


def test_a_mark_written_before_the_cursor_moved_leaves_the_job_to_its_journal(tmp_path):
    spool = SpoolDir(tmp_path)
    path = spool.put({"n": 1})
    [journal_path] = journals(tmp_path)
    mark = spool.running_mark()
    mark.set(path.name, JobRef(journal_path, read_header(journal_path.read_bytes())[1], "", b""))
    os.rename(mark.path, tmp_path / ".running-999999999")  # a dead process's mark
    spool_of_recovery = spooler(tmp_path, Recorder())
    spool_of_recovery.recover()  # the cursor had not moved: the job was never handed out
    assert not path.exists()
    handler = Recorder()
    run_all(spooler(tmp_path, handler))
    assert handler.seen == [1]


def test_after_a_machine_restart_an_unretired_journals_jobs_become_files(
    tmp_path, monkeypatch, caplog
):
    spool = SpoolDir(tmp_path)
    spooled = [spool.put({"n": n}, retries=1) for n in range(4)]
    handler = Recorder()
    run_all(spooler(tmp_path, lambda job: handler(job) if job["n"] != 3 else SPOOL_RETRY))
    assert handler.seen == [0, 1, 2]
    assert spooled[3].exists()  # it failed: a file
    close_journals()  # the machine goes down before the journal retired
    monkeypatch.setattr(journal, "BOOT_ID", "the-next-boot")
    assert spool.pending() == [spooled[3], *spooled[:3]]
    again = Recorder()
    run_all(spooler(tmp_path, again, now=1e12))
    assert "the machine restarted before 3 spooled job(s)" in caplog.text
    assert sorted(again.seen) == [0, 1, 2, 3]  # at least once: the done ones run again
    assert not journals(tmp_path)


def test_a_record_cut_short_by_a_crash_ends_the_journal(tmp_path):
    spool = SpoolDir(tmp_path)
    spool.put({"n": 1})
    close_journals()
    [path] = journals(tmp_path)
    payload = b"job-cut\0" + b'{"v": 2}'
    with open(path, "ab") as file:
        file.write(RECORD.pack(len(payload), zlib.crc32(payload)) + payload[:5])
    handler = Recorder()
    run_all(spooler(tmp_path, handler))
    assert handler.seen == [1]
    assert not journals(tmp_path)


def test_a_record_being_written_is_handed_out_once_it_is_whole(tmp_path):
    spool = SpoolDir(tmp_path)
    spool.put({"n": 1})
    [path] = journals(tmp_path)
    content = (
        b'{"v": 2, "job": {"n": 2}, "at": null, "retries": null, "attempts": 0, "retry_at": null}'
    )
    payload = b"job-99999999999999999999-1-00000001\0" + content
    record = RECORD.pack(len(payload), zlib.crc32(payload)) + payload
    handler = Recorder()
    with open(path, "ab") as file:  # as its writer would, in two parts
        file.write(record[:20])
        file.flush()
        run_all(spooler(tmp_path, handler))
        assert handler.seen == [1]
        file.write(record[20:])
    run_all(spooler(tmp_path, handler))
    assert handler.seen == [1, 2]


def test_a_writer_moves_to_a_new_journal_past_its_size_or_age_and_the_old_ones_retire(
    tmp_path, monkeypatch
):
    spool = SpoolDir(tmp_path)
    monkeypatch.setattr(journal, "ROTATE_BYTES", 200)
    paths = [spool.put({"text": "x" * 150, "n": n}) for n in range(3)]
    monkeypatch.setattr(journal, "ROTATE_BYTES", 1 << 20)
    monkeypatch.setattr(journal, "ROTATE_SECONDS", 0.0)
    paths.append(spool.put({"n": 3}))
    assert len(journals(tmp_path)) == 4
    handler = Recorder()
    run_all(spooler(tmp_path, handler))
    assert handler.seen == [0, 1, 2, 3]
    [current] = journals(tmp_path)  # all but the one this process writes to retired
    assert names_in(current) == [paths[3].name]


def test_a_forked_child_writes_its_own_journal_and_leaves_its_parents_locked(tmp_path):
    spool = SpoolDir(tmp_path)
    spool.put({"n": "parent"})
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            SpoolDir(tmp_path).put({"n": "child"})
            os.write(write, b"1")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.close(read)
    assert os.waitpid(pid, 0)[1] == 0
    handler = Recorder()
    run_all(spooler(tmp_path, handler))
    assert sorted(handler.seen) == ["child", "parent"]  # type: ignore[type-var]
    [left] = journals(tmp_path)  # the child's retired: the parent still writes its own
    assert len(names_in(left)) == 1


WRITER = """
import sys
from uwsgisig.runtime.ipc import journal
from uwsgisig.runtime.ipc.spool import SpoolDir
journal.BOOT_ID = sys.argv[2]
spool = SpoolDir(sys.argv[1])
n = 0
while True:
    path = spool.put({"n": n, "pad": "x" * 500})
    sys.stdout.write(path.name + "\\n")
    sys.stdout.flush()
    n += 1
"""


def spool_until_killed(directory: Path, after: int) -> list[str]:
    """Run a process that spools jobs in a loop; SIGKILL it after ``after`` returned;
    the names it reported as spooled."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory), THIS_BOOT],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        names = [writer.stdout.readline().strip() for _ in range(after)]  # type: ignore[union-attr]
        os.kill(writer.pid, signal.SIGKILL)
        rest = writer.stdout.read().split()  # type: ignore[union-attr]
    finally:
        writer.kill()
        writer.wait(timeout=10)
    assert writer.returncode == -signal.SIGKILL
    return names + rest


def test_writers_killed_in_spool_lose_no_job_and_leave_nothing_behind(tmp_path):
    spooled = []
    for after in (1, 7, 30, 60, 90):
        spooled += spool_until_killed(tmp_path, after)
    names = []
    spool = Spooler(SpoolDir(tmp_path), lambda job: names.append(job["spooler_task_name"]), 1.0)
    spool.recover()
    run_all(spool)
    ran = [os.path.basename(name) for name in names]
    assert set(spooled) <= set(ran)  # every job whose spool() returned, and at most
    assert len(ran) - len(spooled) <= 5  # the one each writer was inside when killed
    assert len(set(ran)) == len(ran)
    assert not journals(tmp_path)
    assert not list(tmp_path.glob(".job-*"))  # no temporary file of a killed writer


def test_where_the_boot_cannot_be_told_each_job_is_a_file_synced_on_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(journal, "BOOT_ID", None)
    path = SpoolDir(tmp_path).put({"n": 1})
    assert path.exists()
    assert not journals(tmp_path)


def test_a_failed_journal_write_fails_spool_and_leaves_no_job(tmp_path, monkeypatch):
    spool = SpoolDir(tmp_path)
    spool.put({"n": 1})

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", full)
    with pytest.raises(OSError, match="No space left"):
        spool.put({"n": 2})
    monkeypatch.undo()
    monkeypatch.setattr(journal, "BOOT_ID", THIS_BOOT)
    third = spool.put({"n": 3})  # a new journal: the failed one was closed
    assert len(journals(tmp_path)) == 2
    handler = Recorder()
    run_all(spooler(tmp_path, handler))
    assert handler.seen == [1, 3]
    assert names_in(journals(tmp_path)[0]) == [third.name]


def test_journals_of_workers_are_retired_by_the_spooler_once_they_exit(start_app, tmp_path):
    spool_dir = tmp_path / "spool"
    app = start_app(
        """
        from uwsgisig import spooler

        @spooler.handler
        def run(job):
            record("job", job["n"])

        @Signal(1).register_handler(target="workers")
        def go(num):
            spooler.spool(n=str(num))
            record("spooled")
    """,
        workers=2,
        spooler=spool_dir,
        spooler_frequency=1,
    )
    app.handle.signal(1)
    app.wait_records("job", 2)
    assert len(journals(spool_dir)) == 2  # one for each worker
    app.handle.reload()
    wait_for(lambda: not journals(spool_dir), what="the spooler to retire both journals")
