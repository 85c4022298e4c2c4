"""The master: forks the children, routes every signal, supervises.

The master never runs user code after the app is imported. Its loop waits in
``poll`` on the children's sockets, the shared queues that have output
pending, the self-pipe of POSIX signals, the optional remote-signal listener
and the nearest timer; all work happens in the loop, never in a signal
handler. Where a signal goes is the router's decision, when senders may
raise more is flow control's, and the children's lives are the supervisor's.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import select
import signal
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from ...errors import MAX_SIGNAL, ScheduleError, SignalAlreadyRegisteredError, TargetError
from ..ipc.cache import SWEEP_INTERVAL, CacheStore
from ..ipc.locks import SharedLocks
from ..ipc.messages import PostOffice
from ..ipc.posix import STOP_SIGNALS, kill_group
from ..ipc.progress import Progress
from ..ipc.rings import WEAK_ORDER_NAP, Rings
from ..ipc.spool import SpoolDir
from ..model.cluster import ClusterSpec, default_node_name, slot_of
from ..model.config import ATTACH_ENV, RuntimeConfig
from ..model.process import CURRENT, ChildSpec
from ..model.roles import Role
from ..model.table import SignalTable
from ..model.targets import Target, target_from_code
from ..schedule.events import (
    CronEvent,
    Event,
    EventSources,
    FileEvent,
    TimerEvent,
    change_slot,
    decode,
    rb_timer_event,
    timer_event,
    unique_length,
)
from ..wire.frames import (
    FRAME,
    FRAME_SIZE,
    PROC_READY,
    READ_SIZE,
    Op,
    RegisterError,
    pack_payload,
)
from .admission import admit
from .cluster import ClusterLink
from .command import Command
from .door import Admission, AttachDoor
from .fifo import MasterFifo
from .flow import Flow
from .listener import RemoteListener, address_of
from .operations import (
    TOUCH_INTERVAL,
    Pidfile,
    TouchFiles,
    describe_slots,
    log_schedule,
    reopen_log,
    rotate_log,
)
from .peers import Peer, SharedQueue, Slot
from .router import Router
from .stats import StatsServer, bind_stats, snapshot, workers_stats
from .supervisor import Supervisor

__all__ = ["Master"]

log = logging.getLogger("uwsgisig")

# Seconds between the master's looks at the children's harakiri deadlines.
HARAKIRI_INTERVAL = 1.0
# Seconds between looks at the backlog while flow control holds credit back.
CONGESTED_RECHECK = 0.005
# Nanoseconds the master keeps serving the rings alone after they last brought
# frames, before it sleeps (see `Master._serve_rings`).
SPIN_AFTER_WORK_NS = 100_000
# Nanoseconds it serves the rings alone at most: how long its other inputs
# (POSIX signals, sockets, timers) may wait while the rings stay busy.
SPIN_LIMIT_NS = 2_000_000
# What a POLLIN on a peer's socket may also mean: the other end is gone.
READABLE = select.POLLIN | select.POLLHUP | select.POLLERR


class Master:
    """Owns the runtime's life: spawn, route, reap, respawn, stop.

    ``child_main(spec)`` is what a forked child runs (the runner passes the
    child's bootstrap, so this package never imports the child's).
    """

    def __init__(
        self,
        config: RuntimeConfig,
        table: SignalTable,
        *,
        hooks: list[Callable[[], object]],
        child_main: Callable[[ChildSpec], int],
        events: Iterable[Event] = (),
        controller: socket.socket | None = None,
        controller_rings: Rings | None = None,
        listening: socket.socket | None = None,
        door: socket.socket | None = None,
        rpc_listening: socket.socket | None = None,
        caches: CacheStore | None = None,
    ) -> None:
        self.config = config
        self._configured_spooler_frequency = config.spooler_frequency
        self.caches = caches  # made before the app was imported; the master sweeps them
        # The workers' RPC socket: the master never reads it, its forked workers do.
        self.rpc_listening = rpc_listening
        self.table = table
        self.hooks = hooks
        self.child_main = child_main
        self.declared_events = list(events)
        self.events = EventSources()
        self._monitor_fd = -1
        self.pid = os.getpid()
        self.running = True
        self._graceful = False
        count = config.worker_slots + config.mule_count + config.spooler_count
        self.progress = Progress(count)
        # One "sleeping" word for every ring: the handle's mapping holds it when
        # there is a handle, so the master stores it once per pass.
        self.rings = Rings(count, sleeping_in=controller_rings)
        self._rings_were_busy = False
        indexes = iter(range(count))

        def slot(role: Role, ident: int, attached: bool = False) -> Slot:
            index = next(indexes)
            return Slot(
                role, ident, self.progress.cell(index), self.rings.ring(index), attached=attached
            )

        self.workers = [
            slot(Role.WORKER, i, attached=i > config.workers)
            for i in range(1, config.worker_slots + 1)
        ]
        self.mules = [slot(Role.MULE, i) for i in range(1, config.mule_count + 1)]
        # One slot per spooler process: spooler 0 when there is one, else 1, 2, ...
        several = config.spooler_count > 1
        self.spoolers = [
            slot(Role.SPOOLER, i + 1 if several else 0) for i in range(config.spooler_count)
        ]
        # The first spooler process takes the signals aimed at the spooler.
        self.spooler = self.spoolers[0] if self.spoolers else None
        self.slots = [*self.workers, *self.mules, *self.spoolers]
        self.worker_queue = SharedQueue("workers", readers=config.worker_slots)
        self.mule_queue = SharedQueue("mules", readers=config.mule_count)
        self.farm_queues = [
            SharedQueue(f"farm {farm.name}", readers=len(farm.mules)) for farm in config.farms
        ]
        self.queues = [self.worker_queue, self.mule_queue, *self.farm_queues]
        self.locks = SharedLocks(config.locks + 1)
        self.post = PostOffice(config.mule_count, {farm.name: farm.mules for farm in config.farms})
        # The directory each spooler process serves: spooler_processes in a row per directory.
        dirs = [SpoolDir(path) for path in config.spool_dirs]
        self.spool_of = {
            spooler.key: dirs[position // config.spooler_processes]
            for position, spooler in enumerate(self.spoolers)
            if dirs
        }
        self.controller = (
            Peer(controller, controller_rings.ring(0) if controller_rings else None)
            if controller is not None
            else None
        )
        self.peers: list[Peer] = [*self.slots, *([self.controller] if self.controller else [])]
        # Each child's ring in the master's mapping; the handle's lives in a mapping of its own.
        self._ringed = [(slot, slot.ring) for slot in self.slots if slot.ring is not None]
        self._controller_ringed = (
            (self.controller, self.controller.ring)
            if self.controller is not None and self.controller.ring is not None
            else None
        )
        self._dirty: set[Peer | SharedQueue] = set()
        self.router = Router(
            table,
            workers=self.workers,
            mules=self.mules,
            spooler=self.spooler,
            more_slots=self.spoolers[1:],
            worker_queue=self.worker_queue,
            mule_queue=self.mule_queue,
            farm_queues=self.farm_queues,
            farm_position=self.farm_position,
            touch=self._dirty.add,
        )
        self.flow: Flow[Peer] = Flow(config.queue_size)
        self._posix: list[int] = []
        self.started_at = time.monotonic()
        self.raised = 0  # signals raised by any process, ever
        self._unhandled: set[int] = set()  # signals from the cluster with no handler here
        self.unique: dict[int, float] = {}  # signal -> its unique schedule's tick, in seconds
        self._unique_paths: dict[int, str] = {}  # signal -> the path its unique monitor watches
        self.raised_by_num = [0] * (MAX_SIGNAL + 1)
        self.pidfile = Pidfile(config.pidfile) if config.pidfile is not None else None
        self.touch_files = TouchFiles(
            [(path, "reloading the workers", self.handle_hup) for path in config.touch_reload]
            + [(path, "reloading the workers", self._reload_workers)
               for path in config.touch_workers_reload]
            + [(path, "reloading the mules", self._reload_mules)
               for path in config.touch_mules_reload]
            + [(path, "chain reload", self._chain_reload) for path in config.touch_chain_reload]
            + [(path, "reopening the log", self._reopen_log) for path in config.touch_logreopen]
            + [(path, "rotating the log", self._rotate_log) for path in config.touch_logrotate]
        )  # fmt: skip
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.supervisor = Supervisor(
            [slot for slot in self.slots if not slot.attached],
            launch=self._launch,
            lost=self._lost,
            describe_work=self.describe_work,
            touch=self._dirty.add,
            stop_timeout=config.stop_timeout,
            reload_timeout=config.reload_timeout,
            wait_wakeup=self._wait_wakeup,
        )
        if config.command:
            env = dict(os.environ)
            if config.attach_socket is not None:
                env[ATTACH_ENV] = config.attach_socket
            self.supervisor.command = Command(
                config.command, env, call_later=self.supervisor.call_later
            )
        self._poll = select.poll()
        self.remote = (
            RemoteListener(
                listening, self._poll, self.raise_remote, config.allowed_networks
            )
            if listening is not None
            else None
        )
        if door is None:  # no process will attach: the mappings need no descriptors
            for memory in (self.progress.memory, self.rings.memory, self.rings.sleeping_memory):
                memory.close_fd()
        self.door = (
            AttachDoor(
                door,
                config.attach_socket or "",
                self._poll,
                admit=self._admit,
                leave=self._detach,  # type: ignore[arg-type]
            )
            if door is not None
            else None
        )
        self.fifo = (
            MasterFifo(
                config.master_fifo,
                self._poll,
                {
                    "r": self.handle_hup,
                    "R": self._reload_brutally,
                    "w": self._reload_workers,
                    "W": self._reload_workers_brutally,
                    "c": self._chain_reload,
                    "q": lambda: self._begin_stop(graceful=True),
                    "Q": lambda: self._begin_stop(graceful=False),
                    "s": self.handle_usr1,
                    "p": self.handle_tstp,
                    "l": self._reopen_log,
                    "L": self._rotate_log,
                    "P": self._rewrite_pidfile,
                },
            )
            if config.master_fifo
            else None
        )
        self.stats_server = (
            StatsServer(bind_stats(config.stats), self._poll, self.stats, http=config.stats_http)
            if config.stats is not None
            else None
        )
        # What the loop does when a descriptor is ready (the listener's own
        # connections come and go: it keeps them).
        self._on_ready: dict[int, Callable[[int], None]] = {self._wake_r: self._drain_wakeup}
        self.cluster = self._cluster_link(config)
        if self.cluster is not None:
            self._on_ready[self.cluster.sock.fileno()] = self.cluster.ready
        for peer in self.peers:
            self._on_ready[peer.sock.fileno()] = functools.partial(self._peer_ready, peer)
        for queue in self.queues:
            self._on_ready[queue.sock.fileno()] = lambda events, q=queue: self._dirty.add(q)
        self._on_frame: dict[int, Callable[[Peer, int, int, int], None]] = {
            Op.RAISE: self._on_raise,
            Op.WAIT: self._on_wait,
            Op.UNWAIT: self._on_unwait,
            Op.RETURN: self._on_return,
            Op.REGISTER: self._on_register,
            Op.READY: self._on_ready_frame,
            Op.STATUS: self._on_status,
            Op.PAYLOAD: self._on_payload,
            Op.ADD_EVENT: self._on_add_event,
            Op.SPOOLED: self._on_spooled,
            Op.BELL: self._on_bell,
            Op.WORKERS: self._on_workers,
            Op.SPOOLER_FREQUENCY: self._on_spooler_frequency,
            Op.CLUSTER_RAISE: self._on_cluster_raise,
        }

    # ---------------------------------------------------------------- life

    def run(self) -> int:
        """Spawn the children and serve until stopped; return the exit code."""
        self._start()
        try:
            while self.running:
                self._serve_once()
        finally:
            self._shut_down()
            if self.pidfile is not None:
                self.pidfile.remove(self.pid)
        log.info("uwsgisig master %d stopped", self.pid)
        return 0

    def _start(self) -> None:
        self._install_posix_handlers()
        if self.pidfile is not None:
            self.pidfile.write(self.pid)
        if self.touch_files:
            self.supervisor.call_later(TOUCH_INTERVAL, self._look_at_touch_files)
        self.supervisor.call_later(HARAKIRI_INTERVAL, self._harakiri)
        if self.caches is not None:
            self.supervisor.call_later(SWEEP_INTERVAL, self._sweep_caches)
        if self.fifo is not None:
            self.fifo.start()
        if self.stats_server is not None:
            self.stats_server.start()
        self._poll.register(self._wake_r, select.POLLIN)
        for peer in self.peers:
            self._poll.register(peer.sock, select.POLLIN)
        for queue in self.queues:
            self._poll.register(queue.sock, 0)
        for event in self.declared_events:
            self.add_event(event)
        for num, seconds in self.config.timers:
            self.add_event(timer_event(num, seconds))
        for num, seconds in self.config.rb_timers:
            self.add_event(rb_timer_event(num, seconds))
        if self.remote is not None:
            self.remote.start()
        if self.cluster is not None:
            self._poll.register(self.cluster.sock, select.POLLIN)
        if self.rpc_listening is not None:
            log.info("workers answer RPC requests on %s", address_of(self.rpc_listening))
        if self.door is not None:
            self.door.start()
        for num in CURRENT.early_signals:
            self.router.route(num)
        CURRENT.early_signals.clear()
        self._log_schedule()
        self.supervisor.spawn_all()
        log.info(
            "uwsgisig master %d running %d workers, %d mules%s%s",
            self.pid,
            self.config.workers,
            len(self.mules),
            ", a spooler" if self.spooler else "",
            f", {self.config.attach} worker slots to attach to at {self.config.attach_socket}"
            if self.config.attach
            else "",
        )
        self.supervisor.start_command()

    def _serve_once(self) -> None:
        if self._rings_were_busy:
            self._serve_rings()
        for fd, events in self._poll.poll(self._sleep_timeout()):
            on_ready = self._on_ready.get(fd)
            if on_ready is not None:
                on_ready(events)
            elif fd == self._monitor_fd:
                self._fire(self.events.read_monitor())
            elif self.remote is not None and self.remote.owns(fd):
                self.remote.ready(fd, events)
            elif self.door is not None and self.door.owns(fd):
                self.door.ready(fd, events)
            elif self.fifo is not None and self.fifo.owns(fd):
                self.fifo.ready(fd)
            elif self.stats_server is not None and self.stats_server.owns(fd):
                self.stats_server.ready()
        self.rings.set_sleeping(False)
        self._read_rings()
        self._fire(self.events.due())
        if self.remote is not None:
            self.remote.expire()
        if self.door is not None:
            self.door.expire()
        self._handle_posix_signals()
        self._flush()

    def _shut_down(self) -> None:
        if self.remote is not None:
            self.remote.close()  # no peer waits on us while the children stop
        if self.door is not None:
            self.door.close()  # attached workers see the runtime end and go on alone
        if self.fifo is not None:
            self.fifo.close()
        if self.stats_server is not None:
            self.stats_server.close()
        self.supervisor.stop(graceful=self._graceful)
        self.events.close()

    def _sleep_timeout(self) -> int | None:
        """How long poll may block: not at all while a child's ring holds frames.

        ``sleeping`` is set before the last look at the rings, so a child that
        publishes after that look sees it and rings the bell (see `ipc.rings`).
        """
        timeout = self._poll_timeout()
        if timeout == 0:
            return 0
        self.rings.set_sleeping(True)
        if self._rings_pending():
            self.rings.set_sleeping(False)
            return 0
        return timeout

    def _serve_rings(self) -> None:
        """After a pass that read frames, serve the rings alone for a moment.

        A signal tends to bring its answer or the next signal within tens of
        microseconds. A sleeping master costs each of them a system call (the
        bell) and a wake-up, and a whole pass costs a poll and a look at every
        other input: between two CPUs, that is most of a signal's latency. So
        the master watches the rings, yielding the CPU on every look so that
        a sender sharing it runs, and reads, routes and writes what they bring
        at once. It stops when they have been quiet for `SPIN_AFTER_WORK_NS`,
        or after `SPIN_LIMIT_NS` in all, and the pass goes on as usual (its
        flush pays credit as every pass does).
        """
        clock = time.perf_counter_ns
        now = clock()
        limit = now + SPIN_LIMIT_NS
        quiet_at = now + SPIN_AFTER_WORK_NS
        while now < quiet_at:
            if self._read_rings():
                self._flush()
                now = clock()
                if now >= limit:
                    return  # still busy: the next pass comes back here
                quiet_at = now + SPIN_AFTER_WORK_NS
            else:
                os.sched_yield()
                now = clock()
        self._rings_were_busy = False

    def _rings_pending(self) -> bool:
        """Whether any ring, the children's or the handle's, holds frames."""
        if self.rings.pending():
            return True
        return self._controller_ringed is not None and self._controller_ringed[1].pending()

    def _read_rings(self) -> bool:
        """Act on the frames of every ring; True if any ring had some."""
        read = False
        if self.rings.pending():
            read = self._rings_were_busy = True
            for slot, ring in self._ringed:
                frames = ring.take()
                if frames:
                    self._act_on(slot, frames)
        if self._controller_ringed is not None:
            controller, ring = self._controller_ringed
            if ring.pending():
                read = self._rings_were_busy = True
                self._act_on(controller, ring.take())
        return read

    def _poll_timeout(self) -> int | None:
        """Milliseconds until the next internal timer or external event, None if none."""
        # Written out rather than as a list: this runs on every pass of the loop.
        due = self.supervisor.run_due()
        event = self.events.timeout()
        if event is not None and (due is None or event < due):
            due = event
        if WEAK_ORDER_NAP is not None and (due is None or due > WEAK_ORDER_NAP):
            due = WEAK_ORDER_NAP
        if not self.flow.granting and (due is None or due > CONGESTED_RECHECK):
            # Children drain the queue without telling the master (from their
            # sockets, their inboxes): while credit is held back, look again soon.
            due = CONGESTED_RECHECK
        if self.remote is not None:
            remote = self.remote.timeout()
            if remote is not None and (due is None or remote < due):
                due = remote
        if self.door is not None:
            hello = self.door.timeout()
            if hello is not None and (due is None or hello < due):
                due = hello
        return None if due is None else math.ceil(due * 1000)

    def _route_all(self, nums: Iterable[int]) -> None:
        for num in nums:
            self.router.route(num)

    def _fire(self, nums: Iterable[int]) -> None:
        """Route the signals of due events; a unique one's tick goes to its lease first."""
        for num in nums:
            length = self.unique.get(num)
            if length is None:
                self.router.route(num)
                continue
            assert self.cluster is not None, "unique events are checked when added"
            path = self._unique_paths.get(num)
            slot = slot_of(time.time(), length) if path is None else change_slot(path)
            self.cluster.lease(num, length, slot)

    # ---------------------------------------------------------------- events

    def check_event(self, event: Event) -> None:
        """Raise ScheduleError if ``event`` cannot be armed here (a unique one needs a cluster,
        and is its signal's only unique schedule)."""
        if not event.unique:
            return
        what = {TimerEvent: "timer", CronEvent: "cron"}.get(type(event), "file monitor")
        if self.config.cluster is None:
            raise ScheduleError(
                f"signal {event.signum}'s {what} is unique (once per cluster), but this runtime "
                "is in no cluster: start it with --cluster URL (cluster=... in Runtime)"
            )
        length = unique_length(event)
        known = self.unique.get(event.signum)
        if known is not None and known != length:
            raise ScheduleError(
                f"signal {event.signum} already has a unique schedule of {known:g} s: a signal "
                f"takes one, not a second one of {length:g} s"
            )

    def add_event(self, event: Event) -> None:
        """Arm a timer, cron or file monitor; its signals are routed like any other."""
        self.check_event(event)
        if event.unique:
            self.unique[event.signum] = unique_length(event)
            if isinstance(event, FileEvent):
                self._unique_paths[event.signum] = event.path
        self.events.add(event)
        fd = self.events.fileno()
        if fd != self._monitor_fd:
            self._monitor_fd = fd
            self._poll.register(fd, select.POLLIN)
        log.debug("armed %s", event)

    # ---------------------------------------------------------------- reading frames

    def _peer_ready(self, peer: Peer, events: int) -> None:  # peer first: a partial
        if events & READABLE:
            self._read_peer(peer)
        if events & select.POLLOUT:
            self._dirty.add(peer)

    def _read_peer(self, peer: Peer) -> bool:
        """Read and act on what ``peer`` sent; False when there was nothing to read."""
        try:
            data = peer.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            if peer is self.controller:
                log.info("the controller closed its link: stopping")
                self._poll.unregister(peer.sock)
                del self._on_ready[peer.sock.fileno()]
                self.running = False
            return False
        self._act_on(peer, peer.reader.whole_frames(data))
        return True

    def _act_on(self, peer: Peer, frames: bytes) -> None:
        """Handle whole frames from ``peer``, read from its socket or its ring."""
        raised = self.router.route_raises(frames)
        if raised == 1:
            self.raised += 1
            self.raised_by_num[frames[2]] += 1
            self.flow.raised(peer, 1)
            return
        if raised:
            self.raised += raised
            nums = frames[2::FRAME_SIZE]
            for num in set(nums):  # a burst has one or two numbers: count() runs in C
                self.raised_by_num[num] += nums.count(num)
            self.flow.raised(peer, raised)
            return
        on_frame = self._on_frame
        for op, arg, num, value in FRAME.iter_unpack(frames):
            handler = on_frame.get(op)
            if handler is None:
                log.error("unexpected frame %d from %s", op, peer.describe())
            else:
                handler(peer, num, arg, value)

    def _on_raise(self, peer: Peer, num: int, arg: int, value: int) -> None:
        self.raised += 1
        if num <= MAX_SIGNAL:
            self.raised_by_num[num] += 1
        self.flow.raised(peer, 1)
        if num > MAX_SIGNAL:
            log.error("%s raised signal %d: signals are 0-%d", peer.describe(), num, MAX_SIGNAL)
            return
        self.router.route(num)

    def _on_wait(self, peer: Peer, num: int, arg: int, value: int) -> None:
        self.router.start_waiting(peer, num)

    def _on_unwait(self, peer: Peer, num: int, arg: int, value: int) -> None:
        self.router.stop_waiting(peer)

    def _on_return(self, peer: Peer, num: int, arg: int, value: int) -> None:
        if num <= MAX_SIGNAL:
            self.router.route(num)  # a DELIVER that crossed the peer's UNWAIT

    def _on_register(self, peer: Peer, num: int, arg: int, value: int) -> None:
        if isinstance(peer, Slot):
            peer.put(Op.REGISTERED, num, arg=self._register(peer, num, arg, value))
            self._dirty.add(peer)

    def _on_ready_frame(self, peer: Peer, num: int, arg: int, value: int) -> None:
        if isinstance(peer, Slot):
            peer.ready = True
            self.supervisor.became_ready(peer)
            log.debug("%s (pid %s) is ready", peer.describe(), peer.pid)

    def _on_status(self, peer: Peer, num: int, arg: int, value: int) -> None:
        peer.put(Op.PROC, 0, self.pid, arg=Role.MASTER)
        for slot in self.slots:
            if slot.vacant:
                continue  # an attach slot nobody holds is no process
            flags = int(slot.role) | (PROC_READY if slot.ready else 0)
            peer.put(Op.PROC, slot.id, slot.pid or 0, arg=flags)
        peer.put(Op.END)
        self._dirty.add(peer)

    def _on_workers(self, peer: Peer, num: int, arg: int, value: int) -> None:
        """uwsgi.workers(): the stats server's figures for every worker, as JSON."""
        data = json.dumps(workers_stats(self)).encode()
        peer.outbox += pack_payload(data)
        peer.put(Op.END, value=len(data))
        self._dirty.add(peer)

    def _on_payload(self, peer: Peer, num: int, arg: int, value: int) -> None:
        peer.payload += value.to_bytes(4, "little")

    def _on_add_event(self, peer: Peer, num: int, arg: int, length: int) -> None:
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

    def _on_bell(self, peer: Peer, num: int, arg: int, value: int) -> None:
        """Frames wait in the peer's ring: the loop reads the rings on every pass."""

    def _on_spooled(self, peer: Peer, num: int, arg: int, value: int) -> None:
        self._wake_spooler()

    def _on_cluster_raise(self, peer: Peer, num: int, arg: int, value: int) -> None:
        if self.cluster is None:  # the child checks first: only a forged frame gets here
            log.error("%s raised signal %d on the cluster, but there is none", peer.describe(), num)
            return
        self.cluster.publish(num, "all")

    def _on_spooler_frequency(self, peer: Peer, seconds: int, arg: int, value: int) -> None:
        # Kept for the spoolers respawned later, as uWSGI keeps it in shared memory;
        # 0 goes back to --spooler-frequency, as in uWSGI.
        frequency = seconds or self._configured_spooler_frequency
        self.config = attrs.evolve(self.config, spooler_frequency=frequency)
        for spooler in self.spoolers:
            spooler.put(Op.FREQUENCY, seconds)
            self._dirty.add(spooler)

    # ---------------------------------------------------------------- requests

    def _register(self, slot: Slot, num: int, kind_code: int, index: int) -> RegisterError:
        """A child registered a handler after fork: route ``num`` to that child."""
        try:
            target = target_from_code(kind_code, index)
        except TargetError:
            return RegisterError.NO_SUCH_TARGET
        if not self.target_exists(target):
            return RegisterError.NO_SUCH_TARGET
        try:
            self.table.register(num, target, None, owner=slot.key)
        except SignalAlreadyRegisteredError:
            return RegisterError.TAKEN
        log.debug("%s registered signal %d for %s", slot.describe(), num, target)
        self.router.registered(num)
        if self.cluster is not None:
            self.cluster.announce()
        return RegisterError.OK

    def _wake_spooler(self) -> None:
        for spooler in self.spoolers:
            if not spooler.outbox.endswith(_SPOOL_FRAME):
                spooler.put(Op.SPOOL)
                self._dirty.add(spooler)

    def _cluster_link(self, config: RuntimeConfig) -> ClusterLink | None:
        if config.cluster is None:
            return None
        cluster = ClusterLink(
            ClusterSpec(config.cluster, config.cluster_name),
            config.cluster_node or default_node_name(self.pid),
            call_later=self.supervisor.call_later,
            raise_here=self.raise_from_cluster,
            run_won=self.router.route,
            signals=lambda: self.table.entries().keys(),
        )
        self.supervisor.helpers.append(cluster.command)
        self.router.publish = cluster.publish
        return cluster

    def raise_from_cluster(self, num: int, scope: str) -> None:
        """Run here a signal the cluster brought (by its handler here, never back out)."""
        if self.table.get(num) is None and scope != "subscribed" and num not in self._unhandled:
            self._unhandled.add(num)
            log.warning(
                "signal %d came from the cluster, but this node has no handler for it: it is "
                "held for wait() (said once for each signal)",
                num,
            )
        if self.backlog() >= self.config.queue_size:
            log.error("signal %d from the cluster is dropped: the signal queue is full", num)
            return
        self.router.route(num, from_cluster=True)

    def raise_remote(self, num: int) -> bool:
        """Route ``num`` for a remote node; False if the queue is full (uWSGI then says 0)."""
        if self.backlog() >= self.config.queue_size:
            return False
        self.router.route(num)
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
        if target.is_cluster:
            return self.config.cluster is not None
        return True

    def backlog(self) -> int:
        """Signals accepted and not started yet: the master's queue, measured against its size.

        Signals held for a wait() do not count: they are bounded on their own
        (see `held`), and counting them would let signals that nobody asks
        for stop every sender.
        """
        return (
            sum(peer.backlog() for peer in self.peers)
            + sum(queue.backlog() for queue in self.queues)
            + self.router.backlog()
        )

    # ---------------------------------------------------------------- writing

    def _flush(self) -> None:
        """Write the outboxes, pay the credit flow control allows, write that too."""
        self._write_outboxes()
        paid = self.flow.payments(self.backlog)
        for peer, amount in paid:
            peer.put(Op.CREDIT, value=amount)
            self._dirty.add(peer)
        if paid:
            self._write_outboxes()

    def _write_outboxes(self) -> None:
        while self._dirty:
            owner = self._dirty.pop()
            sock = owner.sock
            outbox = owner.outbox
            shared = type(owner) is SharedQueue
            if not outbox:
                pass
            elif shared:
                owner.write()  # type: ignore[union-attr]
            else:
                try:
                    sent = sock.send(outbox)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except (BrokenPipeError, ConnectionResetError):
                    sent = len(outbox)  # the controller left; nothing reads this any more
                del outbox[:sent]
            # Watch for room only while output waits; skip the system call when
            # nothing changes, which in a burst is nearly always.
            want_out = bool(outbox)
            if want_out != owner.watching_out and sock.fileno() >= 0:
                idle = 0 if shared else select.POLLIN
                self._poll.modify(sock, idle | (select.POLLOUT if want_out else 0))
                owner.watching_out = want_out

    # ---------------------------------------------------------------- children

    def _launch(self, slot: Slot) -> int:
        """In the forked child: keep only its descriptors, then become the child."""
        mule = slot.role == Role.MULE
        queues = self._queues_of(slot)
        mailbox = self.post.mailbox(slot.id) if mule else None
        rpc = self.rpc_listening if slot.role == Role.WORKER else None
        keep = {
            *([rpc.fileno()] if rpc is not None else []),
            slot.child_end.fileno(),
            self.locks.fd,
            *(end.fileno() for queue in queues for end in queue.read_ends),
            *self.post.write_fds(),
            *(queue.fileno() for queue in (mailbox.queues() if mailbox else ())),
        }
        for fd in self._descriptors():
            if fd not in keep:
                os.close(fd)
        return self.child_main(
            ChildSpec(
                role=slot.role,
                id=slot.id,
                masterpid=self.pid,
                link=slot.child_end,
                queues=tuple(queue.read_ends for queue in queues),
                progress=slot.progress,
                ring=slot.ring,
                table=self.table,
                hooks=tuple(self.hooks),
                config=self.config,
                post=self.post,
                locks=self.locks,
                mailbox=mailbox,
                farms=tuple(f.name for f in self.config.farms if slot.id in f.mules)
                if mule
                else (),
                program=self.config.program_of(slot.id) if mule else None,
                spool=self.spool_of.get(slot.key) if slot.role == Role.SPOOLER else None,
                rpc_listening=rpc,
                caches=self.caches,
            )
        )

    def _queues_of(self, slot: Slot) -> list[SharedQueue]:
        if slot.role == Role.WORKER:
            return [self.worker_queue]
        if slot.role == Role.MULE:
            farms = zip(self.config.farms, self.farm_queues, strict=True)
            return [self.mule_queue] + [queue for farm, queue in farms if slot.id in farm.mules]
        return []

    def _descriptors(self) -> list[int]:
        fds = [self._wake_r, self._wake_w]
        for peer in self.peers:
            fds.append(peer.sock.fileno())
        for slot in self.slots:
            fds.append(slot.child_end.fileno())
        for queue in self.queues:
            fds += queue.fds()
        for mail in self.post.all_queues():
            fds += mail.fds()
        fds.append(self._monitor_fd)
        if self.remote is not None:
            fds += self.remote.fds()  # a child must not keep peers' connections open
        if self.rpc_listening is not None:
            fds.append(self.rpc_listening.fileno())
        if self.door is not None:
            fds += self.door.fds()
        if self.fifo is not None:
            fds += self.fifo.fds
        if self.stats_server is not None:
            fds += self.stats_server.fds()
        for memory in (self.progress.memory, self.rings.memory, self.rings.sleeping_memory):
            fds.append(memory.fd)
        return sorted({fd for fd in fds if fd >= 0})

    def _lost(self, slot: Slot) -> None:
        """A child exited: keep what it raised, give what it had not started to its successor."""
        # What it wrote before it died still counts: send() accepted those signals.
        while self._read_peer(slot):
            pass
        if slot.ring is not None and slot.ring.pending():
            self._act_on(slot, slot.ring.take())
        self.router.stop_waiting(slot)
        self.flow.reset(slot)
        slot.progress.deadlines[0] = slot.progress.deadlines[1] = 0  # the next one starts clean
        self._route_all(slot.recover())
        self._dirty.add(slot)

    # ---------------------------------------------------------------- attached workers

    def _admit(
        self, pid: int, hello: dict[str, Any], patient: bool
    ) -> tuple[Admission, Slot] | str | None:
        return admit(self, pid, hello, patient)

    def touch(self, owner: Peer | SharedQueue) -> None:
        """Mark ``owner``'s outbox to be written at the end of this pass."""
        self._dirty.add(owner)

    def _detach(self, slot: Slot) -> None:
        """The process attached to ``slot`` is gone: what it had not started waits for the next."""
        log.info("worker %d (pid %s) detached", slot.id, slot.pid)
        slot.pid = None
        slot.ready = False
        self._lost(slot)
        self.router.workers_changed()

    def describe_work(self, slot: Slot) -> str:
        """What ``slot``'s child is doing, for the log line of a stop that kills it."""
        num = slot.progress.running
        if num is None:
            program = self.config.program_of(slot.id) if slot.role == Role.MULE else None
            if program is not None:
                return f"running its loop {program.describe()}"
            return "busy outside any signal handler"
        entry = self.table.get(num)
        handler = entry.handler if entry is not None else None
        if handler is None:
            return f"in the handler of signal {num} (registered after fork)"
        name = getattr(handler, "__qualname__", repr(handler))
        return f"in handler {getattr(handler, '__module__', '?')}:{name} of signal {num}"

    # ---------------------------------------------------------------- POSIX signals

    def _install_posix_handlers(self) -> None:
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            # The handler does nothing: the wakeup fd carries the number to the loop.
            signal.signal(signum, _note_posix_signal)

    def _drain_wakeup(self, events: int = 0) -> None:
        try:
            while data := os.read(self._wake_r, 4096):
                self._posix.extend(data)
        except BlockingIOError:
            pass

    def _wait_wakeup(self, timeout: float) -> None:
        select.select([self._wake_r], [], [], max(timeout, 0.0))
        self._drain_wakeup()

    def _handle_posix_signals(self) -> None:
        # A stop is acted on before a SIGCHLD that came in the same pass (a child
        # may have died of the same kill, e.g. `kill -TERM` to every pid of the
        # runtime): nothing is respawned once stopping began.
        if not self._posix:
            return
        queued = sorted(set(self._posix), key=lambda signum: signum == signal.SIGCHLD)
        self._posix.clear()
        for signum in queued:
            name = STOP_SIGNALS.get(signum)  # type: ignore[call-overload]
            if name is not None:
                getattr(self, f"handle_{name}")()

    def _begin_stop(self, graceful: bool) -> None:
        self.running = False
        self._graceful = graceful
        self.supervisor.stopping = True

    def handle_int(self) -> None:
        log.info("SIGINT: stopping")
        self._begin_stop(graceful=False)

    def handle_quit(self) -> None:
        log.info("SIGQUIT: stopping")
        self._begin_stop(graceful=False)

    def handle_term(self) -> None:
        graceful = self.config.graceful_stop
        log.info("SIGTERM: stopping%s", " gracefully" if graceful else "")
        self._begin_stop(graceful=graceful)

    def handle_hup(self) -> None:
        self._reload_workers()
        if self.supervisor.command is not None:
            self.supervisor.command.reload()

    def _reload_workers(self) -> None:
        # Attached workers belong to their server, which reloads them itself.
        self.supervisor.reload([slot for slot in self.workers if not slot.attached])

    def _forked_workers(self) -> list[Slot]:
        return [slot for slot in self.workers if not slot.attached]

    def _reload_brutally(self) -> None:
        self._reload_workers_brutally()
        if self.supervisor.command is not None:
            self.supervisor.command.reload()

    def _reload_workers_brutally(self) -> None:
        log.info("reloading %d workers brutally", len(self._forked_workers()))
        for slot in self._forked_workers():
            self.supervisor.restart(slot)

    def _chain_reload(self) -> None:
        self.supervisor.chain_reload(self._forked_workers())

    def _reopen_log(self) -> None:
        reopen_log(self.config.log_file)

    def _rotate_log(self) -> None:
        rotate_log(self.config.log_file)

    def _rewrite_pidfile(self) -> None:
        if self.pidfile is not None:
            self.pidfile.write(self.pid)
            log.info("pidfile %s written again", self.pidfile.path)

    def _reload_mules(self) -> None:
        programmed = [mule for mule in self.mules if self.config.program_of(mule.id)]
        self.supervisor.reload([mule for mule in self.mules if mule not in programmed])
        for mule in programmed:
            self.supervisor.restart(mule)  # its own loop reads no RELOAD

    def handle_usr1(self) -> None:
        """Statistics to the log: the queues, then every process."""
        queued = sum(queue.backlog() for queue in self.queues) + self.router.backlog()
        log.info(
            "stats: master pid %d up %.1f s; %d signals raised, %d queued (%d in shared "
            "queues or paused), %d held for a wait() (%d dropped)%s",
            self.pid,
            time.monotonic() - self.started_at,
            self.raised,
            self.backlog(),
            queued,
            len(self.router.held),
            self.router.held.dropped,
            "; PAUSED" if self.router.paused is not None else "",
        )
        for line in describe_slots(self.slots, self._doing):
            log.info("stats: %s", line)

    def handle_usr2(self) -> None:
        """Worker status to the log, one line each."""
        for line in describe_slots(self.workers, self._doing):
            log.info("status: %s", line)

    def handle_tstp(self) -> None:
        """Pause (no signal is delivered, none is lost) or resume."""
        if self.router.paused is None:
            self.router.pause()
            log.info("SIGTSTP: paused; signals raised from now on are kept until resumed")
        else:
            log.info("SIGTSTP: resumed; delivering %d kept signals", self.router.resume())

    def stats(self) -> dict[str, Any]:
        """The state of the runtime, in the shape of uWSGI's stats server (see `master.stats`)."""
        return snapshot(self)

    def _log_schedule(self) -> None:
        log_schedule(self.table, self.events)

    def _doing(self, slot: Slot) -> str:
        num = slot.progress.running
        return "idle" if num is None else self.describe_work(slot)

    def _sweep_caches(self) -> None:
        """Remove expired cache items, every few seconds (uWSGI's cache sweeper)."""
        assert self.caches is not None
        try:
            removed = self.caches.sweep()
        except Exception:
            log.exception("sweeping the caches failed; trying again in %g s", SWEEP_INTERVAL)
        else:
            if removed:
                log.debug("removed %d expired cache items", removed)
        self.supervisor.call_later(SWEEP_INTERVAL, self._sweep_caches)

    def _harakiri(self) -> None:
        """Kill every child that outlived its handler's or its own harakiri (uWSGI's)."""
        now = time.monotonic_ns()
        for slot in self.slots:
            if slot.pid is None or slot.attached:
                continue  # an attached worker's life is its server's
            handler_deadline, user_deadline = slot.progress.deadlines
            if handler_deadline and now > handler_deadline:
                why = f"--harakiri {self.config.harakiri:g} s"
            elif user_deadline and now > user_deadline:
                why = "the harakiri it set itself"
            else:
                continue
            log.error(
                "HARAKIRI: %s (pid %d) was %s past %s: killing it",
                slot.describe(),
                slot.pid,
                self.describe_work(slot),
                why,
            )
            slot.progress.deadlines[0] = slot.progress.deadlines[1] = 0
            kill_group(slot.pid, signal.SIGKILL)
        self.supervisor.call_later(HARAKIRI_INTERVAL, self._harakiri)

    def _look_at_touch_files(self) -> None:
        self.touch_files.look()
        self.supervisor.call_later(TOUCH_INTERVAL, self._look_at_touch_files)

    def handle_chld(self) -> None:
        self.supervisor.reap()


_SPOOL_FRAME = FRAME.pack(Op.SPOOL, 0, 0, 0)


def _note_posix_signal(signum: int, frame: object) -> None:
    """Installed so Python writes the signal number to the wakeup fd."""
