"""The loop of a worker, mule or spooler: serve signals, answer wait().

A child reads two kinds of input: its private socket (RUN for a signal aimed
at it alone, DELIVER answering its wait(), RELOAD) and the shared queues it
belongs to (all workers, all mules, its farms), where the first reader takes
each signal. A child busy in a handler reads nothing, so the next signal of a
shared queue goes to a child that is free: uWSGI's "first available".
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable, Iterable

from .frames import ANY_SIGNAL, Op, Role
from .link import MasterGone, MasterLink
from .process import CURRENT
from .table import SignalTable

__all__ = ["SignalLoop", "run_child"]

log = logging.getLogger("uwsgisig")

# Signals taken in a row from a shared queue before the loop polls its sockets again.
HOT_STREAK = 64


class Poller:
    """Waits on the private socket and the shared queues of one child.

    On Linux the shared queues are watched with ``EPOLLEXCLUSIVE``: a signal
    written to a queue wakes one idle reader, not all of them, so idle
    workers do not race for every signal.
    """

    def __init__(self, private_fd: int, shared_fds: list[int]) -> None:
        self._epoll = getattr(select, "epoll", None)
        if self._epoll is not None:
            self._epoll = select.epoll()
            self._epoll.register(private_fd, select.EPOLLIN)
            for fd in shared_fds:
                self._epoll.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        else:
            self._poll = select.poll()
            for fd in [private_fd, *shared_fds]:
                self._poll.register(fd, select.POLLIN)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        """Return ``(fd, events)`` for the ready descriptors, waiting up to ``timeout`` s."""
        if self._epoll is not None:
            return self._epoll.poll(-1 if timeout is None else timeout)
        return self._poll.poll(None if timeout is None else int(timeout * 1000) + 1)


class SignalLoop:
    """Serves the signals of one process; ``table`` None means run no handler."""

    def __init__(
        self, link: MasterLink, queues: Iterable[socket.socket], table: SignalTable | None
    ) -> None:
        self.link = link
        self.table = table
        self.queues = {queue.fileno(): queue for queue in queues}
        self.waiting: int | None = None  # what the master believes we wait for
        self.reload_requested = False
        self._hot_queue: socket.socket | None = None
        self._streak = 0
        self._poller = Poller(link.fileno(), list(self.queues))

    def serve_forever(self) -> None:
        """Run handlers until the master asks this process to reload."""
        while not self.reload_requested:
            op, num = self._next_signal(None)  # type: ignore[misc]
            self._handle(op, num)

    def wait(self, num: int | None = None, timeout: float | None = None) -> int:
        """Block until signal ``num`` (or any signal) arrives; return its number.

        Registered signals that arrive meanwhile run their handlers, as in uWSGI.
        """
        want = ANY_SIGNAL if num is None else num
        self.link.send(Op.WAIT, want)
        self.waiting = want
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    what = "any signal" if num is None else f"signal {num}"
                    raise TimeoutError(f"no {what} arrived within {timeout:g} s")
                incoming = self._next_signal(remaining)
                if incoming is None:
                    continue
                op, got = incoming
                answered = op == Op.DELIVER and self.waiting is not None
                received = self._handle(op, got)
                if received is not None and (answered or want in (ANY_SIGNAL, received)):
                    return received
        finally:
            if self.waiting is not None:
                self.waiting = None
                self.link.send(Op.UNWAIT)

    def _next_signal(self, timeout: float | None) -> tuple[int, int] | None:
        """Return the next ``(op, num)`` for this process, or None after ``timeout``."""
        link = self.link
        if link.inbox:
            return link.inbox.popleft()
        taken = self._take_from_hot_queue()
        if taken is not None:
            return Op.RUN, taken
        deadline = None if timeout is None else time.monotonic() + timeout
        while not link.inbox:
            if deadline is None:
                events = self._poller.wait(None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                events = self._poller.wait(remaining)
            for fd, _ in events:
                queue = self.queues.get(fd)
                if queue is None:
                    link.read(None)
                    continue
                try:
                    data = queue.recv(1)
                except BlockingIOError:
                    continue  # another process took it
                if data:
                    self._hot_queue = queue
                    return Op.RUN, data[0]
        return link.inbox.popleft()

    def _take_from_hot_queue(self) -> int | None:
        """Take the next signal of the shared queue that gave the last one, without a poll.

        In a burst this halves the system calls per signal. After HOT_STREAK
        signals in a row the loop polls once, so the private socket is never starved.
        """
        queue = self._hot_queue
        if queue is None:
            return None
        if self._streak >= HOT_STREAK:
            self._hot_queue, self._streak = None, 0
            return None
        try:
            data = queue.recv(1)
        except BlockingIOError:
            data = b""
        if not data:
            self._hot_queue, self._streak = None, 0
            return None
        self._streak += 1
        return data[0]

    def _handle(self, op: int, num: int) -> int | None:
        """Act on one frame; return the signal number received, if any."""
        if op == Op.RELOAD:
            self.reload_requested = True
            return None
        if op == Op.DELIVER:
            if self.waiting is None:
                # It crossed our UNWAIT on the wire: give it back to be routed again.
                self.link.send(Op.RETURN, num)
                return None
            self.waiting = None
            self._run_handler(num, missing_ok=True)
            return num
        self._run_handler(num, missing_ok=False)
        return num

    def _run_handler(self, num: int, *, missing_ok: bool) -> None:
        CURRENT.last_received = num
        entry = self.table.get(num) if self.table is not None else None
        if entry is None or entry.handler is None:
            if not missing_ok:
                log.error("signal %d has no handler in %s", num, describe_self())
            return
        try:
            entry.handler(num)
        except Exception:
            log.exception(
                "handler %r of signal %d raised in %s", entry.handler, num, describe_self()
            )


def describe_self() -> str:
    """A short name for this process in log lines, e.g. ``worker 2 (pid 123)``."""
    role = CURRENT.role.name.lower() if CURRENT.role is not None else "process"
    ident = f" {CURRENT.id}" if CURRENT.id else ""
    return f"{role}{ident} (pid {os.getpid()})"


def reset_posix_signals() -> None:
    """Give a fresh child the dispositions it needs: the master alone handles stop and reload."""
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)


def run_child(
    role: Role,
    ident: int,
    link: MasterLink,
    queues: list[socket.socket],
    table: SignalTable,
    hooks: Iterable[Callable[[], object]],
) -> int:
    """The body of a forked child; returns its exit code."""
    loop = SignalLoop(link, queues, table)
    CURRENT.role = role
    CURRENT.id = ident
    CURRENT.loop = loop
    CURRENT.master = None
    try:
        for hook in hooks:
            hook()
        link.send(Op.READY)
        loop.serve_forever()
    except MasterGone:
        return 0
    return 0
