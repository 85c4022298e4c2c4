"""Mules and farms, declared in code: signal targets, message queues, offloading.

``Mule(2)`` in the app module starts mules 1 and 2 with the runtime;
``Farm("images", mules=[1, 2])`` groups them; ``Mule(loop=main)`` starts a
mule that runs ``main`` instead of the signal loop. A signal or a message to a
farm goes to one of its mules, the first that is free.

```python
from uwsgisig import Farm, Mule

images = Farm("images", mules=[1, 2])

@images.offload
def resize(path: str, width: int) -> None:
    ...  # runs in mule 1 or 2

resize("cat.png", 320)  # in a worker: queued for the farm, returns at once
```
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Generic, overload

from typing_extensions import ParamSpec

from . import platform
from .errors import TargetError

__all__ = ["Farm", "Mule", "Offloaded"]

P = ParamSpec("P")


class Offloaded(Generic[P]):
    """A function that, when called, runs in a mule or farm; the call returns at once.

    The arguments are pickled. What the function returns is dropped, and an
    exception it raises is logged in the mule with the call's arguments.
    ``func`` is the plain function, to call in place (in tests, say).
    """

    def __init__(self, func: Callable[P, Any], *, mule: int = 0, farm: str | None = None) -> None:
        self.func = func
        self.name = platform.register_offload(func)
        self.mule = mule
        self.farm = farm
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        platform.call_offloaded(self.name, args, kwargs, mule=self.mule, farm=self.farm)

    def __repr__(self) -> str:
        where = f"farm {self.farm!r}" if self.farm is not None else f"mule {self.mule}"
        return f"<offloaded {self.name} to {where}>"


class _Offloading:
    """What mules and farms share: ``@x.offload``."""

    __slots__ = ()

    def _destination(self) -> dict[str, Any]:
        raise NotImplementedError

    @overload
    def offload(self, func: Callable[P, Any]) -> Offloaded[P]: ...
    @overload
    def offload(self, func: None = None) -> Callable[[Callable[P, Any]], Offloaded[P]]: ...
    def offload(
        self, func: Callable[P, Any] | None = None
    ) -> Offloaded[P] | Callable[[Callable[P, Any]], Offloaded[P]]:
        """Decorator: calling the function in any process runs it in this mule, or in
        the first free mule of this farm. ``@x.offload()`` (uwsgiconf's spelling) works too.
        """
        if func is None:
            return lambda f: Offloaded(f, **self._destination())
        return Offloaded(func, **self._destination())


class Mule(_Offloading):
    """A mule: a process beside the workers, for work they should not do.

    Creating one in the app module declares it, so the runtime starts it.
    With ``loop`` (a callable, ``"package.module:function"`` or a ``.py``
    path; a str as the only argument means the same) the mule runs that
    instead of the signal loop, and is started again when it returns or
    raises. A programmed mule without an id takes the next free one.
    """

    __slots__ = ("id",)

    def __init__(
        self,
        id: int | str | None = None,  # noqa: A002 - uwsgiconf's name
        *,
        loop: Callable[[], object] | str | None = None,
    ) -> None:
        if isinstance(id, str) and loop is None:
            id, loop = None, id  # noqa: A001 - Mule("pkg.mod:func")
        if id is None and loop is None:
            raise TargetError("give a mule id, a loop, or both")
        if id is not None and (isinstance(id, bool) or not isinstance(id, int) or id < 1):
            raise TargetError(f"invalid mule id {id!r}: mule ids are ints from 1")
        if loop is not None:
            self.id = platform.declare_program(id, loop)
        else:
            assert isinstance(id, int)
            self.id = id
            platform.declare_mule(id)

    def __repr__(self) -> str:
        return f"Mule({self.id})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mule) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("mule", self.id))

    def send(self, message: bytes | str, *, timeout: float | None = None) -> None:
        """Queue ``message`` for this mule (str is sent as UTF-8).

        Waits up to ``timeout`` seconds (the runtime's send timeout by default)
        while the mule's queue is full, then raises `MessageQueueFullError`.
        A message is at most 64 KiB (`MessageTooLargeError`).
        """
        platform.mule_msg(message, self.id, timeout=timeout)

    def _destination(self) -> dict[str, Any]:
        return {"mule": self.id}

    @classmethod
    def get_current_id(cls) -> int:
        """This mule's id, or 0 if this process is not a mule."""
        return platform.mule_id()

    @classmethod
    def get_current(cls) -> Mule | None:
        """This mule, or None if this process is not a mule."""
        mule_id = platform.mule_id()
        return cls(mule_id) if mule_id else None

    @classmethod
    def get_message(
        cls, *, signals: bool = True, farms: bool = False, timeout: float | None = None
    ) -> bytes | None:
        """In a mule: block until a message for this mule arrives and return it.

        Messages to this mule and to "the first free mule" are taken; with
        ``farms``, those to its farms too. Signals that arrive meanwhile run
        their handlers (unless ``signals`` is False), and offloaded calls run.
        Returns None after ``timeout`` seconds.
        """
        return platform.mule_get_msg(signals=signals, farms=farms, timeout=timeout)

    @staticmethod
    def on_message(hook: Callable[[bytes], object]) -> Callable[[bytes], object]:
        """Decorator: run ``hook(message)`` in mules on the signal loop, for each message.

        Mules with a loop of their own take messages with `get_message` instead.
        """
        platform.set_message_hook(hook)
        return hook


class Farm(_Offloading):
    """A named group of mules. ``mules`` declares it; without them it names a farm
    given on the command line (``--farm NAME:1,2``)."""

    __slots__ = ("mules", "name")

    def __init__(self, name: str, *, mules: Iterable[int] | None = None) -> None:
        if not isinstance(name, str):
            raise TargetError(f"invalid farm name {name!r}: a farm name is a str")
        ids = tuple(mules) if mules is not None else None
        if ids is not None:
            platform.declare_farm(name, ids)
        else:
            platform.parse_target(f"farm_{name}")  # only to check the name
        self.name = name
        self.mules = tuple(Mule(i) for i in ids) if ids is not None else ()

    def __repr__(self) -> str:
        return f"Farm({self.name!r}, mules={[mule.id for mule in self.mules]})"

    @property
    def is_mine(self) -> bool:
        """Whether this process is a mule of this farm."""
        return platform.in_farm(self.name)

    def send(self, message: bytes | str, *, timeout: float | None = None) -> None:
        """Queue ``message`` for this farm: the first of its mules that is free takes it.

        Blocks and raises as `Mule.send` does.
        """
        platform.farm_msg(self.name, message, timeout=timeout)

    def _destination(self) -> dict[str, Any]:
        return {"farm": self.name}

    @classmethod
    def get_message(cls, *, signals: bool = True, timeout: float | None = None) -> bytes | None:
        """In a mule: block until a message for one of its farms arrives and return it.

        Signals and offloaded calls are served meanwhile, as in `Mule.get_message`.
        Returns None after ``timeout`` seconds.
        """
        return platform.farm_get_msg(signals=signals, timeout=timeout)
