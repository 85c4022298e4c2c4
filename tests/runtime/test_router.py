"""Router: one routing decision per signal, the same for single signals and bursts.

Built on real slots and shared queues (socketpairs, no fork); a slot with a
``pid`` stands for a process that exists. The rules under test are the ones in
``uwsgisig/runtime/master/router.py``'s module docstring.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uwsgisig.runtime.ipc.progress import Progress
from uwsgisig.runtime.master.peers import Peer, SharedQueue, Slot
from uwsgisig.runtime.master.router import Hold, Router, ToQueue, ToSlots, ToWaiter
from uwsgisig.runtime.model.table import SignalTable
from uwsgisig.runtime.model.targets import Target, parse_target
from uwsgisig.runtime.wire.frames import (
    ANY_SIGNAL,
    DELIVER_FRAMES,
    RAISE_FRAMES,
    RUN_FRAMES,
    Op,
    Role,
    pack,
)

pytestmark = pytest.mark.timeout(30)

FARMS = ("alpha", "beta")


class World:
    """A master's peers and queues, wired to a Router as the master wires them."""

    def __init__(self, *, workers: int = 3, mules: int = 2, spooler: bool = True) -> None:
        count = workers + mules + (1 if spooler else 0)
        self.progress = Progress(count)
        cells = iter(range(count))
        self.workers = [
            Slot(Role.WORKER, i, self.progress.cell(next(cells))) for i in range(1, workers + 1)
        ]
        self.mules = [
            Slot(Role.MULE, i, self.progress.cell(next(cells))) for i in range(1, mules + 1)
        ]
        self.spooler = Slot(Role.SPOOLER, 0, self.progress.cell(next(cells))) if spooler else None
        self.worker_queue = SharedQueue("workers")
        self.mule_queue = SharedQueue("mules")
        self.farm_queues = [SharedQueue(f"farm {name}") for name in FARMS]
        self.controller_ends = socket.socketpair()
        self.controller = Peer(self.controller_ends[0])
        self.table = SignalTable()
        self.touched: set[Peer | SharedQueue] = set()
        self.router = Router(
            self.table,
            workers=self.workers,
            mules=self.mules,
            spooler=self.spooler,
            worker_queue=self.worker_queue,
            mule_queue=self.mule_queue,
            farm_queues=self.farm_queues,
            farm_position=self.farm_position,
            touch=self.touched.add,
        )

    def farm_position(self, target: Target) -> int:
        """As the master counts farms: 1-based, by name or by number (0 if none)."""
        if target.name:
            return FARMS.index(target.name) + 1 if target.name in FARMS else 0
        return target.index if target.index <= len(FARMS) else 0

    @property
    def slots(self) -> list[Slot]:
        return [*self.workers, *self.mules, *([self.spooler] if self.spooler else [])]

    @property
    def peers(self) -> list[Peer]:
        return [*self.slots, self.controller]

    @property
    def queues(self) -> list[SharedQueue]:
        return [self.worker_queue, self.mule_queue, *self.farm_queues]

    def label(self, owner: Peer | SharedQueue) -> str:
        if isinstance(owner, SharedQueue):
            return f"queue {owner.name}"
        return owner.describe()

    def register(self, num: int, target: str, owner: Slot | None = None) -> None:
        self.table.register(
            num, parse_target(target), None, owner=owner.key if owner is not None else None
        )

    def state(self) -> dict[str, object]:
        """Everything routing may change, by label, comparable across two worlds."""
        return {
            "outboxes": {self.label(p): bytes(p.outbox) for p in self.peers},
            "sent": {self.label(s): bytes(s.sent) for s in self.slots},
            "queues": {self.label(q): bytes(q.outbox) for q in self.queues},
            "waiting": {self.label(p): p.waiting for p in self.peers},
            "waiters": [self.label(p) for p in self.router.waiters],
            "held": len(self.router.held),
            "touched": sorted(self.label(o) for o in self.touched),
        }

    def held_signals(self) -> list[int]:
        """Empty the held store, oldest first (destructive: call last)."""
        taken = []
        while (num := self.router.held.take(ANY_SIGNAL)) is not None:
            taken.append(num)
        return taken

    def close(self) -> None:
        for slot in self.slots:
            slot.sock.close()
            slot.child_end.close()
        for queue in self.queues:
            queue.close()
        for end in self.controller_ends:
            end.close()


@contextmanager
def world() -> Iterator[World]:
    made = World()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def w() -> Iterator[World]:
    with world() as made:
        yield made


# ---------------------------------------------------------------- registered targets

Expect = Callable[[World], ToQueue | ToSlots]

TARGET_RULES: list[tuple[str, Expect]] = [
    ("worker", lambda w: ToQueue(w.worker_queue)),
    ("worker0", lambda w: ToQueue(w.worker_queue)),
    ("worker1", lambda w: ToSlots((w.workers[0],))),
    ("worker3", lambda w: ToSlots((w.workers[2],))),
    ("workers", lambda w: ToSlots(tuple(w.workers))),
    ("mule", lambda w: ToQueue(w.mule_queue)),
    ("mule0", lambda w: ToQueue(w.mule_queue)),
    ("mule2", lambda w: ToSlots((w.mules[1],))),
    ("mules", lambda w: ToSlots(tuple(w.mules))),
    ("farm_alpha", lambda w: ToQueue(w.farm_queues[0])),
    ("farm_beta", lambda w: ToQueue(w.farm_queues[1])),
    ("farm1", lambda w: ToQueue(w.farm_queues[0])),
    ("farm2", lambda w: ToQueue(w.farm_queues[1])),
    ("spooler", lambda w: ToSlots(tuple(w.slots[-1:]))),
]


@pytest.mark.parametrize(("target", "expect"), TARGET_RULES, ids=[t for t, _ in TARGET_RULES])
def test_a_registered_signal_goes_where_its_target_says(
    w: World, target: str, expect: Expect
) -> None:
    w.register(7, target)
    assert w.router.destination(7) == expect(w)


@pytest.mark.parametrize(("target", "expect"), TARGET_RULES, ids=[t for t, _ in TARGET_RULES])
def test_routing_a_registered_signal_queues_it_for_its_destination_only(
    w: World, target: str, expect: Expect
) -> None:
    w.register(7, target)
    w.router.route(7)
    destination = expect(w)
    if isinstance(destination, ToQueue):
        assert w.touched == {destination.queue}
        for queue in w.queues:
            assert bytes(queue.outbox) == (b"\x07" if queue is destination.queue else b"")
        assert all(not peer.outbox for peer in w.peers)
    else:
        assert w.touched == set(destination.slots)
        for slot in w.slots:
            expected = RUN_FRAMES[7] if slot in destination.slots else b""
            assert bytes(slot.outbox) == expected
            assert bytes(slot.sent) == expected
        assert all(not queue.outbox for queue in w.queues)
    assert len(w.router.held) == 0


def test_active_workers_are_the_workers_with_a_process_a_starting_one_included(
    w: World,
) -> None:
    w.workers[0].pid, w.workers[0].ready = 101, True
    w.workers[2].pid, w.workers[2].ready = 103, False  # forked, still starting
    w.register(9, "active-workers")
    assert w.router.destination(9) == ToSlots((w.workers[0], w.workers[2]))
    w.router.route(9)
    assert bytes(w.workers[0].outbox) == RUN_FRAMES[9]
    assert bytes(w.workers[1].outbox) == b""
    assert bytes(w.workers[2].outbox) == RUN_FRAMES[9]
    assert w.touched == {w.workers[0], w.workers[2]}


def test_active_workers_follow_processes_as_they_come_and_go(w: World) -> None:
    w.register(9, "active-workers")
    w.workers[1].pid = 202
    assert w.router.destination(9) == ToSlots((w.workers[1],))
    w.workers[1].pid = None
    w.workers[0].pid = 301
    assert w.router.destination(9) == ToSlots((w.workers[0],))


OWNER_CASES = [
    ("worker", lambda w: w.workers[1]),
    ("workers", lambda w: w.workers[2]),
    ("mules", lambda w: w.mules[0]),
    ("mule1", lambda w: w.mules[1]),
    ("farm_alpha", lambda w: w.mules[1]),
    ("spooler", lambda w: w.workers[0]),
    ("worker2", lambda w: w.spooler),
]


@pytest.mark.parametrize(("target", "owner"), OWNER_CASES, ids=[t for t, _ in OWNER_CASES])
def test_a_handler_registered_after_fork_goes_to_its_owner_whatever_the_target(
    w: World, target: str, owner: Callable[[World], Slot]
) -> None:
    slot = owner(w)
    w.register(11, target, owner=slot)
    assert w.router.destination(11) == ToSlots((slot,))
    w.router.route(11)
    assert bytes(slot.outbox) == RUN_FRAMES[11]
    assert w.touched == {slot}
    assert all(not queue.outbox for queue in w.queues)


def test_a_new_entry_for_a_number_is_routed_by_its_own_target(w: World) -> None:
    # Destinations of fixed targets are decided once per entry, not once per number.
    w.register(11, "worker")
    assert w.router.destination(11) == ToQueue(w.worker_queue)
    w.table.clear()
    w.register(11, "mule2")
    assert w.router.destination(11) == ToSlots((w.mules[1],))
    w.table.clear()
    w.register(11, "worker", owner=w.workers[2])
    assert w.router.destination(11) == ToSlots((w.workers[2],))
    w.table.clear()
    assert w.router.destination(11) == Hold()


def test_an_owned_handler_ignores_every_waiter(w: World) -> None:
    w.register(11, "worker", owner=w.mules[0])
    w.router.start_waiting(w.workers[0], 11)
    w.router.start_waiting(w.controller, ANY_SIGNAL)
    w.router.route(11)
    assert bytes(w.mules[0].outbox) == RUN_FRAMES[11]
    assert w.router.waiters == [w.workers[0], w.controller]
    assert not w.workers[0].outbox
    assert not w.controller.outbox


# ---------------------------------------------------------------- signals with no handler


def test_an_unregistered_signal_with_no_waiter_is_held(w: World) -> None:
    assert w.router.destination(5) == Hold()
    w.router.route(5)
    assert len(w.router.held) == 1
    assert w.touched == set()
    assert all(not peer.outbox for peer in w.peers)
    assert all(not queue.outbox for queue in w.queues)


def test_a_waiter_for_that_number_comes_before_an_older_any_waiter(w: World) -> None:
    w.router.start_waiting(w.workers[0], ANY_SIGNAL)
    w.router.start_waiting(w.workers[1], 5)
    assert w.router.destination(5) == ToWaiter(w.workers[1])


def test_any_waiters_are_answered_oldest_first(w: World) -> None:
    w.router.start_waiting(w.workers[2], ANY_SIGNAL)
    w.router.start_waiting(w.controller, ANY_SIGNAL)
    w.router.start_waiting(w.workers[0], ANY_SIGNAL)
    answered = []
    for num in (1, 2, 3):
        destination = w.router.destination(num)
        assert isinstance(destination, ToWaiter)
        answered.append(destination.peer)
        w.router.route(num)
    assert answered == [w.workers[2], w.controller, w.workers[0]]
    assert w.router.waiters == []


def test_waiters_for_the_same_number_are_answered_oldest_first(w: World) -> None:
    w.router.start_waiting(w.workers[1], 5)
    w.router.start_waiting(w.workers[0], 5)
    w.router.route(5)
    assert bytes(w.workers[1].outbox) == DELIVER_FRAMES[5]
    assert not w.workers[0].outbox
    assert w.router.waiters == [w.workers[0]]


def test_a_waiter_for_another_number_does_not_take_the_signal(w: World) -> None:
    w.router.start_waiting(w.workers[0], 6)
    assert w.router.destination(5) == Hold()
    w.router.route(5)
    assert len(w.router.held) == 1
    assert w.router.waiters == [w.workers[0]]


@pytest.mark.parametrize(
    "waiter",
    [lambda w: w.workers[1], lambda w: w.controller],
    ids=["worker", "controller"],
)
def test_answering_a_waiter_queues_a_deliver_frame_and_ends_its_wait(
    w: World, waiter: Callable[[World], Peer]
) -> None:
    peer = waiter(w)
    w.router.start_waiting(peer, ANY_SIGNAL)
    w.router.route(5)
    assert bytes(peer.outbox) == DELIVER_FRAMES[5]
    if isinstance(peer, Slot):
        assert bytes(peer.sent) == DELIVER_FRAMES[5]
    assert peer.waiting is None
    assert w.router.waiters == []
    assert w.touched == {peer}
    assert len(w.router.held) == 0


@pytest.mark.parametrize(
    "outsider",
    [lambda w: w.mules[0], lambda w: w.mules[1], lambda w: w.spooler],
    ids=["mule1", "mule2", "spooler"],
)
def test_mules_and_the_spooler_never_wait_for_unregistered_signals(
    w: World, outsider: Callable[[World], Slot]
) -> None:
    slot = outsider(w)
    w.router.start_waiting(slot, 5)
    w.router.start_waiting(slot, ANY_SIGNAL)
    assert slot.waiting is None
    assert w.router.waiters == []
    w.router.route(5)
    assert not slot.outbox
    assert len(w.router.held) == 1


def test_an_outsider_waiting_does_not_take_a_held_signal(w: World) -> None:
    w.router.route(5)
    w.router.start_waiting(w.mules[0], ANY_SIGNAL)
    assert not w.mules[0].outbox
    assert len(w.router.held) == 1


def test_start_waiting_takes_a_held_signal_at_once(w: World) -> None:
    w.router.route(5)
    w.router.start_waiting(w.workers[0], 5)
    assert bytes(w.workers[0].outbox) == DELIVER_FRAMES[5]
    assert bytes(w.workers[0].sent) == DELIVER_FRAMES[5]
    assert w.workers[0].waiting is None
    assert w.router.waiters == []
    assert w.touched == {w.workers[0]}
    assert len(w.router.held) == 0


def test_a_bare_wait_takes_the_oldest_held_signal(w: World) -> None:
    for num in (8, 5, 8):
        w.router.route(num)
    w.router.start_waiting(w.controller, ANY_SIGNAL)
    assert bytes(w.controller.outbox) == DELIVER_FRAMES[8]
    assert w.held_signals() == [5, 8]


def test_a_wait_for_one_number_leaves_other_held_signals(w: World) -> None:
    w.router.route(4)
    w.router.start_waiting(w.workers[0], 6)
    assert not w.workers[0].outbox
    assert w.router.waiters == [w.workers[0]]
    assert len(w.router.held) == 1


def test_a_registered_number_never_goes_to_a_waiter_even_one_waiting_for_it(w: World) -> None:
    w.register(9, "worker3")
    w.router.start_waiting(w.workers[0], 9)
    w.router.start_waiting(w.controller, ANY_SIGNAL)
    assert w.router.destination(9) == ToSlots((w.workers[2],))
    w.router.route(9)
    assert bytes(w.workers[2].outbox) == RUN_FRAMES[9]
    assert not w.workers[0].outbox
    assert not w.controller.outbox
    assert w.router.waiters == [w.workers[0], w.controller]
    assert w.workers[0].waiting == 9


def test_stop_waiting_takes_a_peer_out_of_the_waiters(w: World) -> None:
    w.router.start_waiting(w.workers[0], ANY_SIGNAL)
    w.router.stop_waiting(w.workers[0])
    assert w.workers[0].waiting is None
    assert w.router.waiters == []
    w.router.stop_waiting(w.workers[0])  # not waiting: nothing to do
    assert w.router.destination(5) == Hold()


def test_waiting_again_replaces_the_previous_wait(w: World) -> None:
    w.router.start_waiting(w.workers[0], 5)
    w.router.start_waiting(w.controller, ANY_SIGNAL)
    w.router.start_waiting(w.workers[0], ANY_SIGNAL)
    assert w.router.waiters == [w.controller, w.workers[0]]
    assert w.workers[0].waiting == ANY_SIGNAL
    assert w.router.destination(5) == ToWaiter(w.controller)


def test_registering_a_number_routes_its_held_copies_to_the_new_target(w: World) -> None:
    for num in (5, 6, 5, 5):
        w.router.route(num)
    w.register(5, "mules")
    w.router.registered(5)
    for mule in w.mules:
        assert bytes(mule.outbox) == RUN_FRAMES[5] * 3
        assert bytes(mule.sent) == RUN_FRAMES[5] * 3
    assert w.touched == set(w.mules)
    assert w.held_signals() == [6]


def test_registering_a_number_with_nothing_held_routes_nothing(w: World) -> None:
    w.register(5, "worker")
    w.router.registered(5)
    assert w.touched == set()
    assert not w.worker_queue.outbox


# ---------------------------------------------------------------- bursts


def raises(nums: list[int]) -> bytes:
    return b"".join(RAISE_FRAMES[num] for num in nums)


def test_a_burst_for_one_queue_is_routed_in_one_step(w: World) -> None:
    w.register(1, "worker")
    w.register(2, "worker0")
    assert w.router.route_raises(raises([1, 2, 1, 1])) == 4
    assert bytes(w.worker_queue.outbox) == bytes([1, 2, 1, 1])
    assert w.touched == {w.worker_queue}


def test_a_burst_for_a_group_gives_every_member_every_signal_in_order(w: World) -> None:
    w.register(3, "workers")
    w.register(4, "workers")
    assert w.router.route_raises(raises([3, 4, 3])) == 3
    expected = RUN_FRAMES[3] + RUN_FRAMES[4] + RUN_FRAMES[3]
    for worker in w.workers:
        assert bytes(worker.outbox) == expected
        assert bytes(worker.sent) == expected
    assert w.touched == set(w.workers)


def test_a_burst_to_mixed_destinations_is_left_to_single_routing(w: World) -> None:
    w.register(1, "worker")
    w.register(2, "mule")
    before = w.state()
    assert w.router.route_raises(raises([1, 2, 1])) == 0
    assert w.state() == before


@pytest.mark.parametrize(
    "frames",
    [
        b"",
        pack(Op.WAIT, ANY_SIGNAL),
        pack(Op.RAISE, 300),
        raises([1]) + pack(Op.WAIT, ANY_SIGNAL) + raises([1]),
        pack(Op.UNWAIT) + raises([1, 1]),
    ],
    ids=["empty", "one-other-frame", "one-number-past-255", "wait-inside", "unwait-first"],
)
def test_a_read_that_is_not_a_burst_of_raises_is_left_alone(w: World, frames: bytes) -> None:
    w.register(1, "worker")
    before = w.state()
    assert w.router.route_raises(frames) == 0
    assert w.state() == before


def test_a_read_of_one_raise_is_routed_as_route_would(w: World) -> None:
    w.register(1, "worker")
    assert w.router.route_raises(raises([1])) == 1
    assert bytes(w.worker_queue.outbox) == bytes([1])
    assert w.touched == {w.worker_queue}


def test_a_burst_of_unregistered_signals_is_left_to_single_routing(w: World) -> None:
    before = w.state()
    assert w.router.route_raises(raises([5, 5, 5])) == 0
    assert w.state() == before
    w.router.start_waiting(w.controller, ANY_SIGNAL)
    before = w.state()
    assert w.router.route_raises(raises([6, 6])) == 0
    assert w.state() == before


# Every way a number can be set up: unregistered, a target, or a handler owned by a slot.
SETUPS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "worker",
            "worker0",
            "worker2",
            "workers",
            "active-workers",
            "mule",
            "mule1",
            "mules",
            "farm_alpha",
            "farm2",
            "spooler",
        ]
    ),
    st.tuples(st.sampled_from(["worker", "workers", "mule"]), st.integers(0, 5)),
)


def configure(
    w: World,
    setups: list[str | tuple[str, int] | None],
    pids: list[bool],
    waits: list[int | None],
    held: list[int],
) -> None:
    for worker, present in zip(w.workers, pids, strict=True):
        worker.pid = 1000 + worker.id if present else None
    for num in held:
        w.router.route(num)
    for num, setup in enumerate(setups, start=1):
        if isinstance(setup, str):
            w.register(num, setup)
        elif isinstance(setup, tuple):
            target, owner = setup
            w.register(num, target, owner=w.slots[owner])
    pool: list[Peer] = [*w.workers, w.controller]
    for peer, wait in zip(pool, waits, strict=True):
        if wait is not None:
            w.router.start_waiting(peer, wait)
    w.touched.clear()


@settings(max_examples=300, deadline=None)
@given(
    pool=st.lists(SETUPS, min_size=1, max_size=3),
    data=st.data(),
    pids=st.lists(st.booleans(), min_size=3, max_size=3),
    waits=st.lists(
        st.one_of(st.none(), st.just(ANY_SIGNAL), st.integers(1, 4)), min_size=4, max_size=4
    ),
    held=st.lists(st.integers(1, 4), max_size=3),
    nums=st.lists(st.integers(1, 4), min_size=1, max_size=12),
)
def test_route_raises_routes_as_routing_one_by_one_would(
    pool: list[str | tuple[str, int] | None],
    data: st.DataObject,
    pids: list[bool],
    waits: list[int | None],
    held: list[int],
    nums: list[int],
) -> None:
    # Numbers 1-4 share a few setups, so bursts often go one way.
    setups = [data.draw(st.sampled_from(pool), label=f"setup of {num}") for num in range(1, 5)]
    with world() as bursting, world() as single:
        for made in (bursting, single):
            configure(made, setups, pids, waits, held)
        before = bursting.state()
        routed = bursting.router.route_raises(raises(nums))
        if routed == 0:
            assert bursting.state() == before
            for num in nums:  # what the master does next: frame by frame
                bursting.router.route(num)
        else:
            assert routed == len(nums)
        for num in nums:
            single.router.route(num)
        assert bursting.state() == single.state()
        assert bursting.held_signals() == single.held_signals()


@settings(max_examples=50, deadline=None)
@given(
    target=st.sampled_from(["worker", "workers", "mule2", "mules", "farm1", "spooler"]),
    nums=st.lists(st.sampled_from([1, 2, 3]), min_size=2, max_size=20),
)
def test_a_burst_whose_numbers_share_a_target_is_routed_in_one_step(
    target: str, nums: list[int]
) -> None:
    with world() as made:
        for num in (1, 2, 3):
            made.register(num, target)
        assert made.router.route_raises(raises(nums)) == len(nums)


# ---------------------------------------------------------------- the cluster


def test_a_cluster_target_goes_to_the_cluster_and_comes_back_to_a_worker(w):
    published: list[tuple[int, str]] = []
    w.router.publish = lambda num, scope: published.append((num, scope))
    w.register(5, "cluster")
    w.register(6, "subscribed")
    w.register(7, "workers")
    w.router.route(5)
    w.router.route(6)
    assert published == [(5, "cluster"), (6, "subscribed")]
    assert bytes(w.worker_queue.outbox) == b""
    # Back from the cluster, never out again: the first available worker runs it...
    w.router.route(5, from_cluster=True)
    assert bytes(w.worker_queue.outbox) == bytes([5])
    # ...and a local target is routed as here.
    w.router.route(7, from_cluster=True)
    assert all(bytes(slot.outbox) == RUN_FRAMES[7] for slot in w.workers)
    assert published == [(5, "cluster"), (6, "subscribed")]


def test_a_pause_keeps_what_the_cluster_brings_too(w):
    published: list[tuple[int, str]] = []
    w.router.publish = lambda num, scope: published.append((num, scope))
    w.register(5, "cluster")
    w.router.pause()
    w.router.route(5)  # raised here: to the cluster, after the pause
    w.router.route(5, from_cluster=True)  # from the cluster: to a worker, after the pause
    assert (published, bytes(w.worker_queue.outbox), w.router.backlog()) == ([], b"", 2)
    assert w.router.resume() == 2
    assert published == [(5, "cluster")]
    assert bytes(w.worker_queue.outbox) == bytes([5])


def test_a_cluster_handler_registered_after_fork_runs_in_its_owner_when_it_comes_back(w):
    published: list[tuple[int, str]] = []
    w.router.publish = lambda num, scope: published.append((num, scope))
    w.register(5, "cluster", owner=w.workers[1])
    w.router.route(5)
    assert published == [(5, "cluster")]
    w.router.route(5, from_cluster=True)
    assert bytes(w.workers[1].outbox) == RUN_FRAMES[5]
    assert bytes(w.worker_queue.outbox) == b""
