"""Signals: numbered events that the master routes to the processes that handle them.

Mirrors uwsgiconf's ``uwsgiconf.runtime.signals``, so code written for it
runs by changing the import:

```python
from uwsgisig import Signal

reload_cache = Signal()

@reload_cache.register_handler(target="workers")
def on_reload(num: int) -> None:
    ...

reload_cache.send()
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from . import platform
from .errors import NoSignalAvailableError, check_signal_number
from .targets import TypeTarget, target_text

__all__ = [
    "REGISTERED_SIGNALS",
    "Signal",
    "SignalDescription",
    "get_available_num",
    "get_last_received",
]

F = TypeVar("F", bound=Callable[..., Any])


class SignalDescription(NamedTuple):
    """A registered signal: its number, its target and its handler."""

    num: int
    target: str
    func: Callable[..., Any]


REGISTERED_SIGNALS: dict[int, SignalDescription] = {}
"""Signals registered through `Signal` in this process, by number."""

# Numbers handed out to Signal objects, so two Signal() never share a number
# even before either is registered.
_taken: set[int] = set()


def _forget_registrations() -> None:
    REGISTERED_SIGNALS.clear()
    _taken.clear()


platform.on_reset(_forget_registrations)


def get_available_num() -> int:
    """Return the lowest signal number neither registered nor taken by a `Signal`.

    Raises:
        NoSignalAvailableError: all 256 numbers are in use.
    """
    for num in range(256):
        if num not in _taken and not platform.signal_registered(num):
            return num
    raise NoSignalAvailableError("no signal number is free: all of 0-255 are in use")


def get_last_received() -> Signal | None:
    """The last signal this process received (by a handler or `Signal.wait`), or None."""
    num = platform.signal_received()
    return None if num is None else Signal(num)


class Signal:
    """A uWSGI signal, by number.

    Args:
        num: 0-255; when omitted, the lowest free number (`get_available_num`).
    """

    __slots__ = ("num",)

    def __init__(self, num: int | None = None) -> None:
        self.num = get_available_num() if num is None else check_signal_number(num)
        _taken.add(self.num)

    def __int__(self) -> int:
        return self.num

    def __index__(self) -> int:
        return self.num

    def __repr__(self) -> str:
        return f"Signal({self.num})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Signal) and other.num == self.num

    def __hash__(self) -> int:
        return hash(("signal", self.num))

    def registered(self) -> bool:
        """Whether a handler is registered for this signal in this process."""
        return platform.signal_registered(self.num)

    def register_handler(
        self, target: TypeTarget = None, *, callback: Callable[[Signal], None] | None = None
    ) -> Callable[[F], F]:
        """Decorator: make the function the handler of this signal.

        The handler is called with the signal number.

        Args:
            target: who runs the handler; default ``worker`` (the first free
                worker). One of ``worker``/``worker0``, ``workerN``,
                ``workers``, ``active-workers``, ``mule``/``mule0``,
                ``muleN``, ``mules``, ``spooler``, ``farm_NAME``, ``farmN``,
                or a `Mule` or `Farm`.
            callback: called with this signal once the handler is registered.

        Raises:
            TargetError: ``target`` is none of the above.
            SignalAlreadyRegisteredError: this number has a handler already.
        """
        text = target_text(target)

        def decorator(func: F) -> F:
            platform.register_signal(self.num, text, func)
            REGISTERED_SIGNALS[self.num] = SignalDescription(self.num, text, func)
            if callback is not None:
                callback(self)
            return func

        return decorator

    def __call__(self, func: F) -> F:
        """``@signal`` is ``@signal.register_handler()``."""
        return self.register_handler()(func)

    def send(self, remote: str | None = None, *, cluster: bool = False) -> None:
        """Raise this signal: it is in the master's queue when this returns.

        Args:
            remote: ``host:port`` of a uWSGI (or uwsgisig) node to raise it on instead.
            cluster: raise it on every node of the runtime's cluster instead, where
                it runs as each node's handler for it says (``--cluster``).

        Raises:
            ValueError: the remote node rejected the signal.
            OSError: the remote node could not be reached.
            SignalQueueFullError: the master stayed full for the send timeout.
            NotInRuntimeError: this process is not part of a runtime.
            NotInClusterError: ``cluster=True`` in a runtime that is in no cluster.
        """
        if cluster:
            if remote is not None:
                raise ValueError("give remote or cluster=True, not both")
            platform.signal_cluster(self.num)
            return
        platform.signal(self.num, remote)

    def wait(self, timeout: float | None = None) -> int:
        """Block until this signal arrives here; return its number.

        Registered signals arriving meanwhile run their handlers, as in uWSGI.

        Raises:
            TimeoutError: it did not arrive within ``timeout`` seconds.
        """
        return platform.signal_wait(self.num, timeout)
