"""The door where processes the master did not fork attach as its workers.

A web server's worker (gunicorn, uvicorn, granian) connects to a unix socket
that only the runtime's user can reach: the socket is made with mode 0600,
and the peer's credentials (``SO_PEERCRED``) must show the same user, or
root. It sends one line of JSON, its hello (its signal table, for the check
that both sides imported the same app). The master answers one line of JSON
with the descriptors the worker needs (``SCM_RIGHTS``), or an error that
names what is wrong, and closes.

A hello may say how many workers the server runs. A process that finds
every one of those ids held waits, up to `PATIENCE`, for one to be freed: a
server that reloads (gunicorn on SIGHUP) starts its new workers before the
old ones leave, and this way the new ones take the old ones' ids, as uWSGI's
respawned workers do, instead of ids above them that nobody would hold once
the old ones are gone.

An admitted process keeps its connection open for as long as it is attached.
The master watches that connection and, where the system has them, a pidfd
of the process: either one says at once that the process is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import stat
import struct
import time
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Admission", "AttachDoor", "Visitor", "bind_door", "bind_private_socket"]

log = logging.getLogger("uwsgisig")

HELLO_LIMIT = 1 << 20  # bytes: a signal table of 256 entries is far smaller
HELLO_TIMEOUT = 10.0  # seconds a connection may take to say hello
PATIENCE = 10.0  # seconds a worker may wait for one of its server's ids to be freed
_UCRED = struct.Struct("3i")  # pid, uid, gid


@attrs.frozen
class Admission:
    """What the master gives a process it admits: the answer, its descriptors, a name."""

    answer: dict[str, Any]
    fds: list[int]
    name: str  # e.g. "worker 3", for log lines


@attrs.define(eq=False)
class Visitor:
    """One connection at the door: saying hello, or attached."""

    sock: socket.socket
    pid: int
    deadline: float
    buffer: bytearray = attrs.field(factory=bytearray)
    hello: dict[str, Any] | None = None  # once said, while it waits for a free id
    pidfd: int = -1
    attached: object | None = None  # what `admit` returned the visitor for, once admitted


def bind_door(path: str) -> socket.socket:
    """Listen on the unix socket ``path``, which only this user may connect to."""
    return bind_private_socket(path, "attach socket", backlog=64)


def bind_private_socket(path: str, what: str, *, backlog: int) -> socket.socket:
    """A non-blocking unix socket listening on ``path``, made 0600.

    A socket left at ``path`` by an earlier run is replaced; any other file
    there is an error naming it (``what`` says which socket it was to be).
    """
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise FileExistsError(f"{what} {path!r} exists and is not a socket")
        os.unlink(path)
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # created 0600: nobody else may connect
    try:
        listening.bind(path)
    finally:
        os.umask(old_umask)
    listening.listen(backlog)
    listening.setblocking(False)
    return listening


class AttachDoor:
    """Accepts connections on ``listening``, reads hellos, watches who attached.

    ``admit(pid, hello, patient)`` returns an `Admission` with what it was
    admitted as, an error message, or None for "wait for a free id" (only
    when ``patient``); ``leave(attached)`` is called once for each admitted
    process that is gone.
    """

    def __init__(
        self,
        listening: socket.socket,
        path: str,
        poll: select.poll,
        *,
        admit: Callable[[int, dict[str, Any], bool], tuple[Admission, object] | str | None],
        leave: Callable[[object], None],
    ) -> None:
        self.listening = listening
        self.path = path
        self._poll = poll
        self._admit = admit
        self._leave = leave
        self._by_fd: dict[int, Visitor] = {}

    def start(self) -> None:
        self._poll.register(self.listening, select.POLLIN)

    def owns(self, fd: int) -> bool:
        """Whether ``fd`` is the door's: its socket, a connection or a pidfd."""
        return fd == self.listening.fileno() or fd in self._by_fd

    def fds(self) -> list[int]:
        """Every descriptor the door holds (a forked child closes them)."""
        return [self.listening.fileno(), *self._by_fd]

    def ready(self, fd: int, events: int) -> None:
        if fd == self.listening.fileno():
            self._accept()
            return
        visitor = self._by_fd.get(fd)
        if visitor is None:
            return  # its other descriptor fired first in the same pass
        if visitor.attached is not None:
            self._gone(visitor)  # its connection closed, or its process exited
        else:
            self._read_hello(visitor)

    def timeout(self) -> float | None:
        """Seconds until a hello is overdue or a wait for an id ends, None if none."""
        waiting = [v.deadline for v in self._by_fd.values() if v.attached is None]
        return max(0.0, min(waiting) - time.monotonic()) if waiting else None

    def expire(self) -> None:
        """Turn away connections that did not say hello in time; seat those done waiting."""
        now = time.monotonic()
        for visitor in list(self._by_fd.values()):
            if visitor.attached is not None or visitor.deadline > now:
                continue
            if visitor.hello is None:
                self._refuse(visitor, f"no hello within {HELLO_TIMEOUT:g} s")
            else:
                self._decide(visitor, patient=False)

    def close(self) -> None:
        """Close the door and every connection; remove the socket file."""
        for visitor in list(self._by_fd.values()):
            self._forget(visitor)
        with contextlib.suppress(KeyError, ValueError):
            self._poll.unregister(self.listening)
        self.listening.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    # ---------------------------------------------------------------- steps

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: the next pass tries again
                log.error("attach socket: cannot accept: %s", exc)
                return
            sock.setblocking(False)
            pid, uid, _gid = _UCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            )
            visitor = Visitor(sock, pid, time.monotonic() + HELLO_TIMEOUT)
            self._by_fd[sock.fileno()] = visitor
            self._poll.register(sock, select.POLLIN)
            if uid not in (os.geteuid(), 0):
                self._refuse(
                    visitor, f"user {uid} may not attach to a runtime of user {os.geteuid()}"
                )

    def _read_hello(self, visitor: Visitor) -> None:
        try:
            data = visitor.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._forget(visitor)
            return
        visitor.buffer += data
        line, newline, _ = visitor.buffer.partition(b"\n")
        if not newline:
            if len(visitor.buffer) > HELLO_LIMIT:
                self._refuse(visitor, f"hello longer than {HELLO_LIMIT} bytes")
            return
        try:
            hello = json.loads(line)
            if not isinstance(hello, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            self._refuse(visitor, f"hello is not a JSON object: {exc}")
            return
        visitor.hello = hello
        visitor.deadline = time.monotonic() + PATIENCE
        visitor.buffer.clear()
        self._decide(visitor, patient=True)

    def _decide(self, visitor: Visitor, *, patient: bool) -> None:
        assert visitor.hello is not None
        decision = self._admit(visitor.pid, visitor.hello, patient)
        if decision is None:
            return  # it waits: a worker that leaves, or its deadline, seats it
        if isinstance(decision, str):
            self._refuse(visitor, decision)
            return
        admission, attached = decision
        try:
            _send_line(visitor.sock, {"ok": True, **admission.answer}, admission.fds)
        except OSError as exc:
            log.warning("pid %d left while it attached: %s", visitor.pid, exc)
            visitor.attached = attached
            self._gone(visitor)
            return
        visitor.attached = attached
        visitor.hello = None
        self._watch_process(visitor)
        log.info("pid %d attached as %s", visitor.pid, admission.name)

    def _watch_process(self, visitor: Visitor) -> None:
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is None:
            return  # the connection alone tells: it closes when the process exits
        try:
            visitor.pidfd = pidfd_open(visitor.pid)
        except OSError:  # already gone: its connection says so too
            return
        self._by_fd[visitor.pidfd] = visitor
        self._poll.register(visitor.pidfd, select.POLLIN)

    def _gone(self, visitor: Visitor) -> None:
        attached = visitor.attached
        self._forget(visitor)
        if attached is not None:
            self._leave(attached)
            self._seat_waiting()

    def _seat_waiting(self) -> None:
        """An id was freed: the oldest visitors waiting for one may take it."""
        waiting = [v for v in self._by_fd.values() if v.hello is not None and v.attached is None]
        for visitor in sorted(set(waiting), key=lambda v: v.deadline):
            if visitor.sock.fileno() in self._by_fd:
                self._decide(visitor, patient=True)

    def _refuse(self, visitor: Visitor, reason: str) -> None:
        log.error("pid %d may not attach: %s", visitor.pid, reason)
        with contextlib.suppress(OSError):
            _send_line(visitor.sock, {"ok": False, "error": reason}, [])
        self._forget(visitor)

    def _forget(self, visitor: Visitor) -> None:
        for fd in (visitor.sock.fileno(), visitor.pidfd):
            if fd >= 0 and self._by_fd.pop(fd, None) is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._poll.unregister(fd)
        visitor.sock.close()
        if visitor.pidfd >= 0:
            os.close(visitor.pidfd)
            visitor.pidfd = -1


def _send_line(sock: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
    """Send one JSON line with ``fds``; the connection may block briefly for it."""
    data = json.dumps(message).encode() + b"\n"
    sock.setblocking(True)
    sock.settimeout(1.0)
    try:
        sent = socket.send_fds(sock, [data], fds) if fds else sock.send(data)
        if sent < len(data):
            sock.sendall(data[sent:])
    finally:
        sock.setblocking(False)
