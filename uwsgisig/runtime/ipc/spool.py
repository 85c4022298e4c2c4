"""The spool: jobs kept as files in a directory (`child.spooler` runs them).

``spool()`` writes a job to a temporary file, syncs it, and renames it into
the directory, so a job is either whole or absent, and once ``spool()`` has
returned it survives a crash of any process, the runtime's restart included.
The spooler runs the app's spool handler on each job in the order they were
spooled and deletes a job's file only when the handler reports it done, so a
job interrupted by a crash runs again at the next start: at least once.

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

**Crashes.** Before it runs a job, the spooler writes the job's name into
``.running-PID``; a spooler that starts and finds such a file of a dead
process counts that job's attempt as failed. Temporary files of processes
that died inside ``spool()`` are removed when a spooler starts.
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

__all__ = [
    "DEAD_DIR",
    "SPOOL_IGNORE",
    "SPOOL_OK",
    "SPOOL_RETRY",
    "JobValueError",
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
TEMPORARY_PREFIX = ".job-"
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
    ) -> Path:
        """Write a job durably; return its path (in the ``priority`` subdirectory, if any)."""
        _check_count("retries", retries)
        check_priority(priority)
        job = SpooledJob(check_job(message), at=at, retries=retries)
        name = f"{JOB_PREFIX}{time.time_ns():020d}-{os.getpid()}-{next(_sequence):08d}"
        directory = self.path
        if priority is not None:
            directory = self.path / str(priority)
            directory.mkdir(exist_ok=True)
        final = directory / name
        self._write(final, job)
        return final

    def rewrite(self, path: Path, job: SpooledJob) -> None:
        """Replace the job's file with ``job``, durably (a failure is counted in it)."""
        self._write(path, job)

    def _write(self, final: Path, job: SpooledJob) -> None:
        content = json.dumps(
            {
                "v": 2,
                "job": encode_job(job.message),
                "at": job.at,
                "retries": job.retries,
                "attempts": job.attempts,
                "retry_at": job.retry_at,
            }
        ).encode("utf-8")
        temporary = final.with_name(
            f"{TEMPORARY_PREFIX}{final.name}-{os.getpid()}-{next(_sequence):08d}.tmp"
        )
        with open(temporary, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, final)
        _sync_directory(final.parent)

    def pending(self) -> list[Path]:
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

    @staticmethod
    def load(path: Path) -> SpooledJob:
        """The job in ``path`` (in any directory); ValueError if the file is not a job."""
        try:
            data = json.loads(path.read_bytes())
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
            raise ValueError(f"{path} is not a spool job: {exc}") from exc

    def bury(self, path: Path, job: SpooledJob, reason: str) -> Path:
        """Move a job that used up its tries to the dead-letter directory, ``reason`` beside it."""
        self.dead.mkdir(exist_ok=True)
        grave = self.dead / path.name
        self._write(grave, job)
        (self.dead / f"{path.name}.traceback").write_text(reason)
        path.unlink(missing_ok=True)
        _sync_directory(path.parent)  # the spool directory, or its priority's
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

    def interrupted(self) -> list[str]:
        """Names of the jobs that spoolers now dead were running; their marks are removed."""
        names = []
        for entry in list(self.path.iterdir()):
            if not entry.name.startswith(RUNNING_PREFIX):
                continue
            pid = entry.name[len(RUNNING_PREFIX) :]
            if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
                continue
            taken = entry.with_name(f"{entry.name}.taken-{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                os.rename(entry, taken)  # one spooler process takes a dead one's mark
                name = taken.read_text().strip()
                taken.unlink()
                if name:
                    names.append(name)
        return names

    def running_mark(self) -> RunningMark:
        """This process's mark of the job it runs."""
        return RunningMark(self.path / f"{RUNNING_PREFIX}{os.getpid()}")


class RunningMark:
    """``.running-PID``: the name of the job this spooler runs, empty between jobs.

    Written without a sync: it must outlive the process, not the machine.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)

    def set(self, name: str) -> None:
        """Say that job ``name`` runs now."""
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, name.encode(), 0)

    def clear(self) -> None:
        """Say that no job runs."""
        os.ftruncate(self._fd, 0)

    def close(self) -> None:
        """Remove the mark (the spooler leaves)."""
        os.close(self._fd)
        self.path.unlink(missing_ok=True)


def _jobs_in(directory: Path) -> list[Path]:
    return sorted(entry for entry in directory.iterdir() if entry.name.startswith(JOB_PREFIX))


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _writer_pid(name: str) -> int:
    """The pid in a temporary file's name (``.job-NAME-PID-SEQ.tmp``), 0 if none."""
    parts = name.removesuffix(".tmp").split("-")
    return int(parts[-2]) if len(parts) >= 2 and parts[-2].isdigit() else 0


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
