"""Frames on the master <-> child sockets: fixed size, split across reads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uwsgisig.runtime.wire.frames import FRAME_SIZE, FrameReader, Op, pack

pytestmark = pytest.mark.timeout(60)

frames = st.tuples(
    st.sampled_from(list(Op)),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFF),
)


def test_a_frame_is_eight_bytes():
    assert FRAME_SIZE == 8
    assert len(pack(Op.RAISE, 255)) == 8


@given(st.lists(frames, max_size=50), st.lists(st.integers(1, 20), min_size=1))
def test_reader_yields_every_frame_however_the_stream_is_cut(sent, cuts):
    stream = b"".join(pack(op, num, value, arg) for op, num, value, arg in sent)
    reader = FrameReader()
    got = []
    position = 0
    index = 0
    while position < len(stream):
        size = cuts[index % len(cuts)]
        got.extend(reader.feed(stream[position : position + size]))
        position += size
        index += 1
    assert got == [(op, arg, num, value) for op, num, value, arg in sent]
