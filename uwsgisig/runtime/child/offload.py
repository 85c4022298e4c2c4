"""Offloaded calls: a function call packed into a mule message.

A function is made offloadable at import time of the app, so it is in the
registry of every process after fork and the mule finds it by name. The
message is a fixed prefix and the pickled ``(name, args, kwargs)``; any other
message is the app's own.
"""

from __future__ import annotations

import logging
import pickle
import reprlib
from collections.abc import Callable
from typing import Any

from ..ipc.messages import as_message
from ..model.app import DECLARED

__all__ = ["CALL_PREFIX", "deliver", "is_call", "pack_call", "register", "run_call"]

log = logging.getLogger("uwsgisig")

CALL_PREFIX = b"\x00uwsgisig-call\x00"

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


def function_name(func: Callable[..., Any]) -> str:
    """The name a mule looks ``func`` up by: ``module:qualname``."""
    return f"{func.__module__}:{func.__qualname__}"


def register(func: Callable[..., Any]) -> str:
    """Make ``func`` callable from a mule message; return its name."""
    name = function_name(func)
    known = DECLARED.offloaded.get(name)
    if known is not None and known is not func:
        raise ValueError(f"another function is already offloaded as {name!r}")
    DECLARED.offloaded[name] = func
    return name


def pack_call(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """The message that asks a mule to run ``name(*args, **kwargs)``."""
    return as_message(CALL_PREFIX + pickle.dumps((name, args, kwargs), pickle.HIGHEST_PROTOCOL))


def is_call(message: bytes) -> bool:
    """Whether ``message`` is an offloaded call rather than an app message."""
    return message.startswith(CALL_PREFIX)


def run_call(message: bytes, where: str) -> None:
    """Run the call in ``message``; log (never raise) what goes wrong, naming the call."""
    try:
        name, args, kwargs = pickle.loads(message[len(CALL_PREFIX) :])
    except Exception:
        log.exception("an offloaded call to %s could not be unpickled", where)
        return
    func = DECLARED.offloaded.get(name)
    call = f"{name}(*{_short.repr(args)}, **{_short.repr(kwargs)})"
    if func is None:
        log.error(
            "offloaded call %s reached %s, where no such function is offloaded "
            "(offload functions at import time of the app)",
            call,
            where,
        )
        return
    try:
        func(*args, **kwargs)
    except Exception:
        log.exception("offloaded call %s raised in %s", call, where)


def deliver(message: bytes, where: str) -> None:
    """A message reached a mule's default loop: run the call, or the app's message hook."""
    if is_call(message):
        run_call(message, where)
        return
    hook = DECLARED.message_hook
    if hook is None:
        log.warning(
            "%s has no message hook: a %d-byte message is discarded "
            "(set one with Mule.on_message, or give the mule a loop)",
            where,
            len(message),
        )
        return
    try:
        hook(message)
    except Exception:
        log.exception("message hook %r raised in %s", hook, where)
