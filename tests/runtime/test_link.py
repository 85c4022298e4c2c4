"""A child's link to the master sorts what it reads: signal frames to the inbox,
CREDIT to the raise window, answers to the replies; a read made only of RUN
frames (a burst, a fan-out) joins the inbox in one step, in order."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uwsgisig.runtime.ipc.link import MasterLink
from uwsgisig.runtime.wire.frames import DELIVER_FRAMES, RAISE_WINDOW, RUN_FRAMES, Op, pack

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def ends() -> Iterator[tuple[MasterLink, socket.socket]]:
    master_end, child_end = socket.socketpair()
    link = MasterLink(child_end, send_timeout=5)
    yield link, master_end
    link.close()
    master_end.close()


def test_a_read_of_run_frames_only_joins_the_inbox_in_order(ends):
    link, master_end = ends
    master_end.sendall(b"".join(RUN_FRAMES[num] for num in (3, 1, 255, 0, 3)))
    assert link.read(5.0)
    assert [link.take() for _ in range(5)] == [(Op.RUN, n) for n in (3, 1, 255, 0, 3)]
    assert not link.inbox
    assert link.progress.started == 5


@settings(max_examples=60, deadline=None)
@given(
    frames=st.lists(
        st.one_of(
            st.integers(0, 255).map(lambda n: ("run", n)),
            st.integers(0, 255).map(lambda n: ("deliver", n)),
            st.integers(1, 100).map(lambda n: ("credit", n)),
            st.integers(0, 255).map(lambda n: ("registered", n)),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_every_read_is_sorted_as_frame_by_frame(frames):
    master_end, child_end = socket.socketpair()
    link = MasterLink(child_end, send_timeout=5)
    try:
        made = {
            "run": lambda n: RUN_FRAMES[n],
            "deliver": lambda n: DELIVER_FRAMES[n],
            "credit": lambda n: pack(Op.CREDIT, value=n),
            "registered": lambda n: pack(Op.REGISTERED, n),
        }
        master_end.sendall(b"".join(made[kind](n) for kind, n in frames))
        assert link.read(5.0)  # at most 320 bytes, all sent before: one read takes them
        signals = [(Op.RUN if kind == "run" else Op.DELIVER, n) for kind, n in frames
                   if kind in ("run", "deliver")]  # fmt: skip
        assert list(link.inbox) == signals
        assert [(f.op, f.num) for f in link.replies] == [
            (Op.REGISTERED, n) for kind, n in frames if kind == "registered"
        ]
        assert link.credit == RAISE_WINDOW + sum(n for kind, n in frames if kind == "credit")
    finally:
        link.close()
        master_end.close()
