"""What each child has started, in memory shared with the master.

A child reads frames from its private socket in batches, so it may hold
signals it has not run yet. Before it acts on a RUN or DELIVER frame it adds
one to its ``started`` cell; while a handler runs, its ``running`` cell holds
the signal number plus one. Both are plain stores into a shared mapping (no
system call), and only that child writes its cells.

When a child dies the master compares ``started`` with the signal frames it
queued for that slot: the ones not started are given to the replacement, so
a kill loses at most the handler that was running. At a graceful stop that
outlives its timeout, ``running`` names the handler being interrupted.
"""

from __future__ import annotations

from .shared import SharedMemory

__all__ = ["Progress", "ProgressCell"]

_CELL_WORDS = 5  # started, running, received, handler deadline, user deadline
_WORD = 8


class ProgressCell:
    """One child's two counters (a view into the shared mapping)."""

    __slots__ = ("_base", "_words")

    def __init__(self, words: memoryview, index: int) -> None:
        self._words = words
        self._base = index * _CELL_WORDS

    @property
    def started(self) -> int:
        """How many private signal frames this slot's children have taken, ever."""
        return self._words[self._base]

    @property
    def running(self) -> int | None:
        """The signal whose handler runs now, or None."""
        value = self._words[self._base + 1]
        return value - 1 if value else None

    @property
    def received(self) -> int:
        """How many signals this slot's children have taken, from any queue (for stats)."""
        return self._words[self._base + 2]

    @property
    def deadlines(self) -> memoryview:
        """Two words of ``time.monotonic_ns()`` deadlines, 0 for none: the running
        handler's (``--harakiri``) and the one the app set (``set_user_harakiri``).
        The master kills a child that outlives either (see ``master/loop.py``)."""
        return self._words[self._base + 3 : self._base + 5]

    @property
    def received_word(self) -> memoryview:
        """The ``received`` counter as a one-item view: the signal loop adds one per signal."""
        return self._words[self._base + 2 : self._base + 3]

    @property
    def started_word(self) -> memoryview:
        """The ``started`` counter as a one-item view: the child's link adds one to it
        for each private signal frame it takes."""
        return self._words[self._base : self._base + 1]

    @property
    def running_word(self) -> memoryview:
        """The ``running`` counter as a one-item view: the signal loop stores into it
        directly (signal number + 1, or 0), which costs less than a call per handler."""
        return self._words[self._base + 1 : self._base + 2]


class Progress:
    """The counters of ``slots`` children, in one shared mapping made before fork.

    An attached worker maps the same memory from ``memory.fd`` (`attach`).
    """

    def __init__(self, slots: int, *, memory: SharedMemory | None = None) -> None:
        if memory is None:
            memory = SharedMemory(max(slots, 1) * _CELL_WORDS * _WORD, "progress")
        self.memory = memory
        self._words = memoryview(memory.map).cast("Q")

    @classmethod
    def attach(cls, fd: int) -> Progress:
        """The master's cells, mapped from the descriptor it sent."""
        return cls(0, memory=SharedMemory.attach(fd))

    def cell(self, index: int) -> ProgressCell:
        """The cell of slot ``index`` (0-based)."""
        return ProgressCell(self._words, index)
