"""What an operator reaches the master by: its pidfile, touch files, status reports.

The pidfile holds the master's pid and a newline, written when the master
starts and removed when it stops (if it still holds that pid), so
``uwsgisig reload PIDFILE`` and ``kill -HUP $(cat PIDFILE)`` find it.

A touch file is looked at once a second: when its modification time changes
(``touch FILE``, or the file appears), its action runs, as uWSGI's
``--touch-reload`` does.

`describe` is the report SIGUSR1 (everything) and SIGUSR2 (the workers)
write to the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from ..model.table import SignalTable, handler_name
from ..schedule.events import EventSources
from .peers import Slot

__all__ = [
    "Pidfile",
    "TouchFiles",
    "describe_slots",
    "log_schedule",
    "reopen_log",
    "rotate_log",
]

log = logging.getLogger("uwsgisig")

TOUCH_INTERVAL = 1.0  # seconds between looks at the touch files


class Pidfile:
    """The file that holds the master's pid while it runs."""

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, pid: int) -> None:
        """Write ``pid`` atomically: a reader never sees half a number."""
        partial = f"{self.path}.{pid}.tmp"
        with open(partial, "w") as file:
            file.write(f"{pid}\n")
        os.replace(partial, self.path)

    def remove(self, pid: int) -> None:
        """Remove the file if it still holds ``pid`` (a newer master may own it now)."""
        with contextlib.suppress(OSError, ValueError):
            with open(self.path) as file:
                if int(file.read().strip()) != pid:
                    return
            os.unlink(self.path)


class TouchFiles:
    """Files whose modification time, when it changes, runs an action."""

    def __init__(self, watched: Iterable[tuple[str, str, Callable[[], None]]]) -> None:
        # (path, what the action is, for the log line, the action)
        self._watched = [(path, what, action, _mtime(path)) for path, what, action in watched]

    def __bool__(self) -> bool:
        return bool(self._watched)

    def look(self) -> None:
        """Run the action of every file touched since the last look."""
        for index, (path, what, action, seen) in enumerate(self._watched):
            now = _mtime(path)
            if now == seen:
                continue
            self._watched[index] = (path, what, action, now)
            if now is None:
                continue  # removed: touching it again will act
            log.info("%s was touched: %s", path, what)
            action()


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def describe_slots(slots: Sequence[Slot], running: Callable[[Slot], str]) -> list[str]:
    """One line per process: id, pid, what it does, signals run, respawns, age."""
    now = time.monotonic()
    lines = []
    for slot in slots:
        if slot.vacant:
            continue
        if slot.pid is None:
            lines.append(f"{slot.describe()}: no process (being respawned)")
            continue
        attached = ", attached" if slot.attached else ""
        lines.append(
            f"{slot.describe()} (pid {slot.pid}{attached}): {running(slot)}; "
            f"{slot.progress.received} signals taken, {slot.backlog()} queued, "
            f"respawned {slot.respawns} times, up {now - slot.started_at:.1f} s"
        )
    return lines


def log_schedule(table: SignalTable, events: EventSources) -> None:
    """At start: the signal table, the timers and the crons, in words."""
    for num, entry in sorted(table.entries().items()):
        log.info("signal %d -> %s: %s", num, entry.target, handler_name(entry.handler))
    now = time.monotonic()
    for num, period, due in events.timers.listing():
        log.info("timer: signal %d every %g s, next in %.1f s", num, period, due - now)
    wall = datetime.now()
    for num, spec in events.cron.specs():
        upcoming = spec.next_match(wall)
        log.info(
            "cron: signal %d at '%s', next %s",
            num,
            spec,
            upcoming.strftime("%Y-%m-%d %H:%M") if upcoming else "not within two days",
        )


def _log_handlers(path: str | None) -> list[logging.FileHandler]:
    return [
        handler
        for handler in log.handlers
        if isinstance(handler, logging.FileHandler)
        and path is not None
        and os.path.abspath(path) == handler.baseFilename
    ]


def reopen_log(path: str | None) -> None:
    """Open the log file ``path`` again (after logrotate moved it)."""
    for handler in _log_handlers(path):
        old = handler.setStream(handler._open())
        if old is not None:
            old.close()
    log.info("log file reopened")


def rotate_log(path: str | None) -> None:
    """Rename the log file with the time, then open a new one."""
    if path is None or not _log_handlers(path):
        log.warning("master FIFO 'L': there is no log file to rotate (give --log-file)")
        return
    rotated = f"{path}.{time.strftime('%Y%m%d-%H%M%S')}"
    os.rename(path, rotated)
    reopen_log(path)
    log.info("log file rotated: the old one is %s", rotated)
