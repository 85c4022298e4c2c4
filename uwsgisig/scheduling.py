"""Timers and cron: signals the master raises on a schedule.

Mirrors uwsgiconf's ``uwsgiconf.runtime.scheduling``: each function takes a
target and returns a decorator that makes the function the handler of a new
signal, raised by the schedule:

```python
from uwsgisig.scheduling import register_cron, register_timer

@register_timer(10, target="mules")
def every_ten_seconds(num: int) -> None:
    ...

@register_cron("*/5 * * * 1-5")  # every 5 minutes, Monday to Friday
def business_hours(num: int) -> None:
    ...
```

Given an existing `Signal` as ``target``, they attach the schedule to it and
return None, as uwsgiconf does. Timers and crons fire in the master, never in
a child, and their signals are routed like any other.

``unique=True`` fires each tick (each matching minute, for a cron) on one
node of the runtime's cluster, not on every node (see the "Beyond one
machine" page).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from . import platform
from .signals import Signal
from .targets import TypeTarget, target_text

__all__ = ["register_cron", "register_timer", "register_timer_ms", "register_timer_rb"]

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]


def attach(target: TypeTarget | Signal, arm: Callable[[Signal], None]) -> Decorator | None:
    """Arm an event for a new signal whose handler the returned decorator sets,
    or, given a `Signal`, for that signal (and return None)."""
    if isinstance(target, Signal):
        arm(target)
        return None
    target_text(target)  # a bad target takes no signal number
    signal = Signal()
    register = signal.register_handler(target=target)

    def decorator(func: F) -> F:
        register(func)
        arm(signal)
        return func

    return decorator


def register_timer(
    period: float, *, target: TypeTarget | Signal = None, unique: bool = False
) -> Decorator | None:
    """Raise a signal every ``period`` seconds (``uwsgi.add_timer``).

    Ticks stay on the grid ``start + N * period`` however long handlers take.
    After the master was blocked past several ticks, one tick fires and the
    missed ones are skipped.

    Args:
        period: seconds between ticks, a number > 0.
        target: who runs the handler (default ``worker``), or a `Signal` to raise.
        unique: each tick on one node of the cluster (ticks then fall in the
            middle of the wall clock's periods).

    Raises:
        ScheduleError: ``period`` is not a number > 0.
    """
    platform.check_timer(period)
    check_unique(unique)
    return attach(target, lambda signal: platform.add_timer(signal.num, period, unique))


def register_timer_rb(
    period: float,
    repeat: int = 0,
    *,
    target: TypeTarget | Signal = None,
    unique: bool = False,
) -> Decorator | None:
    """Raise a signal every ``period`` seconds, ``repeat`` times (``uwsgi.add_rb_timer``).

    Args:
        period: seconds between ticks, a number > 0.
        repeat: how many times each node ticks; 0 (or None) means forever.
        target: who runs the handler (default ``worker``), or a `Signal` to raise.
        unique: each tick on one node of the cluster.
    """
    repeat = 0 if repeat is None else repeat
    platform.check_timer(period, repeat)
    check_unique(unique)
    return attach(
        target, lambda signal: platform.add_rb_timer(signal.num, period, repeat, unique)
    )


def register_timer_ms(
    period: float, *, target: TypeTarget | Signal = None, unique: bool = False
) -> Decorator | None:
    """Raise a signal every ``period`` milliseconds (``uwsgi.add_ms_timer``).

    Args:
        period: milliseconds between ticks, a number > 0.
        target: who runs the handler (default ``worker``), or a `Signal` to raise.
        unique: each tick on one node of the cluster.
    """
    platform.check_ms_timer(period)
    check_unique(unique)
    return attach(target, lambda signal: platform.add_ms_timer(signal.num, period, unique))


def register_cron(
    weekday: int | str | None = None,
    month: int | None = None,
    day: int | None = None,
    hour: int | None = None,
    minute: int | None = None,
    *,
    target: TypeTarget | Signal = None,
    unique: bool = False,
) -> Decorator | None:
    """Raise a signal in every wall-clock minute that matches (``uwsgi.add_cron``).

    Each field is None or -1 for "any", a value, or -N for "every N" (``hour=-2``:
    every even hour). Day and weekday are OR'ed when both are given, as in
    POSIX cron; weekday 0 (or 7) is Sunday. Instead of the fields, the first
    argument may be a 5-field crontab string, ``"*/5 * * * 1-5"``.

    ``unique=True`` fires each matching minute on one node of the cluster.

    Raises:
        ScheduleError: a field is out of range (``minute=61``, ``weekday=8``)
            or the crontab string cannot be parsed.
    """
    check_unique(unique)
    if isinstance(weekday, str):
        if (month, day, hour, minute) != (None, None, None, None):
            raise TypeError("register_cron takes a crontab string or fields, not both")
        crontab = weekday
        platform.check_crontab(crontab)
        return attach(target, lambda signal: platform.add_crontab(signal.num, crontab, unique))
    fields = (minute, hour, day, month, weekday)
    platform.check_cron(*fields)
    return attach(target, lambda signal: platform.add_cron(signal.num, *fields, unique=unique))


def check_unique(unique: object) -> None:
    """Raise unless ``unique`` is a bool, and a unique schedule can be had here."""
    if not isinstance(unique, bool):
        raise TypeError(f"invalid unique {unique!r}: give True (once per cluster) or False")
    if unique:
        platform.check_unique()
