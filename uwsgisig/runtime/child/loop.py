"""The loop of a worker, mule or spooler: serve signals, answer wait().

A child reads two kinds of input: its private socket (RUN for a signal aimed
at it alone, DELIVER answering its wait(), RELOAD) and the shared queues it
belongs to (all workers, all mules, its farms), where the first reader takes
each signal, one at a time. A child busy in a handler reads nothing, so the
next signal of a shared queue goes to a child that is free: uWSGI's "first
available". Every idle reader of a shared signal queue is woken when
signals arrive (no ``EPOLLEXCLUSIVE`` there): the master writes a burst in
one write, and four signals for four idle workers must wake all four.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import time
from collections.abc import Iterable

import attrs

from ..ipc.link import MasterLink
from ..ipc.messages import Mailbox, MessageQueue
from ..model.process import CURRENT
from ..model.table import SignalTable
from ..wire.frames import ANY_SIGNAL, Op
from .offload import deliver, is_call, run_call

__all__ = ["SignalLoop", "describe_self"]

log = logging.getLogger("uwsgisig")

_RUN = int(Op.RUN)

# Signals taken in a row from a shared queue before the loop polls its sockets again.
HOT_STREAK = 64


class Poller:
    """Waits on the descriptors one child reads.

    On Linux the message queues shared with other mules are watched with
    ``EPOLLEXCLUSIVE``: each message is one write, which wakes one idle
    reader, not all of them. Shared signal queues are plain: see the module
    docstring.
    """

    def __init__(self, plain_fds: list[int], shared_fds: list[int]) -> None:
        self._epoll = getattr(select, "epoll", None)
        if self._epoll is not None:
            self._epoll = select.epoll()
            for fd in plain_fds:
                self._epoll.register(fd, select.EPOLLIN)
            for fd in shared_fds:
                self._epoll.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        else:
            self._poll = select.poll()
            for fd in [*plain_fds, *shared_fds]:
                self._poll.register(fd, select.POLLIN)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        """Return ``(fd, events)`` for the ready descriptors, waiting up to ``timeout`` s."""
        if self._epoll is not None:
            return self._epoll.poll(-1 if timeout is None else timeout)
        return self._poll.poll(None if timeout is None else int(timeout * 1000) + 1)


@attrs.frozen
class Sources:
    """What one kind of wait reads: signals or not, and which message queues."""

    signals: bool
    mail: dict[int, MessageQueue]  # by the fd of the read end
    fds: frozenset[int]
    poller: Poller


# What a child's loop gets next: a signal frame ``(op, num)`` or a message.
Incoming = tuple[int, int] | bytes


class SignalLoop:
    """Serves the signals (and, in a mule, the messages) of one process.

    ``table`` None means run no handler; ``mailbox`` is a mule's message queues.
    """

    def __init__(
        self,
        link: MasterLink,
        queues: Iterable[socket.socket],
        table: SignalTable | None,
        mailbox: Mailbox | None = None,
    ) -> None:
        self.link = link
        self._link_fd = link.fileno()
        self.table = table
        self.queues = {queue.fileno(): queue for queue in queues}
        self.mailbox = mailbox
        self.waiting: int | None = None  # what the master believes we wait for
        self.leaving = False  # asked to exit (RELOAD, or a graceful stop) once idle
        self.stopping = False  # a graceful stop: leave even a wait() at its next idle moment
        self.idle = False  # blocked in this loop, not running the app's code
        self.forked_copy = False  # set in a process a handler forked (see bootstrap)
        self._running = link.progress.running_word  # where it says which handler runs
        self._hot: socket.socket | MessageQueue | None = None
        self._hot_fd = -1
        self._streak = 0
        self._sources: dict[tuple[bool, tuple[int, ...]], Sources] = {}
        self._signals = self.sources(signals=True, mail=())
        self._everything = self.sources(
            signals=True, mail=mailbox.queues() if mailbox is not None else ()
        )

    def sources(self, *, signals: bool, mail: tuple[MessageQueue, ...]) -> Sources:
        """The sources (and their poller, made once) of a wait for signals and/or ``mail``."""
        key = (signals, tuple(queue.fileno() for queue in mail))
        known = self._sources.get(key)
        if known is not None:
            return known
        plain = [self.link.fileno(), *self.queues] if signals else []
        shared: list[int] = []
        own = self.mailbox.own if self.mailbox is not None else None
        for queue in mail:
            (plain if queue is own else shared).append(queue.fileno())
        made = Sources(
            signals,
            {queue.fileno(): queue for queue in mail},
            frozenset(plain + shared),
            Poller(plain, shared),
        )
        self._sources[key] = made
        return made

    def serve_forever(self) -> None:
        """Run handlers (and, in a mule, take messages) until asked to reload."""
        everything = self._everything
        inbox = self.link.inbox
        while not self.leaving:
            # The hot path, kept in this loop on purpose: in a burst, the next
            # signal of the shared queue that gave the last one is taken without
            # a poll and run at once; `next` does the same with more steps.
            hot = self._hot
            if type(hot) is socket.socket and not inbox and self._streak < HOT_STREAK:
                try:
                    data = hot.recv(1)
                except BlockingIOError:
                    data = b""
                if data:
                    self._streak += 1
                    self._run_handler(data[0], missing_ok=False)
                    continue
                self._hot, self._streak = None, 0
            # Signals aimed at this process alone come first, as in `next`.
            incoming = self.link.take() if inbox else self.next(None, everything)
            if type(incoming) is bytes:
                self._dispatch(incoming)
            elif incoming[0] == _RUN:  # type: ignore[index]
                self._run_handler(incoming[1], missing_ok=False)  # type: ignore[index]
            else:
                self.handle(*incoming)  # type: ignore[misc]

    def wait(self, num: int | None = None, timeout: float | None = None) -> int:
        """Block until signal ``num`` (or any signal) arrives; return its number.

        Registered signals that arrive meanwhile run their handlers, as in uWSGI.
        """
        want = ANY_SIGNAL if num is None else num
        self.link.wait_for(want)
        self.waiting = want
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    what = "any signal" if num is None else f"signal {num}"
                    raise TimeoutError(f"no {what} arrived within {timeout:g} s")
                incoming = self.next(remaining, self._signals)
                if incoming is None:
                    continue
                op, got = incoming  # type: ignore[misc]
                answered = op == Op.DELIVER and self.waiting is not None
                received = self.handle(op, got)
                if received is not None and (answered or want in (ANY_SIGNAL, received)):
                    return received
        finally:
            if self.waiting is not None:
                self.waiting = None
                self.link.stop_waiting()

    def get_message(self, sources: Sources, timeout: float | None) -> bytes | None:
        """Block until a message arrives in ``sources``; None after ``timeout`` seconds.

        Signals that arrive meanwhile run their handlers (if ``sources`` reads
        signals) and offloaded calls run: only the app's own messages are returned.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            incoming = self.next(remaining, sources)
            if incoming is None:
                continue
            if type(incoming) is not bytes:
                self.handle(*incoming)  # type: ignore[misc]
            elif is_call(incoming):
                run_call(incoming, describe_self())
            else:
                return incoming

    def next(self, timeout: float | None, sources: Sources) -> Incoming | None:
        """Return the next signal frame or message of ``sources``, or None after ``timeout``."""
        link = self.link
        if sources.signals and link.inbox:
            return link.take()
        taken = self._take_hot(sources)
        if taken is not None:
            return taken
        deadline = None if timeout is None else time.monotonic() + timeout
        link_fd = self._link_fd
        while not (sources.signals and link.inbox):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self.idle = True  # from here a graceful stop ends the process at once
            try:
                if self.stopping:  # asked just before we became idle
                    raise SystemExit(0)
                events = sources.poller.wait(remaining)
            finally:
                self.idle = False
            for fd, _ in events:
                if fd == link_fd:
                    link.read(None)
                    continue
                queue = self.queues.get(fd)
                if queue is not None:
                    try:
                        data = queue.recv(1)
                    except BlockingIOError:
                        continue  # another process took it
                    if data:
                        self._hot, self._hot_fd = queue, fd
                        return _RUN, data[0]
                    continue
                box = sources.mail.get(fd)
                if box is not None:
                    message = box.take()
                    if message is not None:
                        self._hot, self._hot_fd = box, fd
                        return message
        return link.take()

    def request_stop(self) -> None:
        """A graceful stop: exit now if idle, else once the running handler returns."""
        self.leaving = True
        self.stopping = True
        if self.idle:
            raise SystemExit(0)

    def _take_hot(self, sources: Sources) -> Incoming | None:
        """Take the next item of the queue that gave the last one, without a poll.

        In a burst this halves the system calls per item. After HOT_STREAK
        items in a row the loop polls once, so no other source is starved.
        """
        hot = self._hot
        if hot is None:
            return None
        if self._streak >= HOT_STREAK or self._hot_fd not in sources.fds:
            self._hot, self._streak = None, 0
            return None
        taken: Incoming | None
        if isinstance(hot, MessageQueue):
            taken = hot.take()
        else:
            try:
                data = hot.recv(1)
            except BlockingIOError:
                data = b""
            taken = (_RUN, data[0]) if data else None
        if taken is None:
            self._hot, self._streak = None, 0
            return None
        self._streak += 1
        return taken

    def handle(self, op: int, num: int) -> int | None:
        """Act on one frame; return the signal number received, if any."""
        if op == _RUN:
            self._run_handler(num, missing_ok=False)
            return num
        if op == Op.RELOAD:
            self.leaving = True
            return None
        if op == Op.SPOOL:
            return None  # the spooler's loop looks at its directory after every frame
        if op == Op.DELIVER:
            if self.waiting is None:
                # It crossed our UNWAIT on the wire: give it back to be routed again.
                self.link.give_back(num)
                return None
            self.waiting = None
            self._run_handler(num, missing_ok=True)
            return num
        log.error("unexpected frame %d from the master in %s", op, describe_self())
        return None

    def _dispatch(self, message: bytes) -> None:
        """A message reached a mule's default loop: run the call, or the app's hook."""
        deliver(message, describe_self())

    def _run_handler(self, num: int, *, missing_ok: bool) -> None:
        CURRENT.last_received = num
        entry = self.table.get(num) if self.table is not None else None
        if entry is None or entry.handler is None:
            if not missing_ok:
                log.error("signal %d has no handler in %s", num, describe_self())
            return
        running = self._running
        running[0] = num + 1
        try:
            entry.handler(num)
        except Exception:
            log.exception(
                "handler %r of signal %d raised in %s", entry.handler, num, describe_self()
            )
        finally:
            if self.forked_copy:
                self._forked_copy_returned(num)
            running[0] = 0
        if self.stopping:
            raise SystemExit(0)

    def _forked_copy_returned(self, num: int) -> None:
        """A handler forked and its copy came back here: it must not serve as a second child."""
        log.error(
            "the handler of signal %d forked, and the copy (pid %d) returned into the "
            "signal loop of %s: the copy exits",
            num,
            os.getpid(),
            describe_self(),
        )
        os._exit(0)


def describe_self() -> str:
    """A short name for this process in log lines, e.g. ``worker 2 (pid 123)``."""
    role = CURRENT.role.name.lower() if CURRENT.role is not None else "process"
    ident = f" {CURRENT.id}" if CURRENT.id else ""
    return f"{role}{ident} (pid {os.getpid()})"
