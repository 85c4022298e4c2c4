"""The spool: jobs kept as files in a directory, run in order by the spooler.

``spool()`` writes a job to a temporary file, syncs it, and renames it into
the directory, so a job is either whole or absent, and once ``spool()`` has
returned it survives a crash of any process, the runtime's restart included.
The spooler runs the app's spool handler on each job in the order they were
spooled and deletes a job's file only when the handler reports it done, so a
job interrupted by a crash runs again at the next start: at least once.

A job is a JSON file: ``{"message": {...}, "binary": {...}, "at": ...}``,
with text values in ``message`` and bytes values base64-encoded in ``binary``.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..wire.frames import Op

if TYPE_CHECKING:
    from ..child.loop import SignalLoop

__all__ = [
    "SPOOL_IGNORE",
    "SPOOL_OK",
    "SPOOL_RETRY",
    "SpoolDir",
    "Spooler",
    "check_job",
]

log = logging.getLogger("uwsgisig")

# The answers of a spool handler, with uWSGI's values.
SPOOL_OK = -2  # done: the job's file is deleted
SPOOL_RETRY = -1  # run it again later
SPOOL_IGNORE = 0  # not for this handler: keep it, look again later

JOB_PREFIX = "job-"
_sequence = itertools.count()


def check_job(message: Mapping[str, Any]) -> dict[str, str | bytes]:
    """Return ``message`` as a job's dict; raise if a key is not str or a value not str/bytes."""
    if not isinstance(message, Mapping):
        raise TypeError(f"a spool job is a dict of str to str or bytes, not {message!r}")
    job: dict[str, str | bytes] = {}
    for key, value in message.items():
        if not isinstance(key, str):
            raise TypeError(f"invalid spool job key {key!r}: keys are str")
        if not isinstance(value, (str, bytes)):
            raise TypeError(
                f"invalid spool job value {value!r} for {key!r}: values are str or bytes"
            )
        job[key] = value
    return job


class SpoolDir:
    """A directory of job files, named so that sorting them gives their order."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def put(self, message: Mapping[str, Any], *, at: float | None = None) -> Path:
        """Write a job durably; return its path."""
        job = check_job(message)
        content = json.dumps(
            {
                "message": {k: v for k, v in job.items() if isinstance(v, str)},
                "binary": {
                    k: base64.b64encode(v).decode("ascii")
                    for k, v in job.items()
                    if isinstance(v, bytes)
                },
                "at": at,
            }
        ).encode("utf-8")
        name = f"{JOB_PREFIX}{time.time_ns():020d}-{os.getpid()}-{next(_sequence):08d}"
        temporary = self.path / f".{name}.tmp"
        with open(temporary, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        final = self.path / name
        os.replace(temporary, final)
        self._sync_directory()
        return final

    def _sync_directory(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def pending(self) -> list[Path]:
        """Every job file, oldest first."""
        return sorted(entry for entry in self.path.iterdir() if entry.name.startswith(JOB_PREFIX))

    def load(self, path: Path) -> tuple[dict[str, str | bytes], float | None]:
        """The job's message and its ``at`` time; ValueError if the file is not a job."""
        try:
            data = json.loads(path.read_bytes())
            message: dict[str, str | bytes] = dict(data["message"])
            for key, value in data["binary"].items():
                message[key] = base64.b64decode(value, validate=True)
            at = data["at"]
        except (KeyError, TypeError, AttributeError, binascii.Error, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not a spool job: {exc}") from exc
        return message, at


class Spooler:
    """The spooler's loop: signals for the spooler, and the jobs of its directory."""

    def __init__(
        self,
        spool: SpoolDir,
        handler: Callable[[dict[str, Any]], object] | None,
        frequency: float,
    ) -> None:
        self.spool = spool
        self.handler = handler
        self.frequency = frequency
        self._queue: deque[Path] = deque()
        self._not_before: dict[Path, float] = {}  # monotonic time of a job's next try
        self._next_scan = 0.0

    def serve(self, loop: SignalLoop) -> None:
        """Run jobs and signal handlers until the master goes away."""
        signals = loop.sources(signals=True, mail=())
        while not loop.leaving:
            delay = self.run_next()
            incoming = loop.next(delay, signals)
            if incoming is None:
                continue
            op, num = incoming  # type: ignore[misc]
            if op == Op.SPOOL:
                self._next_scan = 0.0  # a job was spooled: look at the directory now
            else:
                loop.handle(op, num)

    def run_next(self) -> float:
        """Run the next due job, if any; return how long the loop may wait for signals."""
        now = time.monotonic()
        if not self._queue and now >= self._next_scan:
            self._scan(now)
        if self._queue:
            self._run(self._queue.popleft())
            return 0.0  # look for signals, then the next job
        return max(self._next_scan - time.monotonic(), 0.0)

    def _scan(self, now: float) -> None:
        self._next_scan = now + self.frequency
        for path in self.spool.pending():
            not_before = self._not_before.get(path, 0.0)
            if not_before > now:
                self._next_scan = min(self._next_scan, not_before)
                continue
            self._queue.append(path)

    def _run(self, path: Path) -> None:
        try:
            message, at = self.spool.load(path)
        except FileNotFoundError:
            return
        except ValueError as exc:
            log.error("%s: it is renamed to %s and never run", exc, path.name + ".bad")
            os.replace(path, path.with_name(path.name + ".bad"))
            return
        if at is not None and at > time.time():
            self._later(path, at - time.time())
            return
        if self.handler is None:
            log.warning("spool job %s waits: the app set no spool handler", path.name)
            self._later(path, self.frequency)
            return
        job: dict[str, Any] = {**message, "spooler_task_name": str(path)}
        try:
            answer = self.handler(job)
        except Exception:
            log.exception("spool handler raised on job %s: it runs again later", path.name)
            self._later(path, self.frequency)
            return
        if answer is None or answer == SPOOL_OK:
            self._not_before.pop(path, None)
            path.unlink(missing_ok=True)
            return
        self._later(path, self.frequency)

    def _later(self, path: Path, delay: float) -> None:
        when = time.monotonic() + delay
        self._not_before[path] = when
        self._next_scan = min(self._next_scan, when)
