"""The 256-entry signal table.

Each process holds its own copy. Entries made before fork (in the master,
while it imports the app) exist in every child; an entry made by a child after
fork exists only there, and the master records that child as its ``owner`` so
the signal is routed to the one process that can run it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from ...errors import SignalAlreadyRegisteredError, check_signal_number
from .targets import Target

__all__ = ["Entry", "Handler", "SignalTable", "TABLE", "handler_name"]

Handler = Callable[[int], Any]


@attrs.frozen
class Entry:
    """One registered signal: where it goes and, in this process, what runs it."""

    target: Target
    handler: Handler | None
    owner: tuple[int, int] | None = None  # (role, id) of a child that registered it after fork


class SignalTable:
    """Signal number -> `Entry`, for numbers 0-255."""

    def __init__(self) -> None:
        self._entries: list[Entry | None] = [None] * 256

    def register(
        self,
        num: int,
        target: Target,
        handler: Handler | None,
        owner: tuple[int, int] | None = None,
    ) -> Entry:
        """Add an entry; raise `SignalAlreadyRegisteredError` if ``num`` has one."""
        check_signal_number(num)
        if self._entries[num] is not None:
            raise SignalAlreadyRegisteredError(f"signal {num} is already registered")
        entry = Entry(target, handler, owner)
        self._entries[num] = entry
        return entry

    def get(self, num: int) -> Entry | None:
        """Return the entry for ``num``, or None if it has no handler."""
        return self._entries[num]

    def is_registered(self, num: int) -> bool:
        """Whether ``num`` has an entry."""
        return self._entries[check_signal_number(num)] is not None

    def entries(self) -> dict[int, Entry]:
        """Every registered number with its entry."""
        return {num: entry for num, entry in enumerate(self._entries) if entry is not None}

    def fingerprint(self) -> dict[str, list[str]]:
        """The entries made at import, as JSON: number -> [target, handler's name].

        A worker that attaches sends this, and the master compares it with
        its own (`differences`): both must have imported the same app.
        """
        return {
            str(num): [str(entry.target), handler_name(entry.handler)]
            for num, entry in self.entries().items()
            if entry.owner is None
        }

    def differences(self, other: dict[str, list[str]]) -> list[str]:
        """How fingerprint ``other`` differs from this table's, one sentence per signal."""
        mine = self.fingerprint()
        found = []
        for key in sorted(set(mine) | set(other), key=int):
            here, there = mine.get(key), other.get(key)
            if here == there:
                continue
            found.append(
                f"signal {key}: the runtime has {_describe(here)}, the worker has "
                f"{_describe(there)}"
            )
        return found

    def clear(self) -> None:
        """Forget every entry (tests, and a process that starts a fresh runtime)."""
        self._entries = [None] * 256


def handler_name(handler: Handler | None) -> str:
    """``module:qualname`` of a handler, as both sides of an attach name it."""
    if handler is None:
        return "none"
    qualname = getattr(handler, "__qualname__", None) or repr(handler)
    return f"{getattr(handler, '__module__', '?')}:{qualname}"


def _describe(entry: list[str] | None) -> str:
    if entry is None:
        return "no handler"
    target, handler = entry
    return f"target {target!r} with handler {handler}"


TABLE = SignalTable()
