"""The uWSGI signal calls, implemented on uwsgisig's own runtime."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..errors import (
    MAX_SIGNAL,
    NotInRuntimeError,
    ScheduleError,
    SignalAlreadyRegisteredError,
    TargetError,
    check_signal_number,
)
from ..runtime import app
from ..runtime.config import FarmSpec
from ..runtime.cron import CronSpec
from ..runtime.events import CronEvent, Event, FileEvent, TimerEvent, encode
from ..runtime.frames import Op, RegisterError, Role
from ..runtime.master import target_code
from ..runtime.process import CURRENT
from ..runtime.remote import send_remote_signal
from ..runtime.table import TABLE
from ..runtime.targets import Target, parse_target
from ..runtime.timers import TimerKind, check_period

__all__ = [
    "NAME",
    "check_cron",
    "check_crontab",
    "check_monitor_path",
    "check_ms_timer",
    "check_timer",
    "add_cron",
    "add_crontab",
    "add_file_monitor",
    "add_ms_timer",
    "add_rb_timer",
    "add_timer",
    "add_postfork_hook",
    "declare_farm",
    "declare_mule",
    "i_am_the_spooler",
    "in_farm",
    "masterpid",
    "mule_id",
    "numproc",
    "parse_target",
    "register_signal",
    "signal",
    "signal_received",
    "signal_registered",
    "signal_wait",
    "worker_id",
]

NAME = "embedded"


def register_signal(num: int, who: str, handler: Callable[[int], Any]) -> None:
    """Register ``handler`` for signal ``num``, run by target ``who``."""
    check_signal_number(num)
    target = parse_target(who)
    if not callable(handler):
        raise TypeError(f"a signal handler must be callable, not {handler!r}")
    if TABLE.is_registered(num):
        raise SignalAlreadyRegisteredError(f"signal {num} is already registered")
    if CURRENT.loop is not None:
        _register_with_master(num, who, target)
    TABLE.register(num, target, handler)


def _register_with_master(num: int, who: str, target: Target) -> None:
    """After fork: tell the master this process alone runs ``num``."""
    if target.kind == "farm" and target.name:
        index = CURRENT.config.farm_index(target.name)
        if not index:
            raise TargetError(f"target {who!r} names no farm of this runtime")
        target = Target("farm", index=index)
    kind, index = target_code(target)
    assert CURRENT.loop is not None
    answer = CURRENT.loop.link.request(Op.REGISTER, num, index, arg=kind, until=Op.REGISTERED)
    code = answer[-1][1]
    if code == RegisterError.TAKEN:
        raise SignalAlreadyRegisteredError(f"signal {num} is already registered by another process")
    if code == RegisterError.NO_SUCH_TARGET:
        raise TargetError(f"target {who!r} names no process of this runtime")


def signal(num: int, remote: str | None = None) -> None:
    """Raise signal ``num`` in this runtime, or on the uWSGI node at ``remote``."""
    loop = CURRENT.loop
    if remote is None and loop is not None and type(num) is int and 0 <= num <= MAX_SIGNAL:
        loop.link.raise_signal(num)  # the hot path: a child raising a valid number
        return
    check_signal_number(num)
    if remote is not None:
        send_remote_signal(num, remote)
    elif CURRENT.loop is not None:
        CURRENT.loop.link.raise_signal(num)
    elif CURRENT.role == Role.MASTER:
        CURRENT.early_signals.append(num)
    else:
        raise NotInRuntimeError(
            f"cannot raise signal {num}: this process is not part of a running runtime "
            "(start one with `uwsgisig run APP` or uwsgisig.Runtime(...).start())"
        )


def signal_wait(num: int | None = None, timeout: float | None = None) -> int:
    """Block until signal ``num`` (or any) arrives; return its number."""
    if num is not None:
        check_signal_number(num)
    if CURRENT.loop is None:
        raise NotInRuntimeError("signal_wait() works only in a worker, mule or spooler")
    return CURRENT.loop.wait(num, timeout)


def signal_received() -> int | None:
    """The last signal this process received, or None if none yet."""
    return CURRENT.last_received


def signal_registered(num: int) -> bool:
    """Whether signal ``num`` has a handler in this process's table."""
    return TABLE.is_registered(num)


def worker_id() -> int:
    """This worker's id (from 1), or 0 if this process is not a worker."""
    return CURRENT.id if CURRENT.role == Role.WORKER else 0


def mule_id() -> int:
    """This mule's id (from 1), or 0 if this process is not a mule."""
    return CURRENT.id if CURRENT.role == Role.MULE else 0


def i_am_the_spooler() -> bool:
    """Whether this process is the spooler."""
    return CURRENT.role == Role.SPOOLER


def masterpid() -> int:
    """The master's pid, or 0 outside a runtime."""
    return CURRENT.masterpid


def numproc() -> int:
    """The number of workers of this runtime, or 0 outside one."""
    return CURRENT.config.workers if CURRENT.role is not None else 0


def in_farm(name: str | None = None) -> bool:
    """Whether this mule belongs to farm ``name`` (to any farm when ``name`` is None)."""
    return bool(CURRENT.farms) if name is None else name in CURRENT.farms


def declare_mule(mule_id: int) -> None:
    """Start mule ``mule_id`` (and the mules before it) with the runtime."""
    app.declare_mule(mule_id)


def declare_farm(name: str, mules: tuple[int, ...]) -> None:
    """Start farm ``name`` made of ``mules`` with the runtime."""
    app.declare_farm(FarmSpec(name, mules))


def add_postfork_hook(hook: Callable[[], object]) -> None:
    """Run ``hook`` in every child right after fork."""
    app.POSTFORK_HOOKS.append(hook)


def add_timer(signum: int, seconds: float) -> None:
    """Raise ``signum`` every ``seconds`` seconds, from the master."""
    _add_event(TimerEvent(signum, seconds, 0, TimerKind.TIMER))


def add_rb_timer(signum: int, seconds: float, iterations: int = 0) -> None:
    """Raise ``signum`` every ``seconds`` seconds, ``iterations`` times (0 = forever)."""
    _add_event(TimerEvent(signum, seconds, iterations, TimerKind.RB_TIMER))


def add_ms_timer(signum: int, ms: float) -> None:
    """Raise ``signum`` every ``ms`` milliseconds, from the master."""
    _add_event(_ms_timer_event(signum, ms))


def _ms_timer_event(signum: int, ms: float) -> TimerEvent:
    period = check_period(ms, name="interval", unit="milliseconds") / 1000.0
    return TimerEvent(signum, period, 0, TimerKind.MS_TIMER)


def add_cron(
    signum: int,
    minute: int | None = -1,
    hour: int | None = -1,
    day: int | None = -1,
    month: int | None = -1,
    weekday: int | None = -1,
) -> None:
    """Raise ``signum`` in every minute that matches; -1 (or None) is any, -N every N."""
    _add_event(CronEvent(signum, CronSpec.from_uwsgi(minute, hour, day, month, weekday)))


def add_crontab(signum: int, crontab: str) -> None:
    """Raise ``signum`` in every minute the 5-field ``crontab`` string matches."""
    _add_event(CronEvent(signum, CronSpec.parse(crontab)))


def add_file_monitor(signum: int, path: str | os.PathLike[str]) -> None:
    """Raise ``signum`` whenever the file or directory ``path`` changes."""
    _add_event(FileEvent(signum, path))


def check_timer(seconds: float, iterations: int = 0) -> None:
    """Raise `ScheduleError` unless ``add_rb_timer(n, seconds, iterations)`` would accept them."""
    TimerEvent(0, seconds, iterations)


def check_ms_timer(ms: float) -> None:
    """Raise `ScheduleError` unless ``add_ms_timer(n, ms)`` would accept ``ms``."""
    _ms_timer_event(0, ms)


def check_cron(*fields: int | None) -> None:
    """Raise `ScheduleError` unless ``add_cron(n, *fields)`` would accept them."""
    CronSpec.from_uwsgi(*fields)


def check_crontab(crontab: str) -> None:
    """Raise `ScheduleError` unless ``crontab`` parses."""
    CronSpec.parse(crontab)


def check_monitor_path(path: str | os.PathLike[str]) -> None:
    """Raise `FileNotFoundError` (a `ScheduleError`) unless ``path`` exists."""
    FileEvent(0, path)


def _add_event(event: Event) -> None:
    """Before fork the master arms the event when it starts; after fork a child asks it."""
    if CURRENT.loop is None:
        app.DECLARED_EVENTS.append(event)
        return
    answer = CURRENT.loop.link.request_with_payload(
        Op.ADD_EVENT, event.signum, encode(event), until=Op.EVENT_ADDED
    )
    if answer[-1][1]:
        raise ScheduleError(f"the master could not arm {event} (its log says why)")
