"""Who this process is in the runtime (master, worker N, mule N, spooler, or none),
and what a forked child is handed to become one."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from .config import MuleProgram, RuntimeConfig
from .roles import Role
from .table import SignalTable

if TYPE_CHECKING:  # the model is imported by every layer above it, never the reverse
    from ..child import SignalLoop
    from ..ipc.cache import CacheStore
    from ..ipc.locks import SharedLocks
    from ..ipc.messages import Mailbox, PostOffice
    from ..ipc.progress import ProgressCell
    from ..ipc.rings import Ring
    from ..ipc.spool import SpoolDir

__all__ = ["CURRENT", "ChildSpec", "ProcessState"]


@attrs.define
class ProcessState:
    """The identity of this process. ``role`` is None outside any runtime."""

    role: Role | None = None
    id: int = 0
    masterpid: int = 0
    config: RuntimeConfig = attrs.field(factory=RuntimeConfig)
    loop: SignalLoop | None = None  # in a child: serves signals, talks to the master
    early_signals: list[int] = attrs.field(factory=list)  # raised by the app before the loop
    last_received: int | None = None
    farms: tuple[str, ...] = ()  # names of the farms this mule belongs to
    post: PostOffice | None = None  # in a child: the runtime's mule message queues
    locks: SharedLocks | None = None  # in a child: the runtime's user locks
    caches: CacheStore | None = None  # in the master and its children: the runtime's caches

    def reset(self) -> None:
        """Forget everything: this process is in no runtime (a test, a forked copy)."""
        fresh = ProcessState()
        for field in attrs.fields(ProcessState):
            setattr(self, field.name, getattr(fresh, field.name))


@attrs.frozen
class ChildSpec:
    """Everything a forked child needs to be worker N, mule N or the spooler."""

    role: Role
    id: int
    masterpid: int
    link: socket.socket  # its private socket to the master
    # The (single, burst) read ends of each shared signal queue it serves.
    queues: tuple[tuple[socket.socket, socket.socket], ...]
    progress: ProgressCell
    ring: Ring  # where its frames to the master go
    table: SignalTable
    hooks: tuple[Callable[[], object], ...]
    config: RuntimeConfig
    post: PostOffice
    locks: SharedLocks
    mailbox: Mailbox | None = None
    farms: tuple[str, ...] = ()
    program: MuleProgram | None = None
    spool: SpoolDir | None = None
    caches: CacheStore | None = None  # the runtime's caches, if it has any
    rpc_listening: socket.socket | None = None  # a forked worker's: the runtime's RPC socket


CURRENT = ProcessState()
