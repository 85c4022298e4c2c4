"""Mules and farms, declared in code.

``Mule(2)`` in the app module starts mules 1 and 2 with the runtime;
``Farm("images", mules=[1, 2])`` groups them. Both are signal targets: a
signal to a mule runs there, a signal to a farm runs on one of its mules, the
first that is free.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import platform
from .errors import TargetError

__all__ = ["Farm", "Mule"]


class Mule:
    """A mule: a process beside the workers, for work they should not do.

    Creating one in the app module declares it, so the runtime starts it.
    """

    __slots__ = ("id",)

    def __init__(self, id: int) -> None:  # noqa: A002 - uwsgiconf's name
        if isinstance(id, bool) or not isinstance(id, int) or id < 1:
            raise TargetError(f"invalid mule id {id!r}: mule ids are ints from 1")
        self.id = id
        platform.declare_mule(id)

    def __repr__(self) -> str:
        return f"Mule({self.id})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mule) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("mule", self.id))

    @classmethod
    def get_current_id(cls) -> int:
        """This mule's id, or 0 if this process is not a mule."""
        return platform.mule_id()

    @classmethod
    def get_current(cls) -> Mule | None:
        """This mule, or None if this process is not a mule."""
        mule_id = platform.mule_id()
        return cls(mule_id) if mule_id else None


class Farm:
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
