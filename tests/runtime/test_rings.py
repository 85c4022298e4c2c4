"""The children's rings to the master: order, wrap-around, room, and the bell rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uwsgisig.runtime.ipc.rings import Rings
from uwsgisig.runtime.wire.frames import FRAME_SIZE, RAISE_FRAMES

pytestmark = pytest.mark.timeout(30)


def test_frames_come_out_in_the_order_they_went_in_and_are_consumed():
    ring = Rings(2, size=64).ring(1)
    head = 0
    for num in (1, 2, 3):
        ring.publish(head, RAISE_FRAMES[num])
        head += FRAME_SIZE
    assert ring.pending()
    assert ring.take() == RAISE_FRAMES[1] + RAISE_FRAMES[2] + RAISE_FRAMES[3]
    assert not ring.pending()
    assert ring.take() == b""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 255), min_size=1, max_size=5), max_size=60))
def test_wrapping_around_loses_or_reorders_nothing(batches):
    ring = Rings(1, size=8 * 7).ring(0)  # an odd number of frames: writes split at the end
    head = 0
    sent, received = [], b""
    for batch in batches:
        frames = b"".join(RAISE_FRAMES[num] for num in batch)
        if ring.room(head) < len(frames):
            received += ring.take()
        assert ring.room(head) >= len(frames)
        ring.publish(head, frames)
        head += len(frames)
        sent.append(frames)
    received += ring.take()
    assert received == b"".join(sent)


def test_room_counts_what_the_master_has_not_taken():
    ring = Rings(1, size=32).ring(0)
    assert ring.room(0) == 32
    ring.publish(0, RAISE_FRAMES[1] * 4)
    assert ring.room(32) == 0
    ring.take()
    assert ring.room(32) == 32


def test_a_child_sees_the_master_asleep_only_while_it_sleeps():
    rings = Rings(1, size=64)
    ring = rings.ring(0)
    assert ring.publish(0, RAISE_FRAMES[1]) is False  # awake: no bell
    rings.set_sleeping(True)
    assert ring.publish(8, RAISE_FRAMES[2]) is True  # asleep: ring the bell
    rings.set_sleeping(False)
    assert ring.publish(16, RAISE_FRAMES[3]) is False


def test_a_successor_continues_from_the_published_head():
    rings = Rings(1, size=64)
    ring = rings.ring(0)
    ring.publish(0, RAISE_FRAMES[9] * 3)
    assert rings.ring(0).head == 24  # what a replacement child reads at its start


def test_a_ring_size_that_is_not_whole_frames_is_refused():
    with pytest.raises(ValueError, match="invalid ring size 12: must be a multiple of 8"):
        Rings(1, size=12)


def test_a_fork_while_another_thread_holds_the_fence_does_not_block_the_child():
    import os
    import threading

    from uwsgisig.runtime.ipc import rings

    held, release = threading.Event(), threading.Event()

    def hold_the_fence() -> None:
        with rings._fence_lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold_the_fence)
    thread.start()
    assert held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:
            rings.fence()  # would block forever on the inherited, held lock
            os._exit(0)
    finally:
        release.set()
        thread.join(10)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
