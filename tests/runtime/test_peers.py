"""The master's ends of the sockets: a slot's recovery after its child died, backlogs.

Frames "written" here go into ``slot.sock`` (the master's end), so they sit
unread in the child end's socket buffer, as frames do when a child dies
before reading them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uwsgisig.runtime.ipc.progress import Progress
from uwsgisig.runtime.master.peers import Peer, SharedQueue, Slot
from uwsgisig.runtime.wire.frames import (
    DELIVER_FRAMES,
    FRAME_SIZE,
    RUN_FRAMES,
    FrameReader,
    Op,
    Role,
    pack,
)

pytestmark = pytest.mark.timeout(30)


def make_slot(role: Role = Role.WORKER, ident: int = 1) -> Slot:
    return Slot(role, ident, Progress(1).cell(0))


def close_slot(slot: Slot) -> None:
    slot.sock.close()
    slot.child_end.close()


@pytest.fixture
def slot() -> Iterator[Slot]:
    made = make_slot()
    yield made
    close_slot(made)


@pytest.fixture
def queue() -> Iterator[SharedQueue]:
    made = SharedQueue("workers")
    yield made
    made.close()


def write(slot: Slot, size: int) -> None:
    """Write the first ``size`` bytes of the outbox, as the master's flush does."""
    sent = slot.sock.send(slot.outbox[:size])
    assert sent == size
    del slot.outbox[:sent]


def child_end_is_empty(slot: Slot) -> bool:
    try:
        slot.child_end.recv(1, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    return False


def start(slot: Slot, count: int) -> None:
    for _ in range(count):
        slot.progress.started_word[0] += 1  # as the child's link does


# A signal frame is ("run", num) or ("deliver", num); anything else is a frame that is no signal.
Queued = tuple[str, int]


def queue_frames(slot: Slot, frames: list[Queued]) -> list[Queued]:
    """Queue ``frames``; return the signal frames among them, in order."""
    signals = []
    for kind, num in frames:
        if kind == "run":
            slot.run(num)
        elif kind == "deliver":
            slot.deliver(num)
        else:
            slot.put(Op.CREDIT, value=num)
            continue
        signals.append((kind, num))
    return signals


MIXED: list[Queued] = [
    ("run", 1),
    ("credit", 100),
    ("deliver", 2),
    ("run", 3),
    ("deliver", 4),
    ("credit", 5),
    ("run", 5),
]


@pytest.mark.parametrize("started", range(6))
@pytest.mark.parametrize("written", [0, 1, 3, 5, 7], ids=lambda n: f"{n}-frames-written")
def test_recover_requeues_runs_not_started_and_returns_delivers_not_started(
    slot: Slot, started: int, written: int
) -> None:
    signals = queue_frames(slot, MIXED)
    write(slot, written * FRAME_SIZE)
    start(slot, started)
    lost = slot.recover()
    rest = signals[started:]
    runs = b"".join(RUN_FRAMES[num] for kind, num in rest if kind == "run")
    assert lost == [num for kind, num in rest if kind == "deliver"]
    assert bytes(slot.outbox) == runs
    assert bytes(slot.sent) == runs
    assert child_end_is_empty(slot)


def test_recover_drops_a_partial_frame_in_the_socket_and_its_rest_in_the_outbox(
    slot: Slot,
) -> None:
    slot.run(1)
    slot.run(2)
    write(slot, FRAME_SIZE + 3)
    assert slot.recover() == []
    assert bytes(slot.outbox) == RUN_FRAMES[1] + RUN_FRAMES[2]
    assert child_end_is_empty(slot)


def test_recover_forgets_what_the_dead_child_was_doing(slot: Slot) -> None:
    slot.waiting = 7
    slot.payload += b"half a request"
    list(slot.reader.feed(pack(Op.RAISE, 1)[:5]))  # a frame cut in two
    slot.put(Op.REGISTERED, 3)
    slot.put(Op.RELOAD)
    assert slot.recover() == []
    assert slot.waiting is None
    assert slot.payload == b""
    assert list(slot.reader.feed(pack(Op.RAISE, 9))) == [(Op.RAISE, 0, 9, 0)]
    assert slot.outbox == b""
    assert slot.sent == b""


def test_after_recover_the_replacement_trims_the_requeued_frames_as_it_starts_them(
    slot: Slot,
) -> None:
    for num in (1, 2, 3):
        slot.run(num)
    start(slot, 1)
    slot.recover()
    assert slot.backlog() == 2
    start(slot, 1)  # the new child took the first requeued frame
    assert slot.backlog() == 1
    assert bytes(slot.sent) == RUN_FRAMES[3]
    slot.run(4)
    assert slot.backlog() == 2


def test_recover_twice_in_a_row_requeues_the_same_runs(slot: Slot) -> None:
    slot.run(1)
    slot.deliver(2)
    slot.run(3)
    write(slot, 2 * FRAME_SIZE)
    assert slot.recover() == [2]
    write(slot, FRAME_SIZE)
    assert slot.recover() == []
    assert bytes(slot.outbox) == RUN_FRAMES[1] + RUN_FRAMES[3]
    assert child_end_is_empty(slot)


frame_lists = st.lists(
    st.tuples(st.sampled_from(["run", "deliver", "credit"]), st.integers(0, 255)),
    max_size=30,
)


@settings(max_examples=100, deadline=None)
@given(frames=frame_lists, data=st.data())
def test_recover_keeps_exactly_the_signal_frames_not_started(
    frames: list[Queued], data: st.DataObject
) -> None:
    slot = make_slot()
    try:
        signals = queue_frames(slot, frames)
        written = data.draw(st.integers(0, len(slot.outbox)), label="bytes written")
        write(slot, written)
        started = data.draw(st.integers(0, len(signals)), label="started")
        start(slot, started)
        assert slot.backlog() == len(signals) - started
        lost = slot.recover()
        rest = signals[started:]
        assert lost == [num for kind, num in rest if kind == "deliver"]
        runs = b"".join(RUN_FRAMES[num] for kind, num in rest if kind == "run")
        assert bytes(slot.outbox) == runs
        assert bytes(slot.sent) == runs
        assert child_end_is_empty(slot)
    finally:
        close_slot(slot)


def test_slot_backlog_counts_signal_frames_not_started_wherever_they_are(slot: Slot) -> None:
    slot.run(1)
    slot.deliver(2)
    slot.put(Op.CREDIT, value=9)  # not a signal
    slot.run(3)
    slot.run(4)
    assert slot.backlog() == 4
    write(slot, 3 * FRAME_SIZE)  # in the socket now: still not started
    assert slot.backlog() == 4
    start(slot, 3)
    assert slot.backlog() == 1
    assert bytes(slot.sent) == RUN_FRAMES[4]
    start(slot, 1)
    assert slot.backlog() == 0


def test_run_frames_queue_a_burst_like_runs_one_by_one(slot: Slot) -> None:
    burst = RUN_FRAMES[1] + RUN_FRAMES[2] + RUN_FRAMES[1]
    slot.run_frames(burst)
    assert bytes(slot.outbox) == burst
    assert bytes(slot.sent) == burst
    assert slot.backlog() == 3


def test_a_slot_deliver_is_remembered_for_recovery(slot: Slot) -> None:
    slot.deliver(6)
    assert bytes(slot.outbox) == DELIVER_FRAMES[6]
    assert bytes(slot.sent) == DELIVER_FRAMES[6]


def test_the_controller_backlog_is_its_unwritten_frames() -> None:
    ends = socket.socketpair()
    try:
        controller = Peer(ends[0])
        controller.deliver(3)
        controller.put(Op.END)
        assert controller.backlog() == 2
        assert controller.in_worker_pool
        assert controller.describe() == "the controller"
        assert not controller.sock.getblocking()
    finally:
        for end in ends:
            end.close()


@pytest.mark.parametrize(
    ("role", "ident", "name", "in_pool"),
    [
        (Role.WORKER, 2, "worker 2", True),
        (Role.MULE, 1, "mule 1", False),
        (Role.SPOOLER, 0, "spooler", False),
    ],
)
def test_a_slot_names_itself_and_says_whether_it_is_in_the_worker_pool(
    role: Role, ident: int, name: str, in_pool: bool
) -> None:
    slot = make_slot(role, ident)
    try:
        assert slot.describe() == name
        assert slot.in_worker_pool is in_pool
        assert slot.key == (int(role), ident)
        assert slot.pid is None
        assert not slot.ready
    finally:
        close_slot(slot)


def test_shared_queue_backlog_counts_the_outbox(queue: SharedQueue) -> None:
    assert queue.backlog() == 0
    queue.outbox += bytes([1, 2, 3])
    assert queue.backlog() == 3


def test_shared_queue_backlog_counts_written_bytes_no_reader_took(queue: SharedQueue) -> None:
    single, burst = queue.read_ends
    queue.outbox += bytes([4, 5])
    queue.write()
    queue.outbox += bytes([1, 2, 3])
    assert queue.backlog() == 5
    assert burst.recv(1) == b"\x04"  # a reader took one signal
    assert queue.backlog() == 4
    assert burst.recv(1) == b"\x05"
    assert queue.backlog() == 3
    queue.outbox.clear()
    queue.outbox += bytes([6])
    queue.write()  # a lone signal: to the other socket, counted as well
    assert queue.backlog() == 1
    assert single.recv(1) == b"\x06"
    assert queue.backlog() == 0


def test_a_lone_signal_goes_to_the_single_socket(queue: SharedQueue) -> None:
    single, burst = queue.read_ends
    queue.outbox += bytes([7])
    queue.write()
    assert not queue.outbox
    assert single.recv(8) == b"\x07"
    with pytest.raises(BlockingIOError):
        burst.recv(8)


def test_several_signals_go_to_the_burst_socket_in_one_write(queue: SharedQueue) -> None:
    single, burst = queue.read_ends
    queue.outbox += bytes([1, 2, 3])
    queue.write()
    assert not queue.outbox
    assert burst.recv(8) == bytes([1, 2, 3])
    with pytest.raises(BlockingIOError):
        single.recv(8)


def test_a_queue_with_one_reader_writes_everything_to_the_burst_socket() -> None:
    # Nobody else to wake, and one socket keeps the order.
    queue = SharedQueue("mules", readers=1)
    try:
        single, burst = queue.read_ends
        for num in (1, 2, 3):
            queue.outbox += bytes([num])
            queue.write()
        queue.outbox += bytes([4, 5])
        queue.write()
        assert burst.recv(8) == bytes([1, 2, 3, 4, 5])
        with pytest.raises(BlockingIOError):
            single.recv(8)
    finally:
        queue.close()


def test_shared_queue_writes_and_reads_without_blocking(queue: SharedQueue) -> None:
    assert queue.sock is queue.burst.write_end
    assert not queue.single.write_end.getblocking()
    assert not queue.burst.write_end.getblocking()
    for end in queue.read_ends:
        assert not end.getblocking()
        with pytest.raises(BlockingIOError):
            end.recv(1)


def test_frame_reader_is_fresh_after_recover(slot: Slot) -> None:
    old = slot.reader
    slot.recover()
    assert isinstance(slot.reader, FrameReader)
    assert slot.reader is not old
