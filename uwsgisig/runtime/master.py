"""The master: forks the children, routes every signal, supervises.

The master never runs user code after the app is imported. Its loop waits in
``poll`` on the children's sockets, the shared queues that have output
pending, the self-pipe of POSIX signals, the optional remote-signal listener
and the nearest timer; all work happens in the loop, never in a signal handler.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import heapq
import itertools
import logging
import math
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable

from ..errors import ScheduleError, SignalAlreadyRegisteredError
from .config import RuntimeConfig
from .events import Event, EventSources, decode
from .frames import (
    ANY_SIGNAL,
    FRAME,
    FRAME_SIZE,
    RUN_FRAMES,
    FrameReader,
    Op,
    RegisterError,
    Role,
    pack,
)
from .link import RAISE_WINDOW, MasterLink
from .listener import RemoteListener
from .messages import PostOffice
from .process import CURRENT
from .spool import SpoolDir
from .table import SignalTable
from .targets import Target

__all__ = ["Master", "Peer", "SharedQueue", "Slot"]

log = logging.getLogger("uwsgisig")

# A child that dies sooner than this after its start is respawned with a delay
# that doubles up to RESPAWN_DELAY_MAX, so a crashing child cannot spin the CPU.
RESPAWN_FAST_EXIT = 1.0
RESPAWN_DELAY_MIN = 0.1
RESPAWN_DELAY_MAX = 5.0
READ_SIZE = 262144
CREDIT_BATCH = RAISE_WINDOW // 4
STOP_SIGNALS = {
    signal.SIGINT: "int",
    signal.SIGQUIT: "quit",
    signal.SIGTERM: "term",
    signal.SIGHUP: "hup",
    signal.SIGCHLD: "chld",
}


class Peer:
    """The master's end of a private socket, with what waits to be written to it."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.reader = FrameReader()
        self.outbox = bytearray()
        self.waiting: int | None = None  # the signal its wait() waits for
        self.owed_credit = 0
        self.payload = bytearray()  # of the request being received, from PAYLOAD frames

    def put(self, op: Op, num: int = 0, value: int = 0, arg: int = 0) -> None:
        self.outbox += pack(op, num, value, arg)

    @property
    def backlog(self) -> int:
        return len(self.outbox) // FRAME_SIZE

    def describe(self) -> str:
        return "the controller"


class Slot(Peer):
    """One child position (worker 2, mule 1, the spooler) and the process filling it."""

    def __init__(self, role: Role, ident: int) -> None:
        # The child's end stays open in the master, so frames queued for a child
        # that dies are read by the child that replaces it.
        master_end, child_end = socket.socketpair()
        super().__init__(master_end)
        self.child_end = child_end
        self.role = role
        self.id = ident
        self.pid: int | None = None
        self.ready = False
        self.started_at = 0.0
        self.respawn_delay = 0.0
        self.reloading = False
        self.queues: list[SharedQueue] = []

    @property
    def key(self) -> tuple[int, int]:
        return (int(self.role), self.id)

    def describe(self) -> str:
        name = self.role.name.lower()
        return f"{name} {self.id}" if self.role != Role.SPOOLER else name


class SharedQueue:
    """A socket that several children read: the first free reader takes each signal."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.write_end, self.read_end = socket.socketpair()
        self.write_end.setblocking(False)
        self.read_end.setblocking(False)
        self.outbox = bytearray()

    @property
    def backlog(self) -> int:
        return len(self.outbox)


class Master:
    """Owns the runtime's life: spawn, route, reap, respawn, stop."""

    def __init__(
        self,
        config: RuntimeConfig,
        table: SignalTable,
        *,
        hooks: list[Callable[[], object]],
        events: Iterable[Event] = (),
        controller: socket.socket | None = None,
        listening: socket.socket | None = None,
    ) -> None:
        self.config = config
        self.declared_events = list(events)
        self.events = EventSources()
        self._monitor_fd = -1
        self.table = table
        self.hooks = hooks
        self.pid = os.getpid()
        self.running = True
        self.workers = [Slot(Role.WORKER, i) for i in range(1, config.workers + 1)]
        self.mules = [Slot(Role.MULE, i) for i in range(1, config.mule_count + 1)]
        self.spooler = Slot(Role.SPOOLER, 0) if config.spooler else None
        self.slots = [*self.workers, *self.mules, *([self.spooler] if self.spooler else [])]
        self.by_key = {slot.key: slot for slot in self.slots}
        self.by_pid: dict[int, Slot] = {}
        self.worker_queue = SharedQueue("workers")
        self.mule_queue = SharedQueue("mules")
        self.farm_queues = [SharedQueue(f"farm {farm.name}") for farm in config.farms]
        self.queues = [self.worker_queue, self.mule_queue, *self.farm_queues]
        self.post = PostOffice(config.mule_count, {farm.name: farm.mules for farm in config.farms})
        self.spool = SpoolDir(config.spool_dir) if config.spool_dir is not None else None
        for slot in self.workers:
            slot.queues = [self.worker_queue]
        for slot in self.mules:
            slot.queues = [self.mule_queue] + [
                queue
                for farm, queue in zip(config.farms, self.farm_queues, strict=True)
                if slot.id in farm.mules
            ]
        self.controller = Peer(controller) if controller is not None else None
        self.peers: list[Peer] = [*self.slots, *([self.controller] if self.controller else [])]
        self.by_fd: dict[int, Peer | SharedQueue] = {
            peer.sock.fileno(): peer for peer in self.peers
        }
        self.by_fd.update({queue.write_end.fileno(): queue for queue in self.queues})
        self.waiters: list[Peer] = []  # peers blocked in wait(), oldest first
        self.unclaimed: deque[int] = deque()  # signals with no handler and no waiter yet
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._dirty: set[Peer | SharedQueue] = set()
        # Peers owed at least CREDIT_BATCH credit. Paying in batches saves a write
        # per signal; a peer out of credit is owed a whole window, so it is always
        # in here.
        self._owing: set[Peer] = set()
        self._granting = True
        self._posix: deque[int] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poll = select.poll()
        self.remote = (
            RemoteListener(listening, self._poll, self.raise_remote)
            if listening is not None
            else None
        )

    # ---------------------------------------------------------------- life

    def run(self) -> int:
        """Spawn the children and serve until stopped; return the exit code."""
        self._install_posix_handlers()
        self._poll.register(self._wake_r, select.POLLIN)
        for peer in self.peers:
            self._poll.register(peer.sock, select.POLLIN)
        for queue in self.queues:
            self._poll.register(queue.write_end, 0)
        for event in self.declared_events:
            self.add_event(event)
        if self.remote is not None:
            self.remote.start()
        for num in CURRENT.early_signals:
            self.route(num)
        CURRENT.early_signals.clear()
        for slot in self.slots:
            self.spawn(slot)
        log.info(
            "uwsgisig master %d running %d workers, %d mules%s",
            self.pid,
            len(self.workers),
            len(self.mules),
            ", a spooler" if self.spooler else "",
        )
        try:
            while self.running:
                self._tick()
        finally:
            if self.remote is not None:
                self.remote.close()  # no peer waits on us while the children stop
            self.stop_children()
            self.events.close()
        log.info("uwsgisig master %d stopped", self.pid)
        return 0

    def _tick(self) -> None:
        for fd, events in self._poll.poll(self._poll_timeout()):
            if fd == self._wake_r:
                self._drain_wakeup()
                continue
            if fd == self._monitor_fd:
                for num in self.events.read_monitor():
                    self.route(num)
                continue
            if self.remote is not None and self.remote.owns(fd):
                self.remote.ready(fd, events)
                continue
            owner = self.by_fd.get(fd)
            if owner is None:
                continue
            if events & (select.POLLIN | select.POLLHUP | select.POLLERR) and isinstance(
                owner, Peer
            ):
                self._read_peer(owner)
            if events & select.POLLOUT:
                self._dirty.add(owner)
        for num in self.events.due():
            self.route(num)
        if self.remote is not None:
            self.remote.expire()
        self._handle_posix_signals()
        self._flush()

    def _poll_timeout(self) -> int | None:
        """Milliseconds until the next internal timer or external event, None if none."""
        timeouts = [self._run_due_timers(), self.events.timeout()]
        if self.remote is not None:
            timeouts.append(self.remote.timeout())
        due = [timeout for timeout in timeouts if timeout is not None]
        return math.ceil(min(due) * 1000) if due else None

    # ---------------------------------------------------------------- events

    def add_event(self, event: Event) -> None:
        """Arm a timer, cron or file monitor; its signals are routed like any other."""
        self.events.add(event)
        fd = self.events.fileno()
        if fd != self._monitor_fd:
            self._monitor_fd = fd
            self._poll.register(fd, select.POLLIN)
        log.debug("armed %s", event)

    def _add_event_for(self, peer: Peer, length: int) -> None:
        """A child asked for a timer, cron or file monitor after fork."""
        payload = bytes(peer.payload[:length])
        peer.payload.clear()
        try:
            self.add_event(decode(payload))
        except (ScheduleError, OSError) as exc:
            log.error("%s asked for an event the master cannot arm: %s", peer.describe(), exc)
            peer.put(Op.EVENT_ADDED, arg=1)
        else:
            peer.put(Op.EVENT_ADDED, arg=0)
        self._dirty.add(peer)

    # ---------------------------------------------------------------- routing

    def route(self, num: int) -> None:
        """Send signal ``num`` where it belongs. Every raised signal comes through here."""
        for waiter in self.waiters:
            if waiter.waiting == num:
                self._deliver(waiter, num)
                return
        entry = self.table.get(num)
        if entry is None:
            for waiter in self.waiters:
                if waiter.waiting == ANY_SIGNAL:
                    self._deliver(waiter, num)
                    return
            self.unclaimed.append(num)
            return
        if entry.owner is not None:
            self._run_on(self.by_key[entry.owner], num)
            return
        target = entry.target
        kind = target.kind
        if kind == "worker":
            if target.index:
                self._run_on(self.workers[target.index - 1], num)
            else:
                self._enqueue(self.worker_queue, num)
        elif kind == "workers":
            for slot in self.workers:
                self._run_on(slot, num)
        elif kind == "active-workers":
            for slot in self.workers:
                if slot.ready:
                    self._run_on(slot, num)
        elif kind == "mule":
            if target.index:
                self._run_on(self.mules[target.index - 1], num)
            else:
                self._enqueue(self.mule_queue, num)
        elif kind == "mules":
            for slot in self.mules:
                self._run_on(slot, num)
        elif kind == "farm":
            self._enqueue(self.farm_queues[self.farm_position(target) - 1], num)
        elif kind == "spooler" and self.spooler is not None:
            self._run_on(self.spooler, num)

    def raise_remote(self, num: int) -> bool:
        """Route ``num`` for a remote node; False if the queue is full (uWSGI then says 0)."""
        if self.backlog() >= self.config.queue_size:
            return False
        self.route(num)
        return True

    def farm_position(self, target: Target) -> int:
        """The 1-based farm a farm target names (0 if none)."""
        if target.name:
            return self.config.farm_index(target.name)
        return target.index if target.index <= len(self.config.farms) else 0

    def target_exists(self, target: Target) -> bool:
        """Whether ``target`` names a process (or group) of this runtime."""
        if target.kind == "worker":
            return target.index <= len(self.workers)
        if target.kind == "mule":
            return bool(self.mules) and target.index <= len(self.mules)
        if target.kind == "mules":
            return bool(self.mules)
        if target.kind == "farm":
            return self.farm_position(target) > 0
        if target.kind == "spooler":
            return self.spooler is not None
        return True

    def _deliver(self, waiter: Peer, num: int) -> None:
        self.waiters.remove(waiter)
        waiter.waiting = None
        waiter.put(Op.DELIVER, num)
        self._dirty.add(waiter)

    def _run_on(self, slot: Slot, num: int) -> None:
        slot.outbox += RUN_FRAMES[num]
        self._dirty.add(slot)

    def _enqueue(self, queue: SharedQueue, num: int) -> None:
        queue.outbox.append(num)
        self._dirty.add(queue)

    def _start_waiting(self, peer: Peer, num: int) -> None:
        if peer.waiting is not None:
            self.waiters.remove(peer)
        peer.waiting = num
        # A signal that nobody could take may answer this wait at once.
        for index, pending in enumerate(self.unclaimed):
            if num in (ANY_SIGNAL, pending):
                del self.unclaimed[index]
                peer.waiting = None
                peer.put(Op.DELIVER, pending)
                self._dirty.add(peer)
                return
        self.waiters.append(peer)

    def _stop_waiting(self, peer: Peer) -> None:
        if peer.waiting is not None:
            peer.waiting = None
            self.waiters.remove(peer)

    # ---------------------------------------------------------------- frames

    def _read_peer(self, peer: Peer) -> None:
        try:
            data = peer.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            data = b""
        if not data:
            if peer is self.controller:
                log.info("the controller closed its link: stopping")
                self._poll.unregister(peer.sock)
                self.running = False
            return
        frames = peer.reader.whole_frames(data)
        raised = self._route_burst(frames)
        if raised:
            frames = b""
        for op, arg, num, value in FRAME.iter_unpack(frames):
            if op == Op.RAISE:
                self.route(num)
                raised += 1
            elif op == Op.WAIT:
                self._start_waiting(peer, num)
            elif op == Op.UNWAIT:
                self._stop_waiting(peer)
            elif op == Op.RETURN:
                self.route(num)
            elif op == Op.REGISTER and isinstance(peer, Slot):
                self._register(peer, num, arg, value)
            elif op == Op.READY and isinstance(peer, Slot):
                peer.ready = True
                log.debug("%s (pid %s) is ready", peer.describe(), peer.pid)
            elif op == Op.STATUS:
                self._answer_status(peer)
            elif op == Op.PAYLOAD:
                peer.payload += value.to_bytes(4, "little")
            elif op == Op.ADD_EVENT:
                self._add_event_for(peer, value)
            elif op == Op.SPOOLED:
                self._wake_spooler()
            else:
                log.error("unexpected frame %d from %s", op, peer.describe())
        if raised:
            peer.owed_credit += raised
            if peer.owed_credit >= CREDIT_BATCH:
                self._owing.add(peer)

    def _route_burst(self, frames: bytes) -> int:
        """Route a read made only of RAISE frames for one shared queue in one step.

        That is what a burst of ``send()`` looks like, and appending the numbers
        at once costs far less than routing them one by one. Returns how many
        signals it routed: 0 when the read is anything else.
        """
        count = len(frames) // FRAME_SIZE
        if count < 2 or frames[0::FRAME_SIZE].count(Op.RAISE) != count:
            return 0
        nums = frames[2::FRAME_SIZE]
        queues = {self._shared_queue_of(num) for num in set(nums)}
        if len(queues) != 1:
            return 0
        queue = queues.pop()
        if queue is None:
            return 0
        queue.outbox += nums
        self._dirty.add(queue)
        return count

    def _shared_queue_of(self, num: int) -> SharedQueue | None:
        """The shared queue ``route(num)`` would put ``num`` in, or None."""
        if any(waiter.waiting == num for waiter in self.waiters):
            return None
        entry = self.table.get(num)
        if entry is None or entry.owner is not None:
            return None
        kind = entry.target.kind
        if kind == "farm":
            return self.farm_queues[self.farm_position(entry.target) - 1]
        if entry.target.index:
            return None
        if kind == "worker":
            return self.worker_queue
        if kind == "mule":
            return self.mule_queue
        return None

    def _wake_spooler(self) -> None:
        if self.spooler is not None and not self.spooler.outbox.endswith(pack(Op.SPOOL)):
            self.spooler.put(Op.SPOOL)
            self._dirty.add(self.spooler)

    def _register(self, slot: Slot, num: int, kind_code: int, index: int) -> None:
        """A child registered a handler after fork: route ``num`` to that child."""
        target = target_from_code(kind_code, index)
        if not self.target_exists(target):
            slot.put(Op.REGISTERED, num, arg=RegisterError.NO_SUCH_TARGET)
            self._dirty.add(slot)
            return
        try:
            self.table.register(num, target, None, owner=slot.key)
        except SignalAlreadyRegisteredError:
            slot.put(Op.REGISTERED, num, arg=RegisterError.TAKEN)
        else:
            slot.put(Op.REGISTERED, num, arg=RegisterError.OK)
            log.debug("%s registered signal %d for %s", slot.describe(), num, target)
            # Signals raised before the handler existed are now routable.
            for pending in [n for n in self.unclaimed if n == num]:
                self.unclaimed.remove(pending)
                self.route(pending)
        self._dirty.add(slot)

    def _answer_status(self, peer: Peer) -> None:
        peer.put(Op.PROC, 0, self.pid, arg=Role.MASTER)
        for slot in self.slots:
            flags = int(slot.role) | (0x80 if slot.ready else 0)
            peer.put(Op.PROC, slot.id, slot.pid or 0, arg=flags)
        peer.put(Op.END)
        self._dirty.add(peer)

    def backlog(self) -> int:
        """Signals held in the master's memory, not yet written to any socket."""
        return (
            len(self.unclaimed)
            + sum(peer.backlog for peer in self.peers)
            + sum(queue.backlog for queue in self.queues)
        )

    def _pay_credit(self, peer: Peer) -> None:
        peer.put(Op.CREDIT, value=peer.owed_credit)
        peer.owed_credit = 0
        self._dirty.add(peer)

    def _may_grant(self) -> bool:
        """Whether credit may be paid: not while the backlog is full, and only
        again once it has drained to half (so senders do not flap at the limit)."""
        backlog = self.backlog()
        if backlog >= self.config.queue_size:
            self._granting = False
        elif backlog <= self.config.queue_size // 2:
            self._granting = True
        return self._granting

    def _flush(self) -> None:
        """Pay the credit owed in batches, then write the pending outboxes."""
        if self._owing and self._may_grant():
            for peer in self._owing:
                self._pay_credit(peer)
            self._owing.clear()
        self._write_outboxes()

    def _write_outboxes(self) -> None:
        while self._dirty:
            owner = self._dirty.pop()
            shared = isinstance(owner, SharedQueue)
            sock = owner.write_end if shared else owner.sock
            outbox = owner.outbox
            if outbox:
                try:
                    sent = sock.send(outbox)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except (BrokenPipeError, ConnectionResetError):
                    sent = len(outbox)  # the controller left; nothing reads this any more
                del outbox[:sent]
            if sock.fileno() >= 0:
                events = (0 if shared else select.POLLIN) | (select.POLLOUT if outbox else 0)
                self._poll.modify(sock, events)

    # ---------------------------------------------------------------- children

    def spawn(self, slot: Slot) -> None:
        """Fork the process for ``slot``. The child never returns into master code."""
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = self._become_child(slot)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        slot.pid = pid
        # The new child starts with a full window: what its predecessor was owed
        # is void. (Frames it left unread still earn credit: at most one window more.)
        slot.owed_credit = 0
        self._owing.discard(slot)
        slot.ready = False
        slot.reloading = False
        slot.started_at = time.monotonic()
        self.by_pid[pid] = slot
        log.debug("spawned %s (pid %d)", slot.describe(), pid)

    def _become_child(self, slot: Slot) -> int:
        from .child import reset_posix_signals, run_child

        reset_posix_signals()
        die_with_parent(signal.SIGKILL)
        if os.getppid() != self.pid:
            return 0
        mule = slot.role == Role.MULE
        mailbox = self.post.mailbox(slot.id) if mule else None
        keep = {
            slot.child_end.fileno(),
            *(queue.read_end.fileno() for queue in slot.queues),
            *self.post.write_fds(),
            *(queue.fileno() for queue in (mailbox.queues() if mailbox else ())),
        }
        for fd in self._descriptors():
            if fd not in keep:
                os.close(fd)
        link = MasterLink(slot.child_end, send_timeout=self.config.send_timeout)
        CURRENT.farms = (
            tuple(farm.name for farm in self.config.farms if slot.id in farm.mules) if mule else ()
        )
        CURRENT.post = self.post
        return run_child(
            slot.role,
            slot.id,
            link,
            [queue.read_end for queue in slot.queues],
            self.table,
            self.hooks,
            mailbox=mailbox,
            program=self.config.program_of(slot.id) if mule else None,
            spool=self.spool if slot.role == Role.SPOOLER else None,
        )

    def _descriptors(self) -> list[int]:
        fds = [self._wake_r, self._wake_w]
        for peer in self.peers:
            fds.append(peer.sock.fileno())
        for slot in self.slots:
            fds.append(slot.child_end.fileno())
        for queue in self.queues:
            fds += [queue.write_end.fileno(), queue.read_end.fileno()]
        for mail in self.post.all_queues():
            fds += mail.fds()
        fds.append(self._monitor_fd)
        if self.remote is not None:
            fds += self.remote.fds()  # a child must not keep peers' connections open
        return [fd for fd in fds if fd >= 0]

    def reap(self) -> None:
        """Collect every exited child; respawn it unless the runtime is stopping."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = self.by_pid.pop(pid, None)
            if slot is None:
                continue
            slot.pid = None
            slot.ready = False
            self._stop_waiting(slot)
            code = os.waitstatus_to_exitcode(status)
            if not self.running:
                continue
            if slot.reloading:
                log.info("%s (pid %d) reloaded", slot.describe(), pid)
                self.spawn(slot)
                continue
            log.warning(
                "%s (pid %d) exited with %s: respawning", slot.describe(), pid, describe_exit(code)
            )
            self._respawn_later(slot)

    def _respawn_later(self, slot: Slot) -> None:
        lived = time.monotonic() - slot.started_at
        if lived >= RESPAWN_FAST_EXIT:
            slot.respawn_delay = 0.0
            self.spawn(slot)
            return
        slot.respawn_delay = min(max(slot.respawn_delay * 2, RESPAWN_DELAY_MIN), RESPAWN_DELAY_MAX)
        log.warning(
            "%s died %.2f s after its start: respawn in %.1f s",
            slot.describe(),
            lived,
            slot.respawn_delay,
        )
        self.call_later(slot.respawn_delay, lambda: self._respawn_if_empty(slot))

    def _respawn_if_empty(self, slot: Slot) -> None:
        if self.running and slot.pid is None:
            self.spawn(slot)

    def reload_workers(self) -> None:
        """Graceful reload: each worker finishes its handler, exits, and is replaced."""
        log.info("reloading %d workers", len(self.workers))
        for slot in self.workers:
            if slot.pid is None:
                continue
            slot.reloading = True
            slot.put(Op.RELOAD)
            self._dirty.add(slot)
            pid = slot.pid
            self.call_later(
                self.config.reload_timeout, lambda s=slot, p=pid: self._kill_stale(s, p)
            )

    def _kill_stale(self, slot: Slot, pid: int) -> None:
        if slot.pid == pid and slot.reloading:
            log.warning(
                "%s (pid %d) did not reload within %g s: killing it",
                slot.describe(),
                pid,
                self.config.reload_timeout,
            )
            kill(pid, signal.SIGKILL)

    def stop_children(self) -> None:
        """Quick stop: SIGTERM every child, SIGKILL what is left after ``stop_timeout``."""
        self.running = False
        for pid in list(self.by_pid):
            kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.stop_timeout
        while self.by_pid and time.monotonic() < deadline:
            self._wait_wakeup(deadline - time.monotonic())
            self.reap()
        for pid in list(self.by_pid):
            log.warning(
                "pid %d ignored SIGTERM for %g s: killing it", pid, self.config.stop_timeout
            )
            kill(pid, signal.SIGKILL)
        while self.by_pid:
            self._wait_wakeup(1.0)
            self.reap()

    # ---------------------------------------------------------------- POSIX signals

    def _install_posix_handlers(self) -> None:
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            # The handler does nothing: the wakeup fd carries the number to the loop.
            signal.signal(signum, _note_posix_signal)

    def _drain_wakeup(self) -> None:
        try:
            while data := os.read(self._wake_r, 4096):
                self._posix.extend(data)
        except BlockingIOError:
            pass

    def _wait_wakeup(self, timeout: float) -> None:
        select.select([self._wake_r], [], [], max(timeout, 0.0))
        self._drain_wakeup()

    def _handle_posix_signals(self) -> None:
        while self._posix:
            signum = self._posix.popleft()
            name = STOP_SIGNALS.get(signum)  # type: ignore[call-overload]
            if name is not None:
                getattr(self, f"handle_{name}")()

    def handle_int(self) -> None:
        log.info("SIGINT: stopping")
        self.running = False

    def handle_quit(self) -> None:
        log.info("SIGQUIT: stopping")
        self.running = False

    def handle_term(self) -> None:
        log.info("SIGTERM: stopping")
        self.running = False

    def handle_hup(self) -> None:
        self.reload_workers()

    def handle_chld(self) -> None:
        self.reap()

    # ---------------------------------------------------------------- timers

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the loop after ``delay`` seconds."""
        heapq.heappush(self.timers, (time.monotonic() + delay, next(self._timer_seq), callback))

    def _run_due_timers(self) -> float | None:
        """Run what is due; return the seconds until the next internal timer."""
        while self.timers:
            due = self.timers[0][0]
            now = time.monotonic()
            if due > now:
                return due - now
            _, _, callback = heapq.heappop(self.timers)
            callback()
        return None


def _note_posix_signal(signum: int, frame: object) -> None:
    """Installed so Python writes the signal number to the wakeup fd."""


def target_code(target: Target) -> tuple[int, int]:
    """Encode a target for a REGISTER frame (farm names travel as farm positions)."""
    return _KINDS.index(target.kind), target.index


def target_from_code(kind_code: int, index: int) -> Target:
    """Decode a target from a REGISTER frame."""
    return Target(_KINDS[kind_code], index=index)  # type: ignore[arg-type]


_KINDS = ("worker", "workers", "active-workers", "mule", "mules", "spooler", "farm")


def describe_exit(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def kill(pid: int, signum: int) -> None:
    """Send ``signum`` to ``pid``; a process that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def die_with_parent(signum: int) -> None:
    """Ask Linux to send ``signum`` to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, signum, 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_PDEATHSIG) failed: %s", errno.errorcode.get(ctypes.get_errno()))
    except (OSError, AttributeError):
        pass
