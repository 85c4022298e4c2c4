"""The spool: jobs kept in a directory (`child.spooler` runs them).

``spool()`` appends a job to its process's journal in the directory with
one data sync (`ipc.journal`): once it has returned, the job survives a
crash of any process or of the machine. The spooler runs the jobs of the
journals in the order they were spooled; a job that does not end done at
its first try (it failed, was ignored, or waits) becomes a job file, as
does a job spooled with ``at`` or ``priority``: written to a temporary
file, synced and renamed, so a job file is either whole or absent. A job
file is deleted only when the handler reports its job done, so a job
interrupted by a crash runs again at the next start: at least once.

A job file is JSON: ``{"v": 2, "job": {...}, "at": ..., "retries": ...,
"attempts": ..., "retry_at": ...}``, the job's values tagged as
`wire.jobs` writes them (files of the first format, ``{"message": ...,
"binary": ...}``, are still read).

**Retries.** A job spooled with ``retries=N`` runs at most N + 1 times: each
failure (the handler raised, returned `SPOOL_RETRY`, or its process died
while running it) is counted in the job's file, and the next try waits an
exponential, jittered delay (`child.spooler.retry_delay`); after the last one the job
moves to the dead-letter directory (``dead/`` inside the spool directory),
with the reason beside it in ``NAME.traceback``. A job without ``retries``
is tried again every spooler frequency, forever, as in uWSGI.

**Crashes.** Before it runs a job, the spooler writes the job's name (and
its journal record) into ``.running-PID``; a spooler that starts and finds
such a file of a dead process counts that job's attempt as failed (a job
from a journal becomes a file for it). Temporary files of processes that
died inside ``spool()`` are removed when a spooler starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..wire.jobs import JobValue, JobValueError, check_job, decode_job, encode_job
from . import journal
from .journal import (
    CURSOR_PREFIX,
    TEMPORARY_PREFIX,
    Dispenser,
    JobRef,
    journal_for,
    journal_of,
    journals,
    read_header,
    read_records,
    retire,
    sync_directory,
    waiting,
    write_file,
)

__all__ = [
    "DEAD_DIR",
    "SPOOL_IGNORE",
    "SPOOL_OK",
    "SPOOL_RETRY",
    "JobValueError",
    "Running",
    "RunningMark",
    "SpoolDir",
    "SpooledJob",
    "check_job",
    "check_priority",
]

log = logging.getLogger("uwsgisig")

# The answers of a spool handler, with uWSGI's values.
SPOOL_OK = -2  # done: the job's file is deleted
SPOOL_RETRY = -1  # run it again later
SPOOL_IGNORE = 0  # not for this handler: keep it, look again later

JOB_PREFIX = "job-"
RUNNING_PREFIX = ".running-"
DEAD_DIR = "dead"
_sequence = itertools.count()


@attrs.frozen
class SpooledJob:
    """A job as its file holds it."""

    message: dict[str, JobValue]
    at: float | None = None  # the UNIX time before which it does not run
    retries: int | None = None  # None: tried again forever, as in uWSGI
    attempts: int = 0  # failed tries so far
    retry_at: float | None = None  # the UNIX time of its next try, after a failure


def check_priority(priority: object) -> None:
    """Raise ValueError unless ``priority`` is None or a whole number >= 0."""
    _check_count("priority", priority, " (lower runs first)")


def _check_count(what: str, value: object, meaning: str = "") -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"invalid {what} {value!r}: give a whole number >= 0{meaning}, or None")


class SpoolDir:
    """A directory of job files, named so that sorting them gives their order."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.dead = self.path / DEAD_DIR

    def put(
        self,
        message: Mapping[str, Any],
        *,
        at: float | None = None,
        retries: int | None = None,
        priority: int | None = None,
        as_file: bool = False,
    ) -> Path:
        """Spool a job durably; return the path of its job file (in the ``priority``
        subdirectory, if any).

        A job to run now goes to this process's journal (`ipc.journal`), and its
        file exists only if it does not end done at its first try; a job with
        ``at`` or ``priority`` (or ``as_file``) is a job file at once.
        """
        _check_count("retries", retries)
        check_priority(priority)
        job = SpooledJob(check_job(message), at=at, retries=retries)
        path = self._new_path(priority)
        writer = journal_for(self.path)
        if writer is None or as_file or at is not None or priority is not None:
            path.parent.mkdir(exist_ok=True)
            write_file(path, _encode(job), sync=True)
        else:
            writer.append(path.name, _encode(job))
        return path

    def _new_path(self, priority: int | None) -> Path:
        name = f"{JOB_PREFIX}{time.time_ns():020d}-{os.getpid()}-{next(_sequence):08d}"
        return (self.path if priority is None else self.path / str(priority)) / name

    def rewrite(self, path: Path, job: SpooledJob) -> None:
        """Replace the job's file with ``job``, durably (a failure is counted in it)."""
        write_file(path, _encode(job), sync=True)

    def make_file(self, ref: JobRef) -> Path:
        """Write the job file of journal job ``ref``, durably: it goes on as a file."""
        path = self.path / ref.name
        write_file(path, ref.content, sync=True)
        return path

    def dispensers(self) -> list[Dispenser]:
        """A `Dispenser` for each journal, oldest first (none where there are no journals).

        After a restart of the machine, the jobs of the journals not retired before it
        become files first (`ipc.journal.Dispenser.refile`).
        """
        boot = journal.BOOT_ID
        if boot is None:
            return []
        opened = []
        for path in journals(self.path):
            with contextlib.suppress(FileNotFoundError):
                opened.append(Dispenser(path))
        made = [name for dispenser in opened for name in dispenser.refile(boot)]
        if made:
            log.warning(
                "the machine restarted before %d spooled job(s) were done with: they are "
                "files now, and run again (some may have run before: at least once): %s",
                len(made),
                ", ".join(made),
            )
        return opened

    def retire_journals(self) -> int:
        """Delete the journals that are done with (`ipc.journal.retire`); how many."""
        retired = 0
        for path in journals(self.path):
            retired += retire(path, journal.BOOT_ID, self._pinned)
        for cursor in self.path.glob(f"{CURSOR_PREFIX}*"):
            if not journal_of(cursor).exists():
                cursor.unlink(missing_ok=True)  # its journal retired, then the process died
        return retired

    def _pinned(self) -> set[str]:
        """The journals the running marks name."""
        return {ran.journal for ran in self._marks() if ran.journal is not None}

    def files(self) -> list[Path]:
        """Every job file in the order they run: by priority (lowest first), then oldest first.

        As uWSGI orders them (``--spooler-ordered``): the numbered subdirectories
        first, then the jobs spooled with no priority.
        """
        priorities = sorted(
            (int(entry.name), entry)
            for entry in self.path.iterdir()
            if entry.name.isdigit() and entry.is_dir()
        )
        return [
            job
            for directory in [*(entry for _, entry in priorities), self.path]
            for job in _jobs_in(directory)
        ]

    def pending(self) -> list[Path]:
        """Every job waiting: the job files (`files`), then the jobs in journals that a
        dead spooler process was running or that were not handed out yet, each as the
        path its file will have."""
        files = self.files()
        interrupted = [
            self.path / ran.name
            for ran in self._marks()
            if ran.journal is not None and not _alive(_mark_pid(ran.mark))
        ]
        return [
            *files,
            *(path for path in interrupted if path not in files),
            *(
                self.path / name
                for path in journals(self.path)
                for name, _ in waiting(path, journal.BOOT_ID)
            ),
        ]

    def _marks(self) -> list[Running]:
        found = []
        for entry in self.path.glob(f"{RUNNING_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                ran = Running.parse(entry.read_text(), entry)
                if ran is not None:
                    found.append(ran)
        return found

    def job_named(self, name: str) -> SpooledJob | None:
        """The job of file ``name`` (relative to the directory), from its file or its
        journal; None if there is none."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            return self.load(self.path / name)
        for path in journals(self.path):
            with contextlib.suppress(FileNotFoundError, ValueError):
                data = path.read_bytes()
                for record in read_records(data, read_header(data)[1]):
                    if record.name == name:
                        return self.parse(record.content, name)
        return None

    def claim(self, path: Path) -> int | None:
        """Lock job ``path`` for this process: its descriptor, or None if another spooler
        process has it (or it is gone). Closing the descriptor (or dying) releases it."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Still the file at that path? (It may have been done, or rewritten, meanwhile.)
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                raise FileNotFoundError(path)
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            return None
        return fd

    @classmethod
    def load(cls, path: Path) -> SpooledJob:
        """The job in ``path`` (in any directory); ValueError if the file is not a job."""
        return cls.parse(path.read_bytes(), path)

    @staticmethod
    def parse(content: bytes, where: object) -> SpooledJob:
        """The job in a job file's ``content``; ValueError naming ``where`` if it is none."""
        try:
            data = json.loads(content)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            if data.get("v") == 2:
                return SpooledJob(
                    decode_job(data["job"]),
                    at=data["at"],
                    retries=data["retries"],
                    attempts=data["attempts"],
                    retry_at=data["retry_at"],
                )
            message: dict[str, JobValue] = dict(data["message"])  # the first format
            for key, value in data["binary"].items():
                message[key] = decode_job({key: {"b": value}})[key]
            return SpooledJob(message, at=data["at"])
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"{where} is not a spool job: {exc}") from exc

    def bury(self, path: Path, job: SpooledJob, reason: str) -> Path:
        """Move a job that used up its tries to the dead-letter directory, ``reason`` beside it."""
        self.dead.mkdir(exist_ok=True)
        grave = self.dead / path.name
        write_file(grave, _encode(job), sync=True)
        (self.dead / f"{path.name}.traceback").write_text(reason)
        path.unlink(missing_ok=True)
        sync_directory(path.parent)  # the spool directory, or its priority's
        return grave

    def remove_abandoned(self) -> list[Path]:
        """Remove the temporary files of processes that died inside ``spool()``."""
        removed = []
        for entry in self.path.iterdir():
            if entry.name.startswith(TEMPORARY_PREFIX) and not _alive(_writer_pid(entry.name)):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed.append(entry)
        return removed

    def interrupted(self) -> list[Running]:
        """The jobs that spoolers now dead were running; each one's mark stays (it keeps the
        job's journal) until `Running.forget`.

        A mark is taken by renaming it ``.running-PID.taken-ME``. One whose taker died
        too, before it was done with it, is taken again: the job is not left behind.
        """
        found = []
        for entry in list(self.path.iterdir()):
            if not entry.name.startswith(RUNNING_PREFIX):
                continue
            mark, _, taker = entry.name.partition(".taken-")
            holder = taker or mark[len(RUNNING_PREFIX) :]  # the process it belongs to
            if not holder.isdigit() or int(holder) == os.getpid() or _alive(int(holder)):
                continue
            taken = entry.with_name(f"{mark}.taken-{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                os.rename(entry, taken)  # one spooler process takes a dead one's mark
                ran = Running.parse(taken.read_text(), taken)
                if ran is None:
                    taken.unlink()
                else:
                    found.append(ran)
        return found

    def running_mark(self) -> RunningMark:
        """This process's mark of the job it runs."""
        return RunningMark(self.path / f"{RUNNING_PREFIX}{os.getpid()}")


@attrs.frozen
class Running:
    """What a running mark says: the job's file name, and its journal record, if it ran
    from a journal."""

    name: str
    journal: str | None  # the journal's file name
    offset: int  # where its record starts
    mark: Path

    @classmethod
    def parse(cls, text: str, mark: Path) -> Running | None:
        """The job a mark's ``text`` names; None if it names none (between jobs)."""
        name, _, ref = text.strip().partition("\t")
        if not name:
            return None
        journal_name, _, offset = ref.partition("\t")
        return cls(name, journal_name or None, int(offset or 0), mark)

    def forget(self) -> None:
        """Remove the mark (what it named is taken care of)."""
        self.mark.unlink(missing_ok=True)


class RunningMark:
    """``.running-PID``: the name of the job this spooler runs (and its journal record,
    if it runs from a journal), empty between jobs.

    Written without a sync: it must outlive the process, not the machine.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)

    def set(self, name: str, ref: JobRef | None = None) -> None:
        """Say that job ``name`` runs now (from journal record ``ref``)."""
        text = name if ref is None else f"{name}\t{ref.journal.name}\t{ref.offset}"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text.encode(), 0)

    def clear(self) -> None:
        """Say that no job runs."""
        os.ftruncate(self._fd, 0)

    def close(self) -> None:
        """Remove the mark (the spooler leaves)."""
        os.close(self._fd)
        self.path.unlink(missing_ok=True)


def _jobs_in(directory: Path) -> list[Path]:
    return sorted(entry for entry in directory.iterdir() if entry.name.startswith(JOB_PREFIX))


def _encode(job: SpooledJob) -> bytes:
    return json.dumps(
        {
            "v": 2,
            "job": encode_job(job.message),
            "at": job.at,
            "retries": job.retries,
            "attempts": job.attempts,
            "retry_at": job.retry_at,
        }
    ).encode("utf-8")


def _writer_pid(name: str) -> int:
    """The pid in a temporary file's name (``.job-NAME-PID-SEQ.tmp``), 0 if none."""
    parts = name.removesuffix(".tmp").split("-")
    return int(parts[-2]) if len(parts) >= 2 and parts[-2].isdigit() else 0


def _mark_pid(mark: Path) -> int:
    """The pid in a running mark's name (``.running-PID``, maybe ``.taken-PID2`` after)."""
    pid = mark.name[len(RUNNING_PREFIX) :].split(".", 1)[0]
    return int(pid) if pid.isdigit() else 0


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, its parent has not reaped it yet) does not."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc: as kill() said
