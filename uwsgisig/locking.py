"""User locks shared by every process of the runtime, with uwsgiconf's spelling.

```python
from uwsgisig.locking import Lock, lock

with lock:                 # lock 0, always there
    counter += 1

@Lock(1)                   # give the runtime more with --locks N
def rebuild_index() -> None:
    ...
```

A lock is held by a thread of a process; the others, in that process and
in every other one, wait. A process that dies holding a lock releases it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import TracebackType
from typing import ParamSpec, TypeVar

from . import platform

__all__ = ["Lock", "lock"]

P = ParamSpec("P")
R = TypeVar("R")


class Lock:
    """User lock ``num``: a context manager, a decorator, or ``acquire``/``release``."""

    __slots__ = ("num",)

    def __init__(self, num: int = 0) -> None:
        self.num = num

    def __repr__(self) -> str:
        return f"Lock({self.num})"

    @property
    def is_set(self) -> bool:
        """Whether some process holds this lock now."""
        return platform.is_locked(self.num)

    def acquire(self) -> bool:
        """Block until this thread holds the lock; True, as `threading.Lock.acquire`."""
        platform.lock(self.num)
        return True

    def release(self) -> None:
        """Release the lock (nothing if this process does not hold it)."""
        platform.unlock(self.num)

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Decorator: ``func`` runs holding the lock."""

        @functools.wraps(func)
        def locked(*args: P.args, **kwargs: P.kwargs) -> R:
            with self:
                return func(*args, **kwargs)

        return locked


lock = Lock()
"""Lock 0, which every runtime has."""
