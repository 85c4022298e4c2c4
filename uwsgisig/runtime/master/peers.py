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
from ..wire.frames import DELIVER_FRAMES, FRAME, FRAME_SIZE, RUN_FRAMES, FrameReader, Op, pack

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
            while self.child_end.recv(262144, socket.MSG_DONTWAIT):
                pass
        except (BlockingIOError, InterruptedError):
            pass


class SharedQueue:
    """A socket that several children read: the first free reader takes each signal.

    It carries bare signal numbers, one byte each, so a reader takes whole
    signals whatever it reads, and each idle reader takes one at a time.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.write_end, self.read_end = socket.socketpair()
        self.write_end.setblocking(False)
        self.read_end.setblocking(False)
        self.outbox = bytearray()
        self.watching_out = False  # whether the master's poll waits for room to write
        self._maybe_unread = False  # bytes were written since the socket was last seen empty

    def wrote(self) -> None:
        """The master wrote to the socket: `backlog` must look into it again."""
        self._maybe_unread = True

    @property
    def sock(self) -> socket.socket:
        """The end the master writes."""
        return self.write_end

    def backlog(self) -> int:
        """Signals in the outbox and in the socket that no reader took yet."""
        unread = 0
        if self._maybe_unread:
            # The master holds the read end too, so FIONREAD sees what is unread.
            raw = fcntl.ioctl(self.read_end.fileno(), termios.FIONREAD, _INT_ZERO)
            unread = struct.unpack("i", raw)[0]
            self._maybe_unread = unread > 0
        return len(self.outbox) + unread


_INT_ZERO = struct.pack("i", 0)
