"""External events: the timers, crons and file monitors that raise signals in the master.

An event is declared with a value (`TimerEvent`, `CronEvent`, `FileEvent`):
in the master before fork (the app module), or by a child after fork, which
sends the value to the master as a JSON payload (`encode` / `decode`). The
master keeps every event in one `EventSources`, which tells its loop how long
it may sleep and which signals are due when it wakes. Events fire in the
master only, and the master routes their signals like any other.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import datetime

import attrs

from ...errors import ScheduleError, check_signal_number
from .cron import CronSpec, CronTable, local_now
from .fsmon import FileMonitor, PollingFileMonitor, check_path, create_file_monitor
from .timers import Timer, TimerHeap, TimerKind, check_iterations, check_period

__all__ = [
    "CronEvent",
    "Event",
    "EventSources",
    "FileEvent",
    "TimerEvent",
    "arm",
    "decode",
    "change_slot",
    "encode",
    "mid_period_offset",
    "ms_timer_event",
    "rb_timer_event",
    "timer_event",
    "unique_length",
]

# Past the moment a cron may fire by this much: float rounding, or the monotonic clock running
# a hair ahead of the wall clock, never wakes the loop just before it (to find nothing due).
CRON_MARGIN = 0.001


# The shortest period a timer may be asked for: uWSGI's ms timers count whole
# milliseconds, and a shorter one would keep the master ticking, not routing.
MIN_PERIOD = 0.001  # seconds


def check_requested_period(value: object, *, name: str = "period", unit: str = "seconds") -> float:
    """``value`` as a float, if it is a finite number of at least 1 ms; else raise."""
    in_ms = unit == "milliseconds"
    period = check_period(value, name=name, unit=unit)
    if period < (MIN_PERIOD * 1000 if in_ms else MIN_PERIOD):
        shortest = "1 millisecond" if in_ms else f"{MIN_PERIOD:g} seconds"
        raise ScheduleError(
            f"invalid timer {name} {value!r}: must be at least {shortest}, the shortest timer"
        )
    return period


@attrs.frozen
class TimerEvent:
    """Raise ``signum`` every ``period`` seconds; ``iterations`` times, or forever if 0.

    ``unique``: once per tick across the cluster, on the node that leases the tick
    (`model.cluster.slot_of`); its ticks fall in the middle of the wall clock's periods.
    """

    signum: int = attrs.field(converter=check_signal_number)
    period: float = attrs.field(converter=check_requested_period)
    iterations: int = attrs.field(default=0, converter=check_iterations)
    kind: TimerKind = attrs.field(default=TimerKind.TIMER, converter=TimerKind)
    unique: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))


def timer_event(signum: int, seconds: float, unique: bool = False) -> TimerEvent:
    """The event of ``add_timer(signum, seconds)``: tick forever every ``seconds``."""
    return TimerEvent(signum, seconds, 0, TimerKind.TIMER, unique)


def rb_timer_event(
    signum: int, seconds: float, iterations: int = 0, unique: bool = False
) -> TimerEvent:
    """The event of ``add_rb_timer(signum, seconds, iterations)``; 0 iterations: forever."""
    return TimerEvent(signum, seconds, iterations, TimerKind.RB_TIMER, unique)


def ms_timer_event(signum: int, ms: float, unique: bool = False) -> TimerEvent:
    """The event of ``add_ms_timer(signum, ms)``: tick forever every ``ms`` milliseconds."""
    period = check_requested_period(ms, name="interval", unit="milliseconds") / 1000.0
    return TimerEvent(signum, period, 0, TimerKind.MS_TIMER, unique)


def mid_period_offset(now: float, period: float) -> float:
    """Seconds from UNIX time ``now`` to the next middle of a ``period``: where the
    ticks of a unique timer fall on every node, so that each names its period alike
    (`model.cluster.slot_of`) though their clocks differ by a little."""
    return ((0.5 - now / period) % 1.0) * period or period


def unique_length(event: Event) -> float:
    """The seconds of a unique event's tick: a timer's period, a cron's minute; 0 for a
    file monitor, whose changes are told apart by the path's stat (`change_slot`)."""
    if isinstance(event, TimerEvent):
        return event.period
    return 60.0 if isinstance(event, CronEvent) else 0.0


def change_slot(path: str) -> int:
    """A change of ``path`` as every node that sees it names it: its modification time (ns)
    and size, or 0 once it is gone."""
    try:
        stat = os.stat(path)
    except OSError:
        return 0
    return stat.st_mtime_ns * 1_000_003 + stat.st_size


def arm(event: TimerEvent, start: float) -> Timer:
    """The timer of ``event`` with its schedule counted from the monotonic time ``start``."""
    return Timer(event.signum, event.period, event.iterations, start, event.kind)


@attrs.frozen
class CronEvent:
    """Raise ``signum`` in every wall-clock minute that ``spec`` matches (``unique``: on
    one node of the cluster)."""

    signum: int = attrs.field(converter=check_signal_number)
    spec: CronSpec = attrs.field(validator=attrs.validators.instance_of(CronSpec))
    unique: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))


def _existing_path(value: object) -> str:
    # Absolute: the master resolves it, and a child's working directory may differ.
    return os.path.abspath(check_path(value))


@attrs.frozen
class FileEvent:
    """Raise ``signum`` when the file or directory ``path`` changes (not recursive;
    ``unique``: on one node of the cluster for each change, told by the path's stat)."""

    signum: int = attrs.field(converter=check_signal_number)
    path: str = attrs.field(converter=_existing_path)
    unique: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))


Event = TimerEvent | CronEvent | FileEvent


def encode(event: Event) -> bytes:
    """The payload a child sends to register ``event`` with the master."""
    fields: dict[str, object]
    if isinstance(event, TimerEvent):
        fields = {"timer": event.period, "iterations": event.iterations, "kind": event.kind.value}
    elif isinstance(event, CronEvent):
        fields = {"cron": str(event.spec)}
    else:
        fields = {"path": event.path}
    if event.unique:
        fields["unique"] = True
    return json.dumps({"signum": event.signum, **fields}).encode()


def decode(payload: bytes) -> Event:
    """The event a child's payload describes; raises ScheduleError if it is invalid."""
    try:
        fields = json.loads(payload)
        signum = fields["signum"]
        unique = fields.get("unique", False)
        if "timer" in fields:
            return TimerEvent(
                signum, fields["timer"], fields["iterations"], fields["kind"], unique
            )
        if "cron" in fields:
            return CronEvent(signum, CronSpec.parse(fields["cron"]), unique)
        return FileEvent(signum, fields["path"], unique)
    except (ValueError, KeyError, TypeError) as exc:
        raise ScheduleError(f"invalid event request {payload[:100]!r}: {exc}") from exc


class EventSources:
    """Every timer, cron and file monitor of a master.

    Args:
        clock: the monotonic clock timers are scheduled on.
        wall_clock: the local time cron entries are matched against.
        unix_clock: the UNIX time unique timers are aligned on.
        monitor_factory: makes the file monitor, on the first `FileEvent`.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = local_now,
        unix_clock: Callable[[], float] = time.time,
        monitor_factory: Callable[[], FileMonitor | PollingFileMonitor] = create_file_monitor,
    ) -> None:
        self.clock = clock
        self.wall_clock = wall_clock
        self.unix_clock = unix_clock
        self.monitor_factory = monitor_factory
        self.timers = TimerHeap()
        self.cron = CronTable()
        self.monitor: FileMonitor | PollingFileMonitor | None = None
        self._next_cron_check: float | None = None

    def add(self, event: Event) -> None:
        """Arm ``event``: a timer counts its period from now; a cron is checked at once."""
        if isinstance(event, TimerEvent):
            start = self.clock()
            if event.unique:
                start += mid_period_offset(self.unix_clock(), event.period) - event.period
            self.timers.add(arm(event, start))
        elif isinstance(event, CronEvent):
            self.cron.add(event.signum, event.spec)
            self._next_cron_check = self.clock()
        else:
            if self.monitor is None:
                self.monitor = self.monitor_factory()
            self.monitor.add(event.path, event.signum)

    def fileno(self) -> int:
        """The descriptor that wakes the loop on file changes, or -1 if there is none."""
        return self.monitor.fileno() if self.monitor is not None else -1

    def timeout(self) -> float | None:
        """Seconds the loop may sleep before an event is due; None if none ever is."""
        now = self.clock()
        deadlines = [self.timers.next_due(), self._next_cron_check]
        if self.monitor is not None:
            deadlines.append(self.monitor.next_check())
        due = [deadline for deadline in deadlines if deadline is not None]
        return max(0.0, min(due) - now) if due else None

    def due(self) -> list[int]:
        """The signals of the timers, crons and polled files that are due now."""
        now = self.clock()
        signals = self.timers.pop_due(now)
        if self._next_cron_check is not None and now >= self._next_cron_check:
            wall = self.wall_clock()
            signals += self.cron.due(wall)
            # Sleep until the wall clock reaches the next moment an entry may fire.
            cron_check = self.cron.next_check(wall)
            if cron_check is not None:
                wait = (cron_check - wall).total_seconds()
                self._next_cron_check = now + wait + CRON_MARGIN
        if self.monitor is not None:
            next_check = self.monitor.next_check()  # None for inotify: its descriptor wakes us
            if next_check is not None and now >= next_check:
                signals += self.monitor.read()
        return signals

    def read_monitor(self) -> list[int]:
        """The signals of the file changes the monitor's descriptor reported."""
        return self.monitor.read() if self.monitor is not None else []

    def close(self) -> None:
        """Release the file monitor."""
        if self.monitor is not None:
            self.monitor.close()
