"""A child's end of its private socket to the master.

The link sends frames and sorts what it reads: CREDIT frames refill the
raise window, answers (REGISTERED, PROC, END) go to ``replies`` and signal
frames (RUN, DELIVER, RELOAD, SPOOL) wait in ``inbox`` until the signal loop serves
them. Reading never runs user code, so a handler that raises a signal while
the window is empty can block here safely.
"""

from __future__ import annotations

import select
import socket
import time
from collections import deque

from ..errors import SignalQueueFullError
from .frames import RAISE_FRAMES, FrameReader, Op, pack, pack_payload

__all__ = ["MasterGone", "MasterLink", "RAISE_WINDOW"]

# RAISE frames a child may have in flight before the master grants more.
RAISE_WINDOW = 4096


class MasterGone(Exception):
    """The master closed its end: the runtime is over for this process."""


class MasterLink:
    """Frames to and from the master over one blocking socket."""

    def __init__(self, sock: socket.socket, *, send_timeout: float) -> None:
        self.sock = sock
        self.send_timeout = send_timeout
        self.credit = RAISE_WINDOW
        self.inbox: deque[tuple[int, int]] = deque()  # (op, num)
        self.replies: deque[tuple[int, int, int, int]] = deque()  # (op, arg, num, value)
        self._reader = FrameReader()
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)

    def fileno(self) -> int:
        """The socket's descriptor, for the signal loop's poll."""
        return self.sock.fileno()

    def send(self, op: Op, num: int = 0, value: int = 0, arg: int = 0) -> None:
        """Send one frame that needs no credit."""
        self._write(pack(op, num, value, arg))

    def _write(self, frame: bytes) -> None:
        try:
            self.sock.sendall(frame)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise MasterGone() from exc

    def raise_signal(self, num: int) -> None:
        """Queue ``num`` in the master; wait for credit while the master is full."""
        if not self.credit:
            self._wait_for_credit(num)
        # Written at once, never buffered here: once this returns, the signal is
        # in the master's socket and survives this process.
        self._write(RAISE_FRAMES[num])
        self.credit -= 1

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
        if timeout is not None and not self._poll.poll(max(0, int(timeout * 1000) + 1)):
            return False
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        if not data:
            raise MasterGone()
        for op, arg, num, value in self._reader.feed(data):
            if op == Op.CREDIT:
                self.credit += value
            elif op in (Op.RUN, Op.DELIVER, Op.RELOAD, Op.SPOOL):
                self.inbox.append((op, num))
            else:
                self.replies.append((op, arg, num, value))
        return True

    def request_with_payload(
        self, op: Op, num: int, payload: bytes, *, until: Op, timeout: float = 10.0
    ) -> list[tuple[int, int, int, int]]:
        """Send ``payload`` in PAYLOAD frames, then ``op``; return the replies up to ``until``."""
        self._write(pack_payload(payload))
        return self.request(op, num, len(payload), until=until, timeout=timeout)

    def request(
        self,
        op: Op,
        num: int = 0,
        value: int = 0,
        arg: int = 0,
        *,
        until: Op,
        timeout: float = 10.0,
    ) -> list[tuple[int, int, int, int]]:
        """Send a frame and return the replies up to and including the first ``until`` frame."""
        self.send(op, num, value, arg)
        deadline = time.monotonic() + timeout
        answer: list[tuple[int, int, int, int]] = []
        while True:
            while self.replies:
                reply = self.replies.popleft()
                answer.append(reply)
                if reply[0] == until:
                    return answer
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the master did not answer {op.name} within {timeout:g} s")
            self.read(remaining)
