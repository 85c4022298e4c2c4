"""The uWSGI signal calls, implemented on uwsgisig's own runtime."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import (
    MAX_SIGNAL,
    NotInRuntimeError,
    SignalAlreadyRegisteredError,
    TargetError,
    check_signal_number,
)
from ..runtime import app
from ..runtime.config import FarmSpec
from ..runtime.frames import Op, RegisterError, Role
from ..runtime.master import target_code
from ..runtime.process import CURRENT
from ..runtime.remote import send_remote_signal
from ..runtime.table import TABLE
from ..runtime.targets import Target, parse_target

__all__ = [
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
