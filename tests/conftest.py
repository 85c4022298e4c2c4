"""Fixtures: a runtime started from a small app written into tmp_path.

Every app gets a preamble with ``record(*words)``, which appends one line
``<words> <who> <pid>`` to ``out.txt`` (O_APPEND, so lines from many
processes never interleave), and ``block()`` which parks the calling handler
until the test writes to ``release.fifo`` — a busy process on demand.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from uwsgisig import Runtime, RuntimeHandle
from uwsgisig.runtime.ipc.journal import close_journals
from uwsgisig.runtime.ipc.spool import SpoolDir
from uwsgisig.runtime.model.app import DECLARED
from uwsgisig.runtime.model.process import CURRENT

PREAMBLE = """
import os
import uwsgisig
from uwsgisig import Farm, Mule, Signal, lowlevel

OUT = {out!r}
FIFO = {fifo!r}


def who():
    if uwsgisig.worker_id():
        return f"worker{{uwsgisig.worker_id()}}"
    if uwsgisig.mule_id():
        return f"mule{{uwsgisig.mule_id()}}"
    if lowlevel.i_am_the_spooler():
        return "spooler"
    return "master"


def record(*words):
    line = " ".join(str(word) for word in words) + f" {{who()}} {{os.getpid()}}\\n"
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def block():
    fd = os.open(FIFO, os.O_RDONLY)
    try:
        os.read(fd, 1)
    finally:
        os.close(fd)
"""


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.01)


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` in /proc (``R``, ``S``, ``Z``...), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper counts as gone)."""
    return process_state(pid) not in (None, "Z", "X")


def children_of(pid: int) -> set[int]:
    """Pids whose parent is ``pid``, read from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def assert_all_gone(pids: set[int], timeout: float = 10.0) -> None:
    """Wait until none of ``pids`` is alive; fail naming the survivors."""
    wait_for(
        lambda: not [pid for pid in pids if pid_alive(pid)],
        timeout,
        f"processes {sorted(pid for pid in pids if pid_alive(pid))} to exit",
    )


class App:
    """A runtime under test, with its output file."""

    def __init__(self, handle: RuntimeHandle, path: Path) -> None:
        self.handle = handle
        self.dir = path
        self.out = path / "out.txt"
        self.fifo = path / "release.fifo"
        self.log = path / "log.txt"
        self.seen_pids: set[int] = set(handle.pids())

    def lines(self) -> list[list[str]]:
        """Every recorded line, split into words."""
        if not self.out.exists():
            return []
        return [line.split() for line in self.out.read_text().splitlines()]

    def records(self, first_word: str) -> list[list[str]]:
        """Recorded lines whose first word is ``first_word``."""
        return [words for words in self.lines() if words[0] == first_word]

    def wait_records(self, first_word: str, count: int, timeout: float = 10.0) -> list[list[str]]:
        """Wait until ``count`` lines start with ``first_word``; return them."""
        wait_for(
            lambda: len(self.records(first_word)) >= count,
            timeout,
            f"{count} records of {first_word!r}; have {self.lines()}",
        )
        return self.records(first_word)

    def pids_by_who(self) -> dict[str, int]:
        """Current pid of each process: 'master', 'worker1', 'mule2', 'spooler'."""
        infos = self.handle.processes()
        self.seen_pids.update(info.pid for info in infos if info.pid)
        return {(info.role + (str(info.id) if info.id else "")): info.pid for info in infos}

    def release(self) -> None:
        """Let one handler parked in ``block()`` go on."""
        fd = os.open(self.fifo, os.O_WRONLY)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)


@pytest.fixture(autouse=True)
def fresh_state() -> Iterator[None]:
    """Each test starts with an empty signal table, no declarations and no spool journal."""
    yield
    DECLARED.reset()
    CURRENT.reset()
    close_journals()


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """Start a runtime running ``source`` (after the preamble); stop it after the test.

    Teardown asserts that no process of the runtime survives.
    """
    started: list[App] = []

    def start(source: str, **options: object) -> App:
        out, fifo = tmp_path / "out.txt", tmp_path / "release.fifo"
        if not fifo.exists():
            os.mkfifo(fifo)
        path = tmp_path / f"app{len(started)}.py"
        path.write_text(PREAMBLE.format(out=str(out), fifo=str(fifo)) + textwrap.dedent(source))
        options.setdefault("log_file", tmp_path / "log.txt")
        handle = Runtime(str(path), **options).start()  # type: ignore[arg-type]
        app = App(handle, tmp_path)
        started.append(app)
        return app

    yield start
    # Stop every runtime before checking any: runtimes of one test share out.txt.
    for app in started:
        app.seen_pids.update(int(words[-1]) for words in app.lines() if words[-1].isdigit())
        app.seen_pids.update(children_of(app.handle.pid))
        app.handle.stop()
    for app in started:
        assert_all_gone(app.seen_pids)


def jobs_in(spool_dir: Path) -> list[Path]:
    """What the spool directory holds but the running spooler's mark (``.running-PID``)
    and the journals of live writers and their cursors (retired when their writer leaves)."""
    kept = (".running-", ".journal-", ".cursor-")
    return [entry for entry in spool_dir.iterdir() if not entry.name.startswith(kept)]


def spooled(spool: SpoolDir, message: dict[str, object], **options: object) -> Path:
    """Spool a job into ``spool`` as a job file (as a job that waits, or failed, is)."""
    return spool.put(message, as_file=True, **options)  # type: ignore[arg-type]
