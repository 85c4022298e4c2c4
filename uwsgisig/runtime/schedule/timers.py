"""Timers: the schedule behind ``add_timer``, ``add_rb_timer`` and ``add_ms_timer``.

A `Timer` is a value: a signal number, a period, an iteration count and a
start time on the monotonic clock. A `TimerHeap` holds the armed timers and
tells the master loop when to wake (`TimerHeap.next_due`) and which signals
to raise when it does (`TimerHeap.pop_due`).

Schedule rules:

- **No drift.** Tick N (N = 1, 2, ...) of a timer is due at
  ``start + N * period``, computed from the start each time, never by adding
  periods up; late processing of one tick does not shift the next.
- **Catch-up: fire once, then skip.** If the loop was blocked past several
  due times, one tick fires and the next due time is the first grid point
  strictly after ``now``. This is what uWSGI does with timerfd: it reads the
  expiration count and raises the signal once. A tick is never fired twice.
- **Iterations count fired ticks**, not grid points passed: an rb-timer with
  ``iterations=3`` raises its signal exactly 3 times, even across a stall.
  ``iterations=0`` means forever.

uWSGI's own rb-timers re-arm at ``time(NULL) + period`` after each tick and so
drift by the processing delay; we keep them on the grid like its timerfd
timers, which is what users measure and expect (``add_timer(n, 1)`` ticks
every 1.000 s).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import time

import attrs

from ...errors import ScheduleError, check_signal_number

__all__ = [
    "ScheduleError",
    "Timer",
    "TimerHeap",
    "TimerKind",
    "check_iterations",
    "check_period",
]


class TimerKind(enum.Enum):
    """Which uWSGI call a timer mirrors; only used to describe it."""

    TIMER = "timer"
    RB_TIMER = "rb_timer"
    MS_TIMER = "ms_timer"


def check_period(value: object, *, name: str = "period", unit: str = "seconds") -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise `ScheduleError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScheduleError(
            f"invalid timer {name} {value!r}: must be an int or float number of {unit} > 0"
        )
    if not math.isfinite(value) or value <= 0:
        raise ScheduleError(
            f"invalid timer {name} {value!r}: must be a finite number of {unit} > 0"
        )
    return float(value)


def check_iterations(value: object) -> int:
    """Return ``value`` if it is an int >= 0 (0 means forever), else raise `ScheduleError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScheduleError(
            f"invalid timer iterations {value!r}: must be an int >= 0 (0 means forever)"
        )
    return value


def _check_start(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScheduleError(f"invalid timer start {value!r}: must be a finite monotonic time")
    return float(value)


@attrs.frozen
class Timer:
    """One timer: raise ``signum`` every ``period`` seconds, ``iterations`` times.

    Attributes:
        signum: The signal number to raise (0-255).
        period: Seconds between ticks, a finite float > 0.
        iterations: How many ticks to fire; 0 means forever.
        start: Monotonic time the schedule counts from; tick N is due at
            ``start + N * period``. Defaults to `time.monotonic` at creation.
        kind: The uWSGI call this timer mirrors.
    """

    signum: int = attrs.field(converter=check_signal_number)
    period: float = attrs.field(converter=check_period)
    iterations: int = attrs.field(default=0, converter=check_iterations)
    start: float = attrs.field(factory=time.monotonic, converter=_check_start)
    kind: TimerKind = attrs.field(
        default=TimerKind.TIMER, validator=attrs.validators.instance_of(TimerKind)
    )

    def due_time(self, tick: int) -> float:
        """Return the monotonic time at which tick number ``tick`` (from 1) is due."""
        return self.start + tick * self.period

    def next_tick_after(self, now: float) -> int:
        """Return the number of the first tick due strictly after ``now``."""
        tick = max(1, math.floor((now - self.start) / self.period) + 1)
        # Float rounding can put the estimate a grid point early. The step doubles
        # so that a period below the float resolution of `now` cannot loop forever.
        step = 1
        while self.due_time(tick) <= now:
            tick += step
            step *= 2
        return tick


@attrs.define
class _Armed:
    """A timer's progress; mutable, private to the heap."""

    timer: Timer
    order: int  # tie-breaker: ticks due at the same time fire in the order timers were added
    tick: int = 1  # number of the next tick to fire
    fired: int = 0


class TimerHeap:
    """All armed timers, ordered by their next due time (a binary heap).

    Ties fire in the order the timers were added.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Armed]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, timer: Timer) -> None:
        """Arm ``timer``; its first tick is due at ``timer.start + timer.period``."""
        self._push(_Armed(timer, next(self._order)))

    def listing(self) -> list[tuple[int, float, float]]:
        """``(signum, period, next due time)`` of every armed timer, soonest first."""
        return sorted((armed.timer.signum, armed.timer.period, due) for due, _, armed in self._heap)

    def next_due(self) -> float | None:
        """Return the monotonic time of the earliest due tick, or None if there is no timer."""
        return self._heap[0][0] if self._heap else None

    def timeout(self, now: float) -> float | None:
        """Return seconds from ``now`` until the earliest tick (>= 0), or None if no timer."""
        due = self.next_due()
        return None if due is None else max(0.0, due - now)

    def pop_due(self, now: float) -> list[int]:
        """Return the signal numbers to raise at ``now`` and advance their timers.

        Each timer that is due fires once, however many ticks it missed; its
        next tick is the first grid point after ``now``. Finished rb-timers
        are dropped.
        """
        signals: list[int] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, armed = heapq.heappop(self._heap)
            signals.append(armed.timer.signum)
            armed.fired += 1
            if armed.timer.iterations and armed.fired >= armed.timer.iterations:
                continue
            armed.tick = armed.timer.next_tick_after(now)
            self._push(armed)
        return signals

    def _push(self, armed: _Armed) -> None:
        due = armed.timer.due_time(armed.tick)
        heapq.heappush(self._heap, (due, armed.order, armed))
