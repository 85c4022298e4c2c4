"""A child's end of its private socket to the master.

The link sends frames and sorts what it reads: CREDIT frames refill the
raise window, answers (REGISTERED, PROC, END, EVENT_ADDED) go to ``replies``
and signal frames (RUN, DELIVER, RELOAD, SPOOL, FREQUENCY) wait in ``inbox``
until the signal loop takes them with `MasterLink.take`, which counts each RUN and
DELIVER in the child's progress cell. Reading never runs user code, so a
handler that raises a signal while the window is empty can block here safely.

The verbs below (`raise_signal`, `wait_for`, `register`, `add_event`, ...)
are what the platform calls: nothing outside this module builds a frame.

A link made ``threaded`` (an attached worker: its signal loop runs in a
thread of its own while the server's threads raise signals) writes each
frame under a lock, reads without blocking under another, and never polls
for more than `THREADED_POLL` at a time when it waits for credit or a
reply: the loop's thread may read what it waits for. Signal frames that
another thread reads into the inbox are announced with ``on_inbox``.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import repeat

from ...errors import SignalAlreadyRegisteredError, SignalQueueFullError, TargetError
from ..model.roles import Role
from ..wire.frames import (
    BELL_FRAME,
    FRAME,
    FRAME_SIZE,
    PROC_READY,
    RAISE_FRAMES,
    RAISE_WINDOW,
    READ_SIZE,
    Frame,
    FrameReader,
    Op,
    RegisterError,
    numbers_if_all,
    pack,
    pack_payload,
)
from .progress import Progress, ProgressCell
from .rings import Ring

__all__ = ["MasterGone", "MasterLink"]

_SIGNAL_OPS = frozenset((Op.RUN, Op.DELIVER, Op.RELOAD, Op.SPOOL, Op.FREQUENCY))
_COUNTED_OPS = frozenset((Op.RUN, Op.DELIVER))
# Frame ops as plain ints: an enum member's lookup costs ten times a global int's.
_CREDIT = int(Op.CREDIT)
_RUN = int(Op.RUN)
# Seconds a threaded link polls at most before it looks again at what it waits for.
THREADED_POLL = 0.005


class MasterGone(Exception):
    """The master closed its end: the runtime is over for this process."""


class MasterLink:
    """Frames to and from the master over one blocking socket.

    ``progress`` is the child's cell (None for the controller, whose frames
    nobody has to give to a successor). With a ``ring`` (every child's, and the
    handle's), frames to the master go into it and the socket carries only a
    BELL when the master sleeps; without one they go through the socket.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        send_timeout: float,
        progress: ProgressCell | None = None,
        ring: Ring | None = None,
        threaded: bool = False,
    ) -> None:
        self.sock = sock
        self._ring = ring
        self._head = ring.head if ring is not None else 0
        self.send_timeout = send_timeout
        # The controller's frames need no successor: a cell nobody reads serves it.
        if progress is None:
            unread = Progress(1)
            unread.memory.close_fd()
            progress = unread.cell(0)
        self.progress = progress
        self._started = self.progress.started_word  # what `take` counts
        self.credit = RAISE_WINDOW
        self.inbox: deque[tuple[int, int]] = deque()  # (op, num)
        self.replies: deque[Frame] = deque()
        self._reader = FrameReader()
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self.threaded = threaded
        self._write_lock = threading.Lock() if threaded else contextlib.nullcontext()
        self._read_lock = threading.Lock() if threaded else contextlib.nullcontext()
        self._request_lock = threading.Lock() if threaded else contextlib.nullcontext()
        self._credit_lock = threading.Lock() if threaded else contextlib.nullcontext()
        self._polls = threading.local()
        self.reader: int | None = None  # the thread of the signal loop, when threaded
        self.on_inbox: Callable[[], None] | None = None

    def fileno(self) -> int:
        """The socket's descriptor, for the signal loop's poll."""
        return self.sock.fileno()

    def close(self) -> None:
        """Close this process's copy of the socket (a forked copy of a child does this)."""
        self.sock.close()

    # ---------------------------------------------------------------- signals

    def raise_signal(self, num: int) -> None:
        """Queue ``num`` in the master; wait for credit while the master is full."""
        if self.threaded:
            self._raise_threaded(num)
            return
        if not self.credit:
            self._wait_for_credit(num)
        # Written at once, never buffered here: once this returns, the signal is
        # in the master's ring (or socket) and survives this process.
        self._write_frames(RAISE_FRAMES[num])
        self.credit -= 1

    def _raise_threaded(self, num: int) -> None:
        while True:
            with self._credit_lock:
                if self.credit:
                    self.credit -= 1
                    break
            self._wait_for_credit(num)
        self._write(RAISE_FRAMES[num])

    def take(self) -> tuple[int, int]:
        """The next signal frame ``(op, num)`` of the inbox (which must not be empty)."""
        frame = self.inbox.popleft()
        if frame[0] in _COUNTED_OPS:
            self._started[0] += 1
        return frame

    def wait_for(self, num: int) -> None:
        """Tell the master this process blocks in wait() for ``num`` (or ANY_SIGNAL)."""
        self.send(Op.WAIT, num)

    def stop_waiting(self) -> None:
        """Tell the master this process left wait()."""
        self.send(Op.UNWAIT)

    def give_back(self, num: int) -> None:
        """Hand back a DELIVER that arrived after this process left wait()."""
        self.send(Op.RETURN, num)

    def ready(self) -> None:
        """Tell the master this process ran its post-fork hooks and serves signals."""
        self.send(Op.READY)

    # ---------------------------------------------------------------- requests

    def register(self, num: int, kind_code: int, index: int, *, describe: str) -> None:
        """Ask the master to route ``num`` to this process; raise if it refuses.

        ``describe`` is the target as the caller wrote it, for the error message.
        """
        answer = self.request(Op.REGISTER, num, index, arg=kind_code, until=Op.REGISTERED)
        code = answer[-1].arg
        if code == RegisterError.TAKEN:
            raise SignalAlreadyRegisteredError(
                f"signal {num} is already registered by another process"
            )
        if code == RegisterError.NO_SUCH_TARGET:
            raise TargetError(f"target {describe!r} names no process of this runtime")

    def add_event(self, num: int, payload: bytes) -> bool:
        """Ask the master to arm the encoded event ``payload``; False if it refused."""
        self._write(pack_payload(payload))
        answer = self.request(Op.ADD_EVENT, num, len(payload), until=Op.EVENT_ADDED)
        return answer[-1].arg == 0

    def raise_on_cluster(self, num: int) -> None:
        """Ask the master to raise ``num`` on every node of its cluster (each routes it as
        its handler there says)."""
        self.send(Op.CLUSTER_RAISE, num)

    def spooled(self) -> None:
        """Tell the master a job was written to the spool directory."""
        self.send(Op.SPOOLED)

    def set_spooler_frequency(self, seconds: int) -> None:
        """Ask the master to make every spooler look at its jobs every ``seconds``."""
        self.send(Op.SPOOLER_FREQUENCY, seconds)

    def workers(self) -> bytes:
        """The workers' figures as the master sends them: JSON, as its stats server has them."""
        answer = self.request(Op.WORKERS, until=Op.END)
        payload = b"".join(
            frame.value.to_bytes(4, "little") for frame in answer if frame.op == Op.PAYLOAD
        )
        return payload[: answer[-1].value]

    def status(self) -> list[tuple[Role, int, int, bool]]:
        """``(role, id, pid, ready)`` of every process of the runtime, the master first
        (pid 0 while one is respawned; the master is always ready)."""
        return [
            (role, frame.num, frame.value, role == Role.MASTER or bool(frame.arg & PROC_READY))
            for frame in self.request(Op.STATUS, until=Op.END)
            if frame.op == Op.PROC
            for role in (Role(frame.arg & ~PROC_READY),)
        ]

    # ---------------------------------------------------------------- plumbing

    def send(self, op: Op, num: int = 0, value: int = 0, arg: int = 0) -> None:
        """Send one frame that needs no credit."""
        self._write(pack(op, num, value, arg))

    def _write(self, frames: bytes) -> None:
        if self.threaded:
            with self._write_lock:
                self._write_frames(frames)
        else:
            self._write_frames(frames)

    def _write_frames(self, frames: bytes) -> None:
        ring = self._ring
        try:
            if ring is None:
                self.sock.sendall(frames)
                return
            head = self._head
            if ring.room(head) < len(frames):
                self._wait_for_room(ring, head, len(frames))
            master_sleeps = ring.publish(head, frames)
            self._head = head + len(frames)
            if master_sleeps:
                self.sock.send(BELL_FRAME)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise MasterGone() from exc

    def _wait_for_room(self, ring: Ring, head: int, size: int) -> None:
        """The ring is full: the master reads it on every pass, so room comes soon."""
        deadline = time.monotonic() + self.send_timeout
        while ring.room(head) < size:
            if time.monotonic() > deadline:
                raise SignalQueueFullError(
                    f"the master read nothing from this process for {self.send_timeout:g} s"
                )
            self.sock.send(BELL_FRAME)  # in case it sleeps
            self.read(0.001)

    def _wait_for_credit(self, num: int) -> None:
        deadline = time.monotonic() + self.send_timeout
        while not self.credit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SignalQueueFullError(
                    f"signal {num} was not sent: the master's queue stayed full for "
                    f"{self.send_timeout:g} s (no process is free to take its signals)"
                )
            self.read(remaining)

    def read(self, timeout: float | None) -> bool:
        """Read what the master sent, waiting up to ``timeout`` seconds; True if anything came."""
        if self.threaded:
            return self._read_threaded(timeout)
        if timeout is not None and not self._poll.poll(max(0, int(timeout * 1000) + 1)):
            return False
        try:
            data = self.sock.recv(READ_SIZE)
        except ConnectionResetError:
            data = b""
        if not data:
            raise MasterGone()
        self._sort(data)
        return True

    def _read_threaded(self, timeout: float | None) -> bool:
        if timeout is not None:
            if threading.get_ident() != self.reader:
                timeout = min(timeout, THREADED_POLL)
            if not self._thread_poll().poll(max(0, int(timeout * 1000) + 1)):
                return False
        with self._read_lock:
            try:
                data = self.sock.recv(READ_SIZE, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return False  # another thread took it
            except ConnectionResetError:
                data = b""
            if not data:
                raise MasterGone()
            queued = len(self.inbox)
            self._sort(data)
            grew = len(self.inbox) > queued
        if grew and self.on_inbox is not None and threading.get_ident() != self.reader:
            self.on_inbox()
        return True

    def _thread_poll(self) -> select.poll:
        # A poll object may not be used by two threads at once: one per thread.
        poll = getattr(self._polls, "poll", None)
        if poll is None:
            poll = self._polls.poll = select.poll()
            poll.register(self.sock, select.POLLIN)
        return poll

    def _sort(self, data: bytes) -> None:
        frames = self._reader.whole_frames(data)
        # Only RUN frames (a burst for this process alone, a fan-out to `workers`):
        # their numbers join the inbox in one step, not frame by frame.
        runs = numbers_if_all(frames, _RUN) if len(frames) > FRAME_SIZE else None
        if runs is not None:
            self.inbox.extend(zip(repeat(_RUN), runs))
            return
        for op, arg, num, value in FRAME.iter_unpack(frames):
            if op == _CREDIT:
                with self._credit_lock:
                    self.credit += value
            elif op in _SIGNAL_OPS:
                self.inbox.append((op, num))
            else:
                self.replies.append(Frame(op, arg, num, value))

    def request(
        self,
        op: Op,
        num: int = 0,
        value: int = 0,
        arg: int = 0,
        *,
        until: Op,
        timeout: float = 10.0,
    ) -> list[Frame]:
        """Send a frame and return the replies up to and including the first ``until`` frame."""
        with self._request_lock:  # one request at a time: replies come back in order
            return self._request(op, num, value, arg, until=until, timeout=timeout)

    def _request(
        self, op: Op, num: int, value: int, arg: int, *, until: Op, timeout: float
    ) -> list[Frame]:
        self.send(op, num, value, arg)
        deadline = time.monotonic() + timeout
        answer: list[Frame] = []
        while True:
            while self.replies:
                reply = self.replies.popleft()
                answer.append(reply)
                if reply.op == until:
                    return answer
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the master did not answer {op.name} within {timeout:g} s")
            self.read(remaining)
