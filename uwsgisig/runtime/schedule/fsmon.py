"""File monitors: ``uwsgi.add_file_monitor(signum, path)`` for the master's poll loop.

Two implementations with one interface (`FileMonitorProtocol`):

- `FileMonitor` (Linux): one inotify descriptor for every path. Register
  ``fileno()`` with the master's selector and call `FileMonitor.read` when it
  is readable. The watch mask is uWSGI's (``core/event.c``,
  ``event_queue_add_file_monitor``): ``IN_ATTRIB | IN_CREATE | IN_DELETE |
  IN_DELETE_SELF | IN_MODIFY | IN_MOVE_SELF | IN_MOVED_FROM | IN_MOVED_TO``.
- `PollingFileMonitor` (anywhere): compares ``stat`` snapshots of each path
  and, for a directory, of its entries. It has no descriptor (``fileno()``
  is -1); call `PollingFileMonitor.read` at `PollingFileMonitor.next_check`.

`create_file_monitor` picks inotify when it works, polling otherwise.

One signal per path per batch: uWSGI drains every queued inotify event in one
read and raises the monitor's signal once (``event_queue_ack_file_monitor``),
so ``touch new`` (IN_CREATE + IN_ATTRIB) is one signal, like an append, an
unlink or a mkdir. We do the same, and after the first event wait
``coalesce`` seconds (default 1 ms) before draining, so the events of one
shell command land in one batch. A path's watch is on the file or directory
itself, not recursive, and follows symlinks; after the path is deleted its
inotify watch ends (as in uWSGI), while the polling monitor keeps looking and
reports the path coming back.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from ...errors import MonitorPathError, ScheduleError, check_signal_number
from .timers import check_period

try:
    import inotify_simple
except (ImportError, AttributeError, OSError):  # not Linux, or no libc inotify
    inotify_simple = None

__all__ = [
    "DEFAULT_COALESCE",
    "DEFAULT_POLL_INTERVAL",
    "FileMonitor",
    "FileMonitorProtocol",
    "MonitorPathError",
    "PollingFileMonitor",
    "WATCH_MASK",
    "check_path",
    "create_file_monitor",
    "inotify_available",
]

DEFAULT_POLL_INTERVAL: Final = 0.5
"""Seconds between two checks of the polling monitor."""

DEFAULT_COALESCE: Final = 0.001
"""Seconds the inotify monitor waits after a first event so related events share a batch."""

# uWSGI's mask, spelled with the kernel's values so this module imports without inotify_simple.
_IN_MODIFY: Final = 0x002
_IN_ATTRIB: Final = 0x004
_IN_MOVED_FROM: Final = 0x040
_IN_MOVED_TO: Final = 0x080
_IN_CREATE: Final = 0x100
_IN_DELETE: Final = 0x200
_IN_DELETE_SELF: Final = 0x400
_IN_MOVE_SELF: Final = 0x800
_IN_Q_OVERFLOW: Final = 0x4000
_IN_IGNORED: Final = 0x8000

WATCH_MASK: Final = (
    _IN_ATTRIB
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MODIFY
    | _IN_MOVE_SELF
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
)
"""The inotify events watched on each path: uWSGI's mask."""


@runtime_checkable
class FileMonitorProtocol(Protocol):
    """What the master loop needs from a file monitor."""

    poll_interval: float | None
    """Seconds between checks for a polling monitor; None when ``fileno()`` wakes the loop."""

    def fileno(self) -> int:
        """The descriptor to wait on for readability, or -1 if there is none."""
        ...

    def next_check(self) -> float | None:
        """Monotonic time by which `read` must be called even if nothing woke the loop."""
        ...

    def add(self, path: str | os.PathLike[str], signum: int) -> None:
        """Raise ``signum`` when ``path`` (a file or a directory) changes."""
        ...

    def read(self) -> list[int]:
        """Return the signals to raise for the changes seen since the last call."""
        ...

    def close(self) -> None:
        """Release the monitor's resources; it cannot be used afterwards."""
        ...


def check_path(path: object) -> str:
    """Return ``path`` as a str if it names an existing file or directory, else raise."""
    if not isinstance(path, (str, os.PathLike)):
        raise ScheduleError(f"invalid file monitor path {path!r}: must be a str or path-like")
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ScheduleError(f"invalid file monitor path {path!r}: must be a non-empty str path")
    if not os.path.exists(text):
        raise _not_found(text)
    return text


def _not_found(path: str) -> MonitorPathError:
    return MonitorPathError(
        errno.ENOENT, "cannot monitor a path that does not exist (need a file or a directory)", path
    )


def _add_unique(signals: list[int], signum: int) -> None:
    # Registering the same (path, signal) twice must not double the signal.
    if signum not in signals:
        signals.append(signum)


def inotify_available() -> bool:
    """Whether `FileMonitor` (inotify) can be created on this machine."""
    if inotify_simple is None:
        return False
    try:
        inotify_simple.INotify().close()
    except OSError:
        return False
    return True


class FileMonitor:
    """inotify-backed monitor: readable ``fileno()`` means `read` has signals.

    Args:
        coalesce: Seconds to wait after finding events before draining the
            queue, so the events of one operation give one signal; 0 to
            read at once.
    """

    poll_interval: float | None = None

    def __init__(self, *, coalesce: float = DEFAULT_COALESCE) -> None:
        if inotify_simple is None:
            raise OSError(errno.ENOSYS, "inotify is not available; use PollingFileMonitor")
        if isinstance(coalesce, bool) or not isinstance(coalesce, (int, float)) or coalesce < 0:
            raise ScheduleError(f"invalid coalesce delay {coalesce!r}: must be seconds >= 0")
        self._coalesce = float(coalesce)
        self._inotify: Any = inotify_simple.INotify(nonblocking=True)
        self._signals: dict[int, list[int]] = {}  # watch descriptor -> signals, in order added

    def fileno(self) -> int:
        """The inotify descriptor."""
        return int(self._inotify.fileno())

    def next_check(self) -> float | None:
        """Always None: the descriptor wakes the loop."""
        return None

    def add(self, path: str | os.PathLike[str], signum: int) -> None:
        """Watch ``path`` (a file or a directory, not recursive) for ``signum``.

        Raises:
            MonitorPathError: ``path`` does not exist.
            OSError: inotify refused the watch (permissions, watch limit).
        """
        signum = check_signal_number(signum)
        text = check_path(path)
        try:
            wd = self._inotify.add_watch(text, WATCH_MASK)
        except FileNotFoundError:
            raise _not_found(text) from None
        except OSError as exc:
            reason = exc.strerror
            if exc.errno == errno.ENOSPC:
                reason = "inotify watch limit reached (sysctl fs.inotify.max_user_watches)"
            raise OSError(exc.errno, f"cannot monitor: {reason}", text) from None
        # The same inode added twice (or via two names) shares one watch descriptor.
        _add_unique(self._signals.setdefault(wd, []), signum)

    def read(self) -> list[int]:
        """Drain the queued events; return each affected path's signals once, in event order.

        Never blocks longer than the coalesce delay; returns [] if nothing is queued.
        """
        events = self._inotify.read(timeout=0)
        if events and self._coalesce:
            time.sleep(self._coalesce)
            events += self._inotify.read(timeout=0)
        signals: list[int] = []
        for event in events:
            if event.mask & _IN_Q_OVERFLOW:
                # Events were lost: every path may have changed.
                for watched in self._signals.values():
                    for signum in watched:
                        _add_unique(signals, signum)
            elif event.mask & _IN_IGNORED:
                # The watch is gone (path deleted); its DELETE_SELF was already counted.
                self._signals.pop(event.wd, None)
            else:
                for signum in self._signals.get(event.wd, ()):
                    _add_unique(signals, signum)
        return signals

    def close(self) -> None:
        """Close the inotify descriptor."""
        self._inotify.close()

    def __enter__(self) -> FileMonitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@attrs.frozen
class _Snapshot:
    """What the polling monitor compares: a path's stat and, for a directory, its entries'."""

    own: tuple[int, ...] | None  # None: the path does not exist
    entries: frozenset[tuple[str, tuple[int, ...]]] = frozenset()


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    # ctime catches chmod/chown (uWSGI's IN_ATTRIB); size catches appends
    # within one mtime tick.
    return (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _entry_key(st: os.stat_result) -> tuple[int, ...]:
    if stat.S_ISDIR(st.st_mode):
        # A subdirectory's times change with its contents; inotify on the parent
        # does not report that (not recursive), so neither do we.
        return (st.st_ino, st.st_mode)
    return _stat_key(st)


def _snapshot(path: str) -> _Snapshot:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return _Snapshot(None)
    if not stat.S_ISDIR(st.st_mode):
        return _Snapshot(_stat_key(st))
    entries: set[tuple[str, tuple[int, ...]]] = set()
    try:
        with os.scandir(path) as scan:
            for entry in scan:
                try:
                    entries.add((entry.name, _entry_key(entry.stat(follow_symlinks=False))))
                except FileNotFoundError:
                    continue  # removed while we were listing; the next check sees it
    except (FileNotFoundError, NotADirectoryError):
        return _Snapshot(None)
    return _Snapshot(_stat_key(st), frozenset(entries))


@attrs.define
class _Watch:
    path: str
    signals: list[int]
    last: _Snapshot


class PollingFileMonitor:
    """Portable monitor: compares ``stat`` snapshots every ``interval`` seconds.

    Changes between two checks give one signal per path, like one inotify
    batch. It may miss a rewrite that keeps the size within one tick of the
    filesystem's timestamps.

    Args:
        interval: Seconds between checks (a finite float > 0).
        clock: The monotonic clock `next_check` counts on.
    """

    def __init__(
        self,
        *,
        interval: float = DEFAULT_POLL_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = check_period(interval, name="poll interval")
        self.poll_interval: float | None = self._interval
        self._clock = clock
        self._watches: dict[str, _Watch] = {}
        self._next = clock() + self._interval
        self._closed = False

    def fileno(self) -> int:
        """Always -1: there is no descriptor, the loop wakes at `next_check`."""
        return -1

    def next_check(self) -> float | None:
        """Monotonic time of the next scheduled check."""
        return self._next

    def add(self, path: str | os.PathLike[str], signum: int) -> None:
        """Watch ``path`` (a file or a directory, not recursive) for ``signum``.

        Raises:
            MonitorPathError: ``path`` does not exist.
        """
        self._check_open()
        signum = check_signal_number(signum)
        text = check_path(path)
        key = os.path.realpath(text)  # two names of one path share a watch, as with inotify
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _Watch(text, [], _snapshot(text))
        _add_unique(watch.signals, signum)

    def read(self) -> list[int]:
        """Check every path now; return the signals of the paths that changed, in order added."""
        self._check_open()
        signals: list[int] = []
        for watch in self._watches.values():
            current = _snapshot(watch.path)
            if current != watch.last:
                watch.last = current
                for signum in watch.signals:
                    _add_unique(signals, signum)
        self._next = self._clock() + self._interval
        return signals

    def close(self) -> None:
        """Forget every path."""
        self._watches.clear()
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the file monitor is closed")

    def __enter__(self) -> PollingFileMonitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def create_file_monitor(
    *,
    polling: bool | None = None,
    interval: float = DEFAULT_POLL_INTERVAL,
    coalesce: float = DEFAULT_COALESCE,
) -> FileMonitor | PollingFileMonitor:
    """Return an inotify `FileMonitor` if possible, else a `PollingFileMonitor`.

    Args:
        polling: True forces polling, False forces inotify (OSError if it is
            unavailable), None chooses.
        interval: The polling monitor's seconds between checks.
        coalesce: The inotify monitor's batching delay in seconds.
    """
    if polling is None:
        polling = not inotify_available()
    if polling:
        return PollingFileMonitor(interval=interval)
    return FileMonitor(coalesce=coalesce)
