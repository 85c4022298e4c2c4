"""Who this process is in the runtime: master, worker N, mule N, spooler, or none."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from .config import RuntimeConfig
from .frames import Role

if TYPE_CHECKING:
    from .child import SignalLoop
    from .master import Master
    from .messages import PostOffice

__all__ = ["CURRENT", "ProcessState"]


@attrs.define
class ProcessState:
    """The identity of this process. ``role`` is None outside any runtime."""

    role: Role | None = None
    id: int = 0
    masterpid: int = 0
    config: RuntimeConfig = attrs.field(factory=RuntimeConfig)
    loop: SignalLoop | None = None  # in a child: serves signals, talks to the master
    master: Master | None = None  # in the master, once its loop exists
    early_signals: list[int] = attrs.field(factory=list)  # raised by the app before the loop
    last_received: int | None = None
    farms: tuple[str, ...] = ()  # names of the farms this mule belongs to
    post: PostOffice | None = None  # in a child: the runtime's mule message queues


CURRENT = ProcessState()
