"""The loop of a worker, mule or spooler: serve signals, answer wait().

A child reads two kinds of input: its private socket (RUN for a signal aimed
at it alone, DELIVER answering its wait(), RELOAD) and the shared queues it
belongs to (all workers, all mules, its farms), where the first reader takes
each signal, one at a time. A child busy in a handler reads nothing, so the
next signal of a shared queue goes to a child that is free: uWSGI's "first
available".

Each shared queue is two sockets (see `SharedQueue` in the master's peers):
``single``, watched with ``EPOLLEXCLUSIVE``, where a lone signal wakes one
idle reader, and ``burst``, watched plainly, where a burst wakes every idle
reader, so four signals for four idle workers wake all four.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future
from typing import Any

import attrs

from ..ipc.link import MasterLink
from ..ipc.messages import Mailbox, MessageQueue
from ..model.process import CURRENT
from ..model.table import SignalTable
from ..wire.frames import ANY_SIGNAL, Op
from .offload import deliver, is_call, run_call
from .rpc import RpcServer

__all__ = ["SignalLoop", "describe_self"]

log = logging.getLogger("uwsgisig")

# Frame ops as plain ints: an enum member's lookup costs ten times a global int's.
_RUN = int(Op.RUN)
_DELIVER = int(Op.DELIVER)
_RELOAD = int(Op.RELOAD)
_SPOOL_OPS = (int(Op.SPOOL), int(Op.FREQUENCY))

# Signals taken in a row from a shared queue before the loop polls its sockets again.
HOT_STREAK = 64


class Poller:
    """Waits on the descriptors one child reads.

    On Linux the ``shared_fds`` (message queues shared with other mules, the
    ``single`` socket of a shared signal queue, the RPC socket) are watched
    with ``EPOLLEXCLUSIVE``: each of their writes carries one item, which
    wakes one idle reader, not all of them.
    """

    def __init__(self, plain_fds: list[int], shared_fds: list[int]) -> None:
        if hasattr(select, "epoll"):
            epoll = select.epoll()
            for fd in plain_fds:
                epoll.register(fd, select.EPOLLIN)
            for fd in shared_fds:
                epoll.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
            # epoll takes seconds, None for ever, as `wait` does: no frame between.
            self.wait = epoll.poll  # type: ignore[method-assign]
        else:
            self._poll = select.poll()
            for fd in [*plain_fds, *shared_fds]:
                self._poll.register(fd, select.POLLIN)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        """Return ``(fd, events)`` for the ready descriptors, waiting up to ``timeout`` s."""
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

    With ``threads`` (an attached worker, whose loop runs in a thread of its
    own), other threads wake the loop through a socket of its own: for signal
    frames they read into the link's inbox, or a wait() they ask this loop to
    run (`wait` from another thread).

    ``rpc`` (a forked worker's, when the runtime has an RPC socket) answers
    requests from other nodes while the loop is idle in `serve_forever`, never
    while it waits in wait().
    """

    def __init__(
        self,
        link: MasterLink,
        queues: Iterable[tuple[socket.socket, socket.socket]],
        table: SignalTable | None,
        mailbox: Mailbox | None = None,
        threads: bool = False,
        rpc: RpcServer | None = None,
    ) -> None:
        self.link = link
        self.rpc = rpc
        self._rpc_fd = rpc.fileno() if rpc is not None else -1
        self._wake: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._wake_fd = -1
        if threads:
            self._wake, self._wake_w = socket.socketpair()
            self._wake_w.setblocking(False)
            self._wake_fd = self._wake.fileno()
            link.on_inbox = self.wake
        self.thread: int | None = None  # the thread that serves, once serve_forever runs
        self._jobs: deque[tuple[int | None, float | None, Future[int]]] = deque()
        # How an ``async def`` handler runs: to completion here, unless an ASGI
        # worker gives its event loop (`run_coroutines_on`).
        self.run_coroutine: Callable[[Coroutine[Any, Any, object]], object] = asyncio.run
        self._link_fd = link.fileno()
        self.table = table
        # Every read end of the shared queues, by descriptor.
        self.queues: dict[int, socket.socket] = {}
        self._singles: list[int] = []  # watched with EPOLLEXCLUSIVE
        self._bursts: set[int] = set()
        for single, burst in queues:
            self.queues[single.fileno()] = single
            self.queues[burst.fileno()] = burst
            self._singles.append(single.fileno())
            self._bursts.add(burst.fileno())
        self.mailbox = mailbox
        self.waiting: int | None = None  # what the master believes we wait for
        self.leaving = False  # asked to exit (RELOAD, or a graceful stop) once idle
        self.stopping = False  # a graceful stop: leave even a wait() at its next idle moment
        self.idle = False  # blocked in this loop, not running the app's code
        self.forked_copy = False  # set in a process a handler forked (see bootstrap)
        self._running = link.progress.running_word  # where it says which handler runs
        self._received = link.progress.received_word  # signals taken, for the stats
        self._deadlines = link.progress.deadlines  # harakiri: the handler's, the app's
        # --harakiri: nanoseconds a handler may run before the master kills this process.
        self.harakiri_ns = 0
        self._hot: socket.socket | MessageQueue | None = None
        self._hot_fd = -1
        self._streak = 0
        self._sources: dict[tuple[bool, tuple[int, ...], bool], Sources] = {}
        self._signals = self.sources(signals=True, mail=())
        self._everything = self.sources(
            signals=True, mail=mailbox.queues() if mailbox is not None else (), rpc=True
        )

    def sources(
        self, *, signals: bool, mail: tuple[MessageQueue, ...], rpc: bool = False
    ) -> Sources:
        """The sources (and their poller, made once) of a wait for signals and/or ``mail``,
        and for RPC requests with ``rpc``."""
        key = (signals, tuple(queue.fileno() for queue in mail), rpc)
        known = self._sources.get(key)
        if known is not None:
            return known
        plain = [self.link.fileno(), *self._bursts] if signals else []
        if self._wake is not None:
            plain.append(self._wake_fd)
        shared = list(self._singles) if signals else []
        own = self.mailbox.own if self.mailbox is not None else None
        for queue in mail:
            (plain if queue is own else shared).append(queue.fileno())
        if rpc and self.rpc is not None:
            shared.append(self._rpc_fd)  # one idle worker is woken per connection
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
        self.thread = self.link.reader = threading.get_ident()
        try:
            self._serve(everything, inbox)
        finally:
            self._fail_jobs()

    def _serve(self, everything: Sources, inbox: deque[tuple[int, int]]) -> None:
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
            if incoming is None:  # woken by another thread
                self._run_jobs()
            elif type(incoming) is bytes:
                self._dispatch(incoming)
            elif incoming[0] == _RUN:  # type: ignore[index]
                self._run_handler(incoming[1], missing_ok=False)  # type: ignore[index]
            else:
                self.handle(*incoming)  # type: ignore[misc]

    def wait(self, num: int | None = None, timeout: float | None = None) -> int:
        """Block until signal ``num`` (or any signal) arrives; return its number.

        Registered signals that arrive meanwhile run their handlers, as in uWSGI.
        """
        if self.thread is not None and threading.get_ident() != self.thread:
            return self._wait_in_loop(num, timeout)
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
                answered = op == _DELIVER and self.waiting is not None
                received = self.handle(op, got)
                if received is not None and (answered or want in (ANY_SIGNAL, received)):
                    return received
        finally:
            if self.waiting is not None:
                self.waiting = None
                self.link.stop_waiting()

    def _wait_in_loop(self, num: int | None, timeout: float | None) -> int:
        """wait() from another thread of an attached worker: the loop's thread runs it.

        The worker is one process to the master, which knows one wait() per
        process, so waits from several threads run one after another.
        """
        future: Future[int] = Future()
        self._jobs.append((num, timeout, future))
        self.wake()
        return future.result()

    def wake(self) -> None:
        """From another thread: make the loop look at its inbox and its jobs."""
        if self._wake_w is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                self._wake_w.send(b"x")

    def _run_jobs(self) -> None:
        while self._jobs and not self.leaving:
            num, timeout, future = self._jobs.popleft()
            try:
                future.set_result(self.wait(num, timeout))
            except BaseException as exc:
                future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    def _fail_jobs(self) -> None:
        while self._jobs:
            _, _, future = self._jobs.popleft()
            future.set_exception(RuntimeError("the runtime is gone: this worker detached"))

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
                if fd == self._rpc_fd:
                    self.rpc.serve_one()  # type: ignore[union-attr]
                    continue
                if fd == self._wake_fd:
                    self._drain_wake()
                    if self._jobs and self.waiting is None:
                        return None
                    continue
                queue = self.queues.get(fd)
                if queue is not None:
                    try:
                        data = queue.recv(1)
                    except BlockingIOError:
                        continue  # another process took it
                    if data:
                        # A burst end likely holds the next signal: take it without a
                        # poll. A single end is looked at again by the poll itself.
                        if fd in self._bursts:
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

    def _drain_wake(self) -> None:
        assert self._wake is not None
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self._wake.recv(4096, socket.MSG_DONTWAIT):
                pass

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
        if op == _DELIVER:
            if self.waiting is None:
                # It crossed our UNWAIT on the wire: give it back to be routed again.
                self.link.give_back(num)
                return None
            self.waiting = None
            self._run_handler(num, missing_ok=True)
            return num
        if op == _RELOAD:
            self.leaving = True
            return None
        if op in _SPOOL_OPS:
            return None  # the spooler's loop looks at its directory after every frame
        log.error("unexpected frame %d from the master in %s", op, describe_self())
        return None

    def set_user_harakiri(self, seconds: float) -> None:
        """uWSGI's ``set_user_harakiri``: be killed unless cleared (0) within ``seconds``."""
        self._deadlines[1] = time.monotonic_ns() + int(seconds * 1e9) if seconds else 0

    def run_coroutines_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run ``async def`` handlers on ``loop`` (an ASGI worker's), waiting for each."""

        def run(coroutine: Coroutine[Any, Any, object]) -> object:
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

        self.run_coroutine = run

    def _dispatch(self, message: bytes) -> None:
        """A message reached a mule's default loop: run the call, or the app's hook."""
        deliver(message, describe_self())

    def _run_handler(self, num: int, *, missing_ok: bool) -> None:
        CURRENT.last_received = num
        self._received[0] += 1
        entry = self.table.get(num) if self.table is not None else None
        if entry is None or entry.handler is None:
            if not missing_ok:
                log.error("signal %d has no handler in %s", num, describe_self())
            return
        running = self._running
        running[0] = num + 1
        if self.harakiri_ns:
            self._deadlines[0] = time.monotonic_ns() + self.harakiri_ns
        try:
            result = entry.handler(num)
            if result is not None and inspect.iscoroutine(result):
                self.run_coroutine(result)
        except Exception:
            log.exception(
                "handler %r of signal %d raised in %s", entry.handler, num, describe_self()
            )
        finally:
            if self.forked_copy:
                self._forked_copy_returned(num)
            running[0] = 0
            if self.harakiri_ns:
                self._deadlines[0] = 0
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
