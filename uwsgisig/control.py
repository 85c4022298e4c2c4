"""Controlling the runtime from its own code: reload, stop, the workers' figures, harakiri.

```python
from uwsgisig import control

control.reload()                 # as SIGHUP to the master
for worker in control.workers():  # the stats server's figures
    print(worker["id"], worker["status"], worker["signals"])

@control.harakiri(30)            # killed and replaced if it runs 30 s
def risky() -> None:
    ...
```
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from . import platform

__all__ = ["harakiri", "reload", "set_user_harakiri", "stop", "total_requests", "workers"]

P = ParamSpec("P")
R = TypeVar("R")


def reload() -> None:
    """Reload the workers gracefully, as SIGHUP to the master does."""
    platform.reload()


def stop() -> None:
    """Stop the runtime at once, as SIGINT to the master does."""
    platform.stop()


def workers() -> list[dict[str, Any]]:
    """One dict per worker: uWSGI's keys (``id``, ``pid``, ``status``, ``signals``...)."""
    return platform.workers()


def total_requests() -> int:
    """Requests served by the runtime: 0, it serves none (a web server beside it counts)."""
    return platform.total_requests()


def set_user_harakiri(seconds: float) -> None:
    """Have this process killed (and replaced) unless called again with 0 within ``seconds``."""
    platform.set_user_harakiri(seconds)


def harakiri(seconds: float) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: the process is killed (and replaced) if a call runs ``seconds`` or more."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            platform.set_user_harakiri(seconds)
            try:
                return func(*args, **kwargs)
            finally:
                platform.set_user_harakiri(0)

        return limited

    return decorate
