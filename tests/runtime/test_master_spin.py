"""After a pass that read frames, the master serves its rings alone for a moment
(`Master._serve_rings`): until they are quiet for SPIN_AFTER_WORK_NS, and never
longer than SPIN_LIMIT_NS, so its other inputs wait no longer than that.

A real master (not started: no child is forked), its clock faked.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from uwsgisig.runtime.ipc.rings import Rings
from uwsgisig.runtime.master import loop
from uwsgisig.runtime.master.loop import SPIN_AFTER_WORK_NS, SPIN_LIMIT_NS, Master
from uwsgisig.runtime.model.config import RuntimeConfig
from uwsgisig.runtime.model.table import SignalTable
from uwsgisig.runtime.model.targets import Target
from uwsgisig.runtime.wire.frames import RAISE_FRAMES

pytestmark = pytest.mark.timeout(30)

LOOK_NS = 10_000  # what one look at the rings costs on the fake clock


class FakeTime:
    """The master's ``time``, with a ``perf_counter_ns`` that moves only when told."""

    def __init__(self) -> None:
        self.now = 0

    def perf_counter_ns(self) -> int:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(loop, "time", fake)
    monkeypatch.setattr(loop.os, "sched_yield", lambda: setattr(fake, "now", fake.now + LOOK_NS))
    return fake


@pytest.fixture
def master() -> Iterator[Master]:
    table = SignalTable()
    table.register(7, Target("worker"), None)
    controller, handle_end = socket.socketpair()
    made = Master(
        RuntimeConfig(workers=2),
        table,
        hooks=[],
        child_main=lambda spec: 0,
        controller=controller,
        controller_rings=Rings(1),
    )
    yield made
    controller.close()
    handle_end.close()
    made.worker_queue.close()


def feed(master: Master, clock: FakeTime, frames_at: set[int]) -> list[int]:
    """Make the handle's ring hold a RAISE at each look whose time is in ``frames_at``;
    return the times at which the master read the rings and found frames."""
    ring = master.controller.ring  # type: ignore[union-attr]
    head = ring.head
    read_at: list[int] = []
    real_read = master._read_rings

    def read_rings() -> bool:
        nonlocal head
        if clock.now in frames_at:
            ring.publish(head, RAISE_FRAMES[7])
            head += 8
        found = real_read()
        if found:
            read_at.append(clock.now)
        clock.now += LOOK_NS
        return found

    master._read_rings = read_rings  # type: ignore[method-assign]
    return read_at


def test_it_serves_the_rings_until_they_are_quiet_then_lets_the_pass_go_on(master, clock):
    frames_at = {0, 50_000, 120_000}
    read_at = feed(master, clock, frames_at)
    master._rings_were_busy = True
    master._serve_rings()
    assert read_at == sorted(frames_at)
    assert clock.now >= 120_000 + SPIN_AFTER_WORK_NS  # quiet for that long after the last
    assert clock.now < 120_000 + SPIN_AFTER_WORK_NS + 3 * LOOK_NS
    assert not master._rings_were_busy  # the next pass may sleep
    assert master.worker_queue.backlog() == 3  # each was routed and written at once


def test_rings_that_never_go_quiet_hold_the_master_no_longer_than_the_limit(master, clock):
    read_at = feed(master, clock, set(range(0, 10 * SPIN_LIMIT_NS, LOOK_NS)))
    master._rings_were_busy = True
    master._serve_rings()
    assert SPIN_LIMIT_NS <= clock.now <= SPIN_LIMIT_NS + 2 * LOOK_NS
    assert len(read_at) == SPIN_LIMIT_NS // LOOK_NS
    assert master._rings_were_busy  # still busy: the pass after the next one comes back
