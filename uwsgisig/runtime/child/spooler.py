"""The spooler's loop: the signals for the spooler, and the jobs of its directory.

It looks at its directory (`ipc.spool.SpoolDir`) when it starts, when a job
is spooled (a SPOOL frame) and every spooler frequency, and runs each due
job it can claim. A job's outcome decides what comes next: done (its file
is deleted), ignored (looked at again later), or failed: tried again after
the frequency (no ``retries``, uWSGI's way) or after a doubling, jittered
delay (`retry_delay`), until its last try sends it to the dead letters. At
start it counts the tries that dead spooler processes were in the middle of
(`Spooler.recover`). Each look takes the spool's journals in first
(`ipc.journal`).
"""

from __future__ import annotations

import logging
import os
import random
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from ..ipc import journal
from ..ipc.journal import Dispenser, JobRef, record_at, write_file
from ..ipc.spool import SPOOL_IGNORE, SPOOL_OK, Running, RunningMark, SpoolDir, SpooledJob
from ..wire.frames import Op
from .loop import SignalLoop

__all__ = ["RETRY_CAP", "Spooler", "retry_delay"]

log = logging.getLogger("uwsgisig")

# The longest wait between two tries of a job with retries, before jitter.
RETRY_CAP = 3600.0


def retry_delay(failures: int, base: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds before the next try of a job that failed ``failures`` times (from 1).

    ``base * 2 ** (failures - 1)``, at most `RETRY_CAP`, then a random part of
    its second half taken off ("equal jitter"), so jobs that failed together
    do not all come back at once: the delay is between half and all of it.
    """
    full = min(base * 2 ** min(failures - 1, 64), RETRY_CAP)
    return full / 2 + full / 2 * rand()


class Spooler:
    """The spooler's loop: signals for the spooler, and the jobs of its directory.

    ``clock`` (UNIX seconds) and ``rand`` are the time and the jitter, given
    by tests.
    """

    def __init__(
        self,
        spool: SpoolDir,
        handler: Callable[[dict[str, Any]], object] | None,
        frequency: float,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.spool = spool
        self.handler = handler
        self.frequency = frequency
        self.configured_frequency = frequency
        self.clock = clock
        self.rand = rand
        self._queue: deque[Path] = deque()
        self._not_before: dict[Path, float] = {}  # the clock's time of a job's next try
        self._next_scan = 0.0
        self._mark: RunningMark | None = None
        self._dispensers: deque[Dispenser] = deque()  # the journals of the last look

    def serve(self, loop: SignalLoop) -> None:
        """Run jobs and signal handlers until the master goes away."""
        self.recover()
        signals = loop.sources(signals=True, mail=())
        try:
            while not loop.leaving:
                delay = self.run_next()
                incoming = loop.next(delay, signals)
                if incoming is None:
                    continue
                op, num = incoming  # type: ignore[misc]
                if op == Op.SPOOL:
                    self._next_scan = 0.0  # a job was spooled: look at the directory now
                elif op == Op.FREQUENCY:
                    self.set_frequency(num)
                else:
                    loop.handle(op, num)
        finally:
            self._close_dispensers()
            if self._mark is not None:
                self._mark.close()

    def set_frequency(self, seconds: int) -> None:
        """Look at the jobs every ``seconds`` from now on (0: the configured frequency);
        the jobs waiting for the next look are looked at now."""
        self.frequency = float(seconds) if seconds else self.configured_frequency
        self._not_before.clear()  # an `at` or a retry time is read again from the job's file
        self._next_scan = 0.0

    def recover(self) -> None:
        """At start: clean what dead processes left, and count the jobs they were running."""
        removed = self.spool.remove_abandoned()
        if removed:
            log.warning(
                "removed %d unfinished job file(s) of processes that died inside spool(): %s",
                len(removed),
                ", ".join(path.name for path in removed),
            )
        for ran in self.spool.interrupted():
            self._recover_one(ran)
        self._mark = self.spool.running_mark()

    def _recover_one(self, ran: Running) -> None:
        """Count the try a dead spooler process was in the middle of."""
        path = self.spool.path / ran.name
        try:
            if path.exists() or ran.journal is None:
                job = self.spool.load(path)
            else:
                ref = record_at(self.spool.path / ran.journal, ran.offset, journal.BOOT_ID or "")
                if ref is None:
                    return  # not handed out after all: it runs from its journal
                job = self.spool.parse(ref.content, ran.name)
                self.spool.make_file(ref)
            log.error("spool job %s was running when its spooler died", ran.name)
            self._failed(path, job, "its spooler process died while running it", crashed=True)
        except (FileNotFoundError, ValueError):
            pass
        finally:
            ran.forget()

    def run_next(self) -> float:
        """Run the next due job, if any; return how long the loop may wait for signals."""
        now = self.clock()
        if not self._queue and now >= self._next_scan:
            self._scan(now)
        if self._queue:
            self._run(self._queue.popleft())
            return 0.0  # look for signals, then the next job
        while self._dispensers:
            ref = self._dispensers[0].next(journal.BOOT_ID or "", self._mark_ref)
            if ref is not None:
                self._run_ref(ref)
                return 0.0
            self._dispensers.popleft().close()
            if not self._dispensers:
                self.spool.retire_journals()
        return max(self._next_scan - self.clock(), 0.0)

    def _scan(self, now: float) -> None:
        self._next_scan = now + self.frequency
        self._close_dispensers()
        self._dispensers.extend(self.spool.dispensers())
        for path in self.spool.files():
            not_before = self._not_before.get(path, 0.0)
            if not_before > now:
                self._next_scan = min(self._next_scan, not_before)
                continue
            self._queue.append(path)

    def _close_dispensers(self) -> None:
        while self._dispensers:
            self._dispensers.popleft().close()

    def _mark_ref(self, ref: JobRef) -> None:
        if self._mark is None:
            self._mark = self.spool.running_mark()
        self._mark.set(ref.name, ref)

    def _run_ref(self, ref: JobRef) -> None:
        """Run a job handed out from a journal; it becomes a file unless it ends done."""
        path = self.spool.path / ref.name
        try:
            job = self.spool.parse(ref.content, path)
        except ValueError as exc:
            log.error("%s: it is kept as %s and never run", exc, path.name + ".bad")
            write_file(path.with_name(path.name + ".bad"), ref.content, sync=True)
            self._mark.clear()  # type: ignore[union-attr]
            return
        if self.handler is None:
            self.spool.make_file(ref)
            self._mark.clear()  # type: ignore[union-attr]
            self._wait_for_a_handler(path)
            return
        self._call_handler(path, job, ref)

    def _run(self, path: Path) -> None:
        claimed = self.spool.claim(path)
        if claimed is None:
            return  # done, or being run by another process of this spooler
        try:
            self._run_claimed(path)
        finally:
            os.close(claimed)

    def _run_claimed(self, path: Path) -> None:
        try:
            job = self.spool.load(path)
        except FileNotFoundError:
            return
        except ValueError as exc:
            log.error(
                "%s: it is renamed to %s and never run (a job file is written whole, then "
                "renamed: this one was written by something else, or damaged on disk)",
                exc,
                path.name + ".bad",
            )
            os.replace(path, path.with_name(path.name + ".bad"))
            return
        now = self.clock()
        due = max(job.at or 0.0, job.retry_at or 0.0)
        if due > now:
            self._later(path, due - now)
            return
        if self.handler is None:
            self._wait_for_a_handler(path)
            return
        self._call_handler(path, job)

    def _wait_for_a_handler(self, path: Path) -> None:
        log.warning("spool job %s waits: the app set no spool handler", path.name)
        self._later(path, self.frequency)

    def _call_handler(self, path: Path, job: SpooledJob, ref: JobRef | None = None) -> None:
        """Run ``job`` (of file ``path``, or of journal record ``ref``, already marked)."""
        if self._mark is None:
            self._mark = self.spool.running_mark()
        if ref is None:
            self._mark.set(str(path.relative_to(self.spool.path)))
        try:
            self._outcome(path, job, ref)
        finally:
            self._mark.clear()  # after the outcome is on disk: a crash before finds the job

    def _outcome(self, path: Path, job: SpooledJob, ref: JobRef | None) -> None:
        try:
            answer = self.handler({**job.message, "spooler_task_name": str(path)})  # type: ignore[misc]
        except Exception:
            log.exception("spool handler raised on job %s", path.name)
            self._as_file(ref)
            self._failed(path, job, traceback.format_exc())
            return
        except BaseException:  # the spooler leaves in the middle of the job: it runs again
            self._as_file(ref)
            raise
        if answer is None or answer == SPOOL_OK:
            self._not_before.pop(path, None)
            if ref is None:
                path.unlink(missing_ok=True)
            return
        self._as_file(ref)
        if answer == SPOOL_IGNORE:
            self._later(path, self.frequency)
        else:
            self._failed(path, job, f"the spool handler returned {answer!r}")

    def _as_file(self, ref: JobRef | None) -> None:
        """A job from a journal that did not end done goes on as a file."""
        if ref is not None:
            self.spool.make_file(ref)

    def _failed(self, path: Path, job: SpooledJob, reason: str, crashed: bool = False) -> None:
        """A try of ``job`` failed: try again later, or bury it if it has no tries left."""
        if job.retries is None:  # uWSGI's way: forever, at the next look
            if not crashed:  # (a job its spooler died in runs again at once, as in uWSGI)
                self._later(path, self.frequency)
            return
        attempts = job.attempts + 1
        if attempts > job.retries:
            grave = self.spool.bury(path, attempts_of(job, attempts, None), reason)
            self._not_before.pop(path, None)
            log.error(
                "spool job %s failed %d time(s), its last try: moved to %s (the reason is in "
                "%s.traceback)",
                path.name,
                attempts,
                grave,
                grave.name,
            )
            return
        delay = retry_delay(attempts, self.frequency, self.rand)
        self.spool.rewrite(path, attempts_of(job, attempts, self.clock() + delay))
        self._later(path, delay)
        log.warning(
            "spool job %s failed (try %d of %d): next try in %.3g s",
            path.name,
            attempts,
            job.retries + 1,
            delay,
        )

    def _later(self, path: Path, delay: float) -> None:
        when = self.clock() + delay
        self._not_before[path] = when
        self._next_scan = min(self._next_scan, when)


def attempts_of(job: SpooledJob, attempts: int, retry_at: float | None) -> SpooledJob:
    """``job`` after ``attempts`` failed tries, next tried at ``retry_at``."""
    return attrs.evolve(job, attempts=attempts, retry_at=retry_at)
