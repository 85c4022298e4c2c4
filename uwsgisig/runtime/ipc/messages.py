"""Mule messages: bounded datagram queues that any process of the runtime writes.

Each mule has a queue of its own, all mules share one, and each farm has one.
A queue is a ``SOCK_DGRAM`` socketpair made by the master before it forks:
every process keeps the write end, the mules that read the queue keep the
read end. A datagram is one whole message, written and taken atomically, so
a message read by one mule is never seen by another, and a mule busy with a
message reads nothing: the next one goes to a mule that is free.

The master keeps both ends open, so the messages queued in the kernel outlive
any mule: a mule that dies leaves them to its farm mates or its successor.
The queue is bounded by its socket's send buffer; a sender that finds it full
waits for room up to its timeout, then raises. Nothing is ever dropped.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

from ...errors import MessageQueueFullError, MessageTooLargeError, TargetError

__all__ = ["MAX_MESSAGE_SIZE", "Mailbox", "MessageQueue", "PostOffice", "as_message"]

# As uWSGI's default --mule-msg-size: one message is at most 64 KiB.
MAX_MESSAGE_SIZE = 65536
# Asked of the kernel for each queue; Linux caps it at net.core.wmem_max (x2).
QUEUE_BUFFER = 4 * 1024 * 1024


def as_message(message: bytes | bytearray | memoryview | str) -> bytes:
    """Return ``message`` as bytes (``str`` as UTF-8); raise if it is too big or not data."""
    if isinstance(message, str):
        data = message.encode("utf-8")
    elif isinstance(message, (bytes, bytearray, memoryview)):
        data = bytes(message)
    else:
        raise TypeError(f"a mule message is bytes or str, not {type(message).__name__}")
    if len(data) > MAX_MESSAGE_SIZE:
        raise MessageTooLargeError(len(data), MAX_MESSAGE_SIZE)
    return data


class MessageQueue:
    """One queue of whole messages: many writers, one or more readers."""

    def __init__(self, name: str, *, write_end: socket.socket | None = None) -> None:
        self.name = name
        self.read_end: socket.socket
        if write_end is None:
            self.write_end, self.read_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.write_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, QUEUE_BUFFER)
        else:
            # An attached worker's copy: it writes, and never reads.
            self.write_end = write_end
        self._writable = select.poll()
        self._writable.register(self.write_end, select.POLLOUT)

    def fds(self) -> tuple[int, int]:
        """Both descriptors, so a forked child knows which to keep."""
        return self.write_end.fileno(), self.read_end.fileno()

    def put(self, message: bytes, timeout: float) -> None:
        """Queue ``message``; wait up to ``timeout`` seconds while the queue is full."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                # MSG_DONTWAIT rather than O_NONBLOCK: the descriptor is shared
                # with every process, and its flags with it.
                self.write_end.send(message, socket.MSG_DONTWAIT)
                return
            except BlockingIOError:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MessageQueueFullError(
                    f"a {len(message)}-byte message to {self.name} was not sent: the queue "
                    f"stayed full for {timeout:g} s (no mule took its messages)"
                )
            self._writable.poll(max(1, int(remaining * 1000)))

    def take(self) -> bytes | None:
        """The next message, or None if the queue is empty (or another reader took it)."""
        try:
            return self.read_end.recv(MAX_MESSAGE_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None

    def fileno(self) -> int:
        """The read end, for a reader's poll."""
        return self.read_end.fileno()


class Mailbox:
    """The queues one mule reads: its own, the one all mules share, its farms'."""

    def __init__(
        self, own: MessageQueue, shared: MessageQueue, farms: tuple[MessageQueue, ...]
    ) -> None:
        self.own = own
        self.shared = shared
        self.farms = farms

    def queues(self, *, mule: bool = True, farms: bool = True) -> tuple[MessageQueue, ...]:
        """The queues to read: those addressed to this mule, those of its farms, or both."""
        return ((self.own, self.shared) if mule else ()) + (self.farms if farms else ())


class PostOffice:
    """Every message queue of a runtime, made by the master before it forks."""

    def __init__(
        self,
        mule_count: int,
        farms: dict[str, tuple[int, ...]],
        *,
        write_ends: Iterator[socket.socket] | None = None,
    ) -> None:
        # With ``write_ends`` (an attached worker's, in `all_queues` order) the
        # queues are the master's, not new ones.
        def queue(name: str) -> MessageQueue:
            return MessageQueue(name, write_end=next(write_ends) if write_ends else None)

        self.mules = tuple(queue(f"mule {i}") for i in range(1, mule_count + 1))
        self.shared = queue("the mules") if mule_count else None
        self.farms = {name: queue(f"farm {name!r}") for name in farms}
        self._farm_mules = farms

    def all_queues(self) -> list[MessageQueue]:
        """Every queue, the shared one included."""
        return [*self.mules, *([self.shared] if self.shared else []), *self.farms.values()]

    def write_fds(self) -> set[int]:
        """The write ends, which every process keeps so that it can send."""
        return {queue.write_end.fileno() for queue in self.all_queues()}

    def mailbox(self, mule_id: int) -> Mailbox:
        """The queues mule ``mule_id`` reads."""
        assert self.shared is not None
        farms = tuple(
            queue for name, queue in self.farms.items() if mule_id in self._farm_mules[name]
        )
        return Mailbox(self.mules[mule_id - 1], self.shared, farms)

    def to_mule(self, mule_id: int) -> MessageQueue:
        """The queue of mule ``mule_id``; 0 is the queue every mule reads."""
        if isinstance(mule_id, bool) or not isinstance(mule_id, int):
            raise TargetError(f"invalid mule {mule_id!r}: give a mule id (an int) or a farm name")
        if not self.mules:
            raise TargetError(f"cannot message mule {mule_id}: this runtime has no mules")
        if not 0 <= mule_id <= len(self.mules):
            raise TargetError(
                f"invalid mule id {mule_id}: this runtime has mules 1 to {len(self.mules)} "
                "(0 means the first free mule)"
            )
        if mule_id == 0:
            assert self.shared is not None
            return self.shared
        return self.mules[mule_id - 1]

    def to_farm(self, name: str) -> MessageQueue:
        """The queue of farm ``name``."""
        queue = self.farms.get(name)
        if queue is None:
            raise TargetError(
                f"unknown farm {name!r}: this runtime's farms are {sorted(self.farms)}"
            )
        return queue
