"""A shared signal queue end to end in one process: the master's `SharedQueue`
writes, `SignalLoop`s read, over real sockets and real epolls.

A lone signal goes to the ``single`` socket, watched with ``EPOLLEXCLUSIVE``
(it wakes one idle reader), and a burst to the ``burst`` socket, watched
plainly (it wakes them all). Here the readers poll in turn, so every case is
an event, never a race.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from uwsgisig.runtime.child.loop import SignalLoop
from uwsgisig.runtime.ipc.link import MasterLink
from uwsgisig.runtime.master.peers import SharedQueue
from uwsgisig.runtime.model.table import SignalTable
from uwsgisig.runtime.model.targets import Target

pytestmark = pytest.mark.timeout(30)


class Reader:
    """A worker's loop reading a queue; its handlers append to ``ran``."""

    def __init__(self, queue: SharedQueue) -> None:
        self.ran: list[int] = []
        table = SignalTable()
        for num in range(1, 10):
            table.register(num, Target("worker"), self.ran.append)
        self.master_end, child_end = socket.socketpair()
        self.loop = SignalLoop(MasterLink(child_end, send_timeout=5), [queue.read_ends], table)

    def take(self, timeout: float = 5.0) -> int | None:
        """Run the next signal of the queue; None if none came within ``timeout``."""
        incoming = self.loop.next(timeout, self.loop._signals)
        if incoming is None:
            return None
        return self.loop.handle(*incoming)  # type: ignore[misc]

    def close(self) -> None:
        self.loop.link.close()
        self.master_end.close()


@pytest.fixture
def queue() -> Iterator[SharedQueue]:
    made = SharedQueue("workers", readers=2)
    yield made
    made.close()


@pytest.fixture
def readers(queue: SharedQueue) -> Iterator[tuple[Reader, Reader]]:
    made = (Reader(queue), Reader(queue))
    yield made
    for reader in made:
        reader.close()


def raise_(queue: SharedQueue, *nums: int) -> None:
    """What one flush of the master writes."""
    queue.outbox += bytes(nums)
    queue.write()


def test_lone_signals_and_bursts_are_each_taken_once(queue, readers):
    first, second = readers
    raise_(queue, 1)
    raise_(queue, 2, 3)
    raise_(queue, 4)
    taken = [first.take(), second.take(), first.take(), second.take()]
    assert sorted(taken) == [1, 2, 3, 4]
    assert first.take(0.05) is None
    assert second.take(0.05) is None
    assert queue.backlog() == 0


def test_a_lone_signal_written_while_nobody_waits_is_found_by_the_next_reader(queue, readers):
    # Neither reader waits when it is written: the exclusive wake finds no
    # waiter and marks the socket for every reader, and each finds it ready
    # the next time it looks.
    first, second = readers
    for num in (1, 2):
        raise_(queue, num)
    assert second.take() == 1
    assert first.take() == 2
    assert first.take(0.05) is None


def test_one_reader_takes_a_queue_made_for_one_in_the_order_raised():
    queue = SharedQueue("mules", readers=1)
    reader = Reader(queue)
    try:
        raise_(queue, 1)
        raise_(queue, 2, 3)
        raise_(queue, 4)
        assert [reader.take() for _ in range(4)] == [1, 2, 3, 4]
    finally:
        reader.close()
        queue.close()
