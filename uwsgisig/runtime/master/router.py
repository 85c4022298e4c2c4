"""Where each signal goes: the routing rules of uWSGI, decided in one place.

`Router.destination` makes the one decision, for a single signal and for a
burst alike:

- a registered signal goes where its target says, whoever waits:
  ``workerN``/``muleN``/``spooler`` and a handler registered after fork
  (its owner) to that one process; ``workers``/``mules`` to each of them
  (a worker slot kept for attached processes counts while one holds it);
  ``active-workers`` to each worker that has a process (one still starting
  counts: the signal waits in its socket); ``worker``/``mule``/a farm to
  that group's shared queue, where the first idle reader takes it.
  A process in wait() sees only what is routed to it; a RUN of the number
  it waits for (or of any number, for a bare wait()) also ends its wait;
- a signal with no handler answers one waiting member of the worker pool
  (a worker or the controller; never a mule or the spooler): one waiting
  for that number first, else one waiting for any, the oldest first; with
  no such waiter it is held (see `held`);
- a signal whose target is ``cluster`` or ``subscribed`` goes to the
  cluster (`ToCluster`), and comes back from it to each node, where
  `route` with ``from_cluster`` routes it by its handler there: its owner,
  or its target, ``worker`` for a cluster target (so it never goes round
  again).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import attrs

from ..model.table import Entry, SignalTable
from ..model.targets import Target
from ..wire.frames import ANY_SIGNAL, FRAME_SIZE, RUN_FRAMES, Op, numbers_if_all
from .held import HeldSignals
from .peers import Peer, SharedQueue, Slot

__all__ = ["Hold", "Router", "ToCluster", "ToQueue", "ToSlots", "ToWaiter"]


@attrs.frozen
class ToQueue:
    """Into a shared queue: the first idle reader runs it."""

    queue: SharedQueue


@attrs.frozen
class ToSlots:
    """A RUN frame to each of these processes."""

    slots: tuple[Slot, ...]


@attrs.frozen
class ToWaiter:
    """Answers this peer's wait() (a signal with no handler)."""

    peer: Peer


@attrs.frozen
class ToCluster:
    """Raised on the nodes of the cluster: every live one, or those with a handler."""

    scope: str  # "cluster" or "subscribed"


@attrs.frozen
class Hold:
    """No handler and no waiter: kept for a later wait()."""


Destination = ToQueue | ToSlots | ToWaiter | ToCluster | Hold
_HERE = Target("worker")  # where a cluster-targeted signal runs on a node it reached
_RAISE = int(Op.RAISE)  # an enum member's lookup costs ten times a global int's, per signal
# Targets whose destination stays what it was when first decided: one process, a
# shared queue, all the mules. Those of ``workers`` and ``active-workers`` change
# as processes come and go, and the cluster's are decided afresh each time.
_FIXED_KINDS = frozenset(("worker", "mule", "farm", "mules", "spooler"))


class Router:
    """Routes signals to the master's peers and queues; ``touch`` marks one to be written."""

    def __init__(
        self,
        table: SignalTable,
        *,
        workers: Sequence[Slot],
        mules: Sequence[Slot],
        spooler: Slot | None,
        worker_queue: SharedQueue,
        mule_queue: SharedQueue,
        farm_queues: Sequence[SharedQueue],
        farm_position: Callable[[Target], int],
        touch: Callable[[Peer | SharedQueue], None],
        held: HeldSignals | None = None,
        more_slots: Sequence[Slot] = (),
        publish: Callable[[int, str], None] | None = None,
    ) -> None:
        self.table = table
        self.workers = tuple(workers)
        self.mules = tuple(mules)
        self.spooler = spooler
        self.worker_queue = worker_queue
        self.mule_queue = mule_queue
        self.farm_queues = tuple(farm_queues)
        self.farm_position = farm_position
        self.touch = touch
        self.publish = publish  # raises a signal on the cluster (None: no cluster)
        self.held = held if held is not None else HeldSignals()
        self.waiters: list[Peer] = []  # pool members blocked in wait(), oldest first
        # While paused (SIGTSTP), raised signals wait here, in order, undelivered; those
        # the cluster brought, apart (they are routed as arrivals when the pause ends).
        self.paused: deque[int] | None = None
        self.paused_from_cluster: list[int] = []
        self.held_workers = self.workers  # the worker slots some process holds
        # Signal -> (its entry, its destination) for fixed targets: it is decided once
        # per entry, and a new entry for the number (registered after fork) is seen as new.
        self._fixed: list[tuple[Entry, Destination] | None] = [None] * len(RUN_FRAMES)
        self.workers_changed()
        self._by_key = {slot.key: slot for slot in (*self.workers, *self.mules)}
        # Slots that own signals registered after fork, beside the workers and mules:
        # every spooler process (the first one also takes the `spooler` target).
        for slot in (*([spooler] if spooler is not None else []), *more_slots):
            self._by_key[slot.key] = slot

    def workers_changed(self) -> None:
        """A process attached to a worker slot or left one: ``workers`` reaches who holds one."""
        self.held_workers = tuple(slot for slot in self.workers if not slot.vacant)

    # ------------------------------------------------------------ the decision

    def destination(self, num: int, from_cluster: bool = False) -> Destination:
        """Where signal ``num`` goes now (see the module docstring)."""
        entry = self.table.get(num)
        if entry is None:
            waiter = self._waiter_for(num)
            return Hold() if waiter is None else ToWaiter(waiter)
        fixed = self._fixed[num]
        if fixed is not None and fixed[0] is entry:
            return fixed[1]
        if entry.target.is_cluster:
            if not from_cluster:
                return ToCluster(entry.target.kind)
            if entry.owner is None:
                return self._target_destination(_HERE)
        if entry.owner is not None:
            destination: Destination = ToSlots((self._by_key[entry.owner],))
        elif entry.target.kind in _FIXED_KINDS:
            destination = self._target_destination(entry.target)
        else:
            return self._target_destination(entry.target)
        if not entry.target.is_cluster:
            self._fixed[num] = (entry, destination)
        return destination

    def _target_destination(self, target: Target) -> Destination:
        kind, index = target.kind, target.index
        if kind == "worker":
            return ToSlots((self.workers[index - 1],)) if index else ToQueue(self.worker_queue)
        if kind == "mule":
            return ToSlots((self.mules[index - 1],)) if index else ToQueue(self.mule_queue)
        if kind == "farm":
            return ToQueue(self.farm_queues[self.farm_position(target) - 1])
        if kind == "workers":
            return ToSlots(self.held_workers)
        if kind == "active-workers":
            return ToSlots(tuple(slot for slot in self.workers if slot.pid is not None))
        if kind == "mules":
            return ToSlots(self.mules)
        assert self.spooler is not None, "targets are checked when they are registered"
        return ToSlots((self.spooler,))

    def _waiter_for(self, num: int) -> Peer | None:
        any_waiter = None
        for waiter in self.waiters:
            if waiter.waiting == num:
                return waiter
            if any_waiter is None and waiter.waiting == ANY_SIGNAL:
                any_waiter = waiter
        return any_waiter

    # ------------------------------------------------------------ acting on it

    def route(self, num: int, from_cluster: bool = False) -> None:
        """Send signal ``num`` where it belongs. Every raised signal comes through here
        (``from_cluster``: one the cluster brought to this node)."""
        if self.paused is not None:
            (self.paused_from_cluster if from_cluster else self.paused).append(num)
            return
        destination = self.destination(num, from_cluster)
        if type(destination) is ToQueue:
            destination.queue.outbox.append(num)
            self.touch(destination.queue)
        elif type(destination) is ToSlots:
            for slot in destination.slots:
                slot.run(num)
                self.touch(slot)
        elif type(destination) is ToWaiter:
            self._answer(destination.peer, num)
        elif type(destination) is ToCluster:
            assert self.publish is not None, "cluster targets are checked when registered"
            self.publish(num, destination.scope)
        else:
            self.held.hold(num)

    def route_raises(self, frames: bytes) -> int:
        """Route a read made only of RAISE frames in one step, when they all go one way.

        That is what one ``send()`` or a burst of them looks like, and
        appending the numbers at once costs far less than routing them one by
        one. The destination comes from `destination`, as for one signal.
        Returns how many signals it routed: 0 when the read is anything else.
        """
        count = len(frames) // FRAME_SIZE
        if count == 1:
            if frames[0] != _RAISE or frames[3]:
                return 0  # another frame, or a number past 255 (refused one by one)
            self.route(frames[2])
            return 1
        # Anything else, or a number past 255 (refused one by one), goes frame by frame.
        nums = numbers_if_all(frames, _RAISE) if count > 1 else None
        if nums is None:
            return 0
        if self.paused is not None:
            self.paused += nums
            return count
        destinations = {self.destination(num) for num in set(nums)}
        if len(destinations) != 1:
            return 0
        destination = destinations.pop()
        if type(destination) is ToQueue:
            destination.queue.outbox += nums
            self.touch(destination.queue)
        elif type(destination) is ToSlots:
            runs = b"".join([RUN_FRAMES[num] for num in nums])
            for slot in destination.slots:
                slot.run_frames(runs)
                self.touch(slot)
        else:
            return 0  # waiters and holding change with each signal: one by one
        return count

    def pause(self) -> None:
        """From now on, keep every raised signal undelivered, in order (SIGTSTP)."""
        if self.paused is None:
            self.paused = deque()

    def resume(self) -> int:
        """Deliver what the pause kept, in order; return how many signals that was."""
        kept, self.paused = self.paused, None
        arrived, self.paused_from_cluster = self.paused_from_cluster, []
        for num in kept or ():
            self.route(num)
        for num in arrived:
            self.route(num, from_cluster=True)
        return len(kept or ()) + len(arrived)

    def backlog(self) -> int:
        """Signals kept by a pause: accepted, and not started."""
        if self.paused is None:
            return 0
        return len(self.paused) + len(self.paused_from_cluster)

    def _answer(self, peer: Peer, num: int) -> None:
        self.waiters.remove(peer)
        peer.waiting = None
        peer.deliver(num)
        self.touch(peer)

    # ------------------------------------------------------------ waiting

    def start_waiting(self, peer: Peer, num: int) -> None:
        """``peer`` blocks in wait() for ``num`` (or ANY_SIGNAL)."""
        self.stop_waiting(peer)
        if not peer.in_worker_pool:
            return  # signals with no handler never go to mules or the spooler
        peer.waiting = num
        self.waiters.append(peer)
        held = self.held.take(num)
        if held is not None:
            self._answer(peer, held)

    def stop_waiting(self, peer: Peer) -> None:
        """``peer`` left wait() (or died)."""
        if peer.waiting is not None:
            peer.waiting = None
            self.waiters.remove(peer)

    def registered(self, num: int) -> None:
        """``num`` just got a handler: the held copies of it can be routed now."""
        for _ in range(self.held.take_all(num)):
            self.route(num)
