"""The master's ends of the sockets: one per child slot, the controller, the shared queues.

Each keeps an outbox of frames the socket could not take yet. A `Slot` also
keeps ``sent``: the signal frames (RUN, DELIVER) queued for it that its child
has not started, trimmed with the child's progress cell. That is what
`Slot.recover` gives back when a child dies.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios

from ..ipc.progress import ProgressCell
from ..ipc.rings import Ring
from ..model.roles import Role
from ..wire.frames import (
    DELIVER_FRAMES,
    FRAME,
    FRAME_SIZE,
    READ_SIZE,
    RUN_FRAMES,
    FrameReader,
    Op,
    pack,
)

__all__ = ["Peer", "SharedQueue", "Slot"]


class Peer:
    """The master's end of a private socket, with what waits to be written to it."""

    def __init__(self, sock: socket.socket, ring: Ring | None = None) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.ring = ring  # the peer's frames to the master, None if they use the socket
        self.reader = FrameReader()
        self.outbox = bytearray()
        self.watching_out = False  # whether the master's poll waits for room to write
        self.waiting: int | None = None  # the signal its wait() waits for
        self.payload = bytearray()  # of the request being received, from PAYLOAD frames

    def put(self, op: Op, num: int = 0, value: int = 0, arg: int = 0) -> None:
        """Queue one frame that is not a signal."""
        self.outbox += pack(op, num, value, arg)

    def deliver(self, num: int) -> None:
        """Answer this peer's wait() with ``num``."""
        self.outbox += DELIVER_FRAMES[num]

    def backlog(self) -> int:
        """Signals queued for this peer and not taken yet (the controller: not written yet)."""
        return len(self.outbox) // FRAME_SIZE

    @property
    def in_worker_pool(self) -> bool:
        """Whether signals with no handler may answer its wait() (workers and the controller)."""
        return True

    def describe(self) -> str:
        return "the controller"


class Slot(Peer):
    """One child position (worker 2, mule 1, the spooler) and the process filling it."""

    def __init__(
        self,
        role: Role,
        ident: int,
        progress: ProgressCell,
        ring: Ring | None = None,
        *,
        attached: bool = False,
    ) -> None:
        # The child's end stays open in the master, so frames queued for a child
        # that dies are read by the child that replaces it.
        master_end, child_end = socket.socketpair()
        super().__init__(master_end, ring)
        self.child_end = child_end
        self.role = role
        self.id = ident
        self.progress = progress
        self.sent = bytearray()  # RUN/DELIVER frames queued and not started, in order
        self._taken = 0  # progress.started when ``sent`` was last trimmed
        self.pid: int | None = None
        self.ready = False
        self.started_at = 0.0
        self.respawn_delay = 0.0
        self.respawns = 0  # processes started for this slot after the first
        self.reloading = False
        # Filled by a process that attached (a web server's worker), not by a fork.
        self.attached = attached

    @property
    def vacant(self) -> bool:
        """An attach slot that no process holds: it is skipped by ``workers``."""
        return self.attached and self.pid is None

    @property
    def key(self) -> tuple[int, int]:
        return (int(self.role), self.id)

    @property
    def in_worker_pool(self) -> bool:
        return self.role == Role.WORKER

    def describe(self) -> str:
        name = self.role.name.lower()
        return f"{name} {self.id}" if self.role != Role.SPOOLER else name

    def run(self, num: int) -> None:
        """Queue signal ``num`` for this child to run."""
        frame = RUN_FRAMES[num]
        self.outbox += frame
        self.sent += frame

    def run_frames(self, frames: bytes) -> None:
        """Queue ready-made RUN frames (a burst) for this child to run."""
        self.outbox += frames
        self.sent += frames

    def deliver(self, num: int) -> None:
        frame = DELIVER_FRAMES[num]
        self.outbox += frame
        self.sent += frame

    def backlog(self) -> int:
        """Signals queued for this child that it has not started, wherever they wait.

        In the outbox, in the socket or read into the child's inbox: all are
        accepted and not yet run, so all count against the queue size.
        """
        self.forget_started()
        return len(self.sent) // FRAME_SIZE

    def forget_started(self) -> None:
        """Drop from ``sent`` the frames the child has started (its progress cell says how many)."""
        started = self.progress.started
        if started != self._taken:
            del self.sent[: (started - self._taken) * FRAME_SIZE]
            self._taken = started

    def recover(self) -> list[int]:
        """After the child died: queue again what it had not started; return lost DELIVERs.

        Whatever else waited for the dead child (credit, answers to its
        requests, a RELOAD) meant nothing to its replacement, so the outbox and
        the unread socket buffer are dropped and rebuilt from ``sent``. A
        DELIVER answered the dead child's wait(): its number is returned, to be
        routed again.
        """
        self.forget_started()
        self._drain_child_end()
        self.outbox.clear()
        self.reader = FrameReader()
        self.payload.clear()
        self.waiting = None
        runs = bytearray()
        delivered = []
        for op, _, num, _ in FRAME.iter_unpack(self.sent):
            if op == Op.RUN:
                runs += RUN_FRAMES[num]
            else:
                delivered.append(num)
        self.sent = bytearray(runs)
        self.outbox += runs
        return delivered

    def _drain_child_end(self) -> None:
        # MSG_DONTWAIT, not setblocking(): the flag would be shared with every
        # process that holds this end, the replacement among them.
        try:
            while self.child_end.recv(READ_SIZE, socket.MSG_DONTWAIT):
                pass
        except (BlockingIOError, InterruptedError):
            pass


class SharedQueue:
    """Signals that several children read: the first free reader takes each one.

    Signals travel as bare numbers, one byte each, so a reader takes whole
    signals whatever it reads, and an idle reader takes one at a time. Two
    sockets carry them, so that a lone signal wakes one idle reader and a
    burst wakes them all:

    - ``single`` takes one signal per write, and its readers watch it with
      ``EPOLLEXCLUSIVE``. A write wakes one reader that waits, if one does;
      if none does, every reader is marked to look at the socket when it
      next waits. A lone signal thus wakes one reader, not all of them, and
      always has a reader that will take it.
    - ``burst`` takes the rest: a write of several signals at once wakes
      every idle reader, so N signals for N idle readers run side by side.

    A queue made for one reader (``readers`` 1) writes everything to
    ``burst``: with nobody else to wake, one socket keeps its signals in the
    order they were raised. Two or more readers run signals side by side,
    and the order in which they start is not kept (a reader busy with a
    burst may take its next signal before an older lone one).
    """

    def __init__(self, name: str, readers: int = 2) -> None:
        self.name = name
        self.single = _Pipe()
        self.burst = _Pipe()
        self.lone_to_single = readers > 1
        # The end the master watches for room to write (``single`` never fills).
        self.sock = self.burst.write_end
        self.outbox = bytearray()
        self.watching_out = False  # whether the master's poll waits for room to write

    @property
    def read_ends(self) -> tuple[socket.socket, socket.socket]:
        """``(single, burst)``: what a reader of the queue reads."""
        return self.single.read_end, self.burst.read_end

    def fds(self) -> list[int]:
        """Every descriptor of the queue (a forked child closes those it does not read)."""
        return [*self.single.fds(), *self.burst.fds()]

    def close(self) -> None:
        """Close every end (the master's copies)."""
        self.single.close()
        self.burst.close()

    def write(self) -> None:
        """Write what the outbox holds without blocking: a lone signal to ``single``
        (with two readers or more), the rest to ``burst``; what does not fit stays."""
        outbox = self.outbox
        if len(outbox) == 1 and self.lone_to_single and self.single.send(outbox):
            outbox.clear()
            return
        del outbox[: self.burst.send(outbox)]

    def backlog(self) -> int:
        """Signals in the outbox and in the sockets that no reader took yet."""
        return len(self.outbox) + self.single.unread() + self.burst.unread()


class _Pipe:
    """One socketpair of a shared queue: both ends stay open in the master."""

    __slots__ = ("_maybe_unread", "read_end", "write_end")

    def __init__(self) -> None:
        self.write_end, self.read_end = socket.socketpair()
        self.write_end.setblocking(False)
        self.read_end.setblocking(False)
        self._maybe_unread = False  # bytes were written since it was last seen empty

    def send(self, data: bytearray) -> int:
        """Write what fits of ``data`` without blocking; return how many bytes."""
        try:
            sent = self.write_end.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        if sent:
            self._maybe_unread = True
        return sent

    def unread(self) -> int:
        """Bytes written that no reader took yet."""
        if not self._maybe_unread:
            return 0
        # The master holds the read end too, so FIONREAD sees what is unread.
        raw = fcntl.ioctl(self.read_end.fileno(), termios.FIONREAD, _INT_ZERO)
        unread = struct.unpack("i", raw)[0]
        self._maybe_unread = unread > 0
        return unread

    def fds(self) -> list[int]:
        return [self.write_end.fileno(), self.read_end.fileno()]

    def close(self) -> None:
        self.write_end.close()
        self.read_end.close()


_INT_ZERO = struct.pack("i", 0)
