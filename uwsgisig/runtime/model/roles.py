"""The kinds of process a runtime has."""

from __future__ import annotations

import enum

__all__ = ["Role"]


class Role(enum.IntEnum):
    """The kind of a process of the runtime (its value travels in PROC frames)."""

    MASTER = 0
    WORKER = 1
    MULE = 2
    SPOOLER = 3
