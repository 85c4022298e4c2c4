"""The binary frames on the master <-> child sockets.

Every frame on a private socket is one fixed-size little-endian record::

    op: u8 | arg: u8 | num: u16 | value: u32

so a batch of frames read in one ``recv`` is split with ``struct.iter_unpack``
and no frame needs a length prefix or pickle. The shared queues (all workers,
all mules, one farm) carry bare signal numbers, one byte each, so any reader
takes whole signals whatever it reads.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from typing import NamedTuple

from ..model.roles import Role

__all__ = [
    "ANY_SIGNAL",
    "BELL_FRAME",
    "DELIVER_FRAMES",
    "FRAME",
    "FRAME_SIZE",
    "Frame",
    "PROC_READY",
    "RAISE_FRAMES",
    "RAISE_WINDOW",
    "READ_SIZE",
    "RUN_FRAMES",
    "FrameReader",
    "Op",
    "RegisterError",
    "Role",
    "numbers_if_all",
    "pack",
    "pack_payload",
]

FRAME = struct.Struct("<BBHI")
FRAME_SIZE = FRAME.size

# RAISE frames a sender may have in flight before the master pays it more credit.
RAISE_WINDOW = 4096

# `num` of a WAIT frame that waits for any signal.
ANY_SIGNAL = 0xFFFF

# The bit of a PROC frame's `arg` (beside the role) set when the process is ready.
PROC_READY = 0x80


class Op(enum.IntEnum):
    """What a frame asks for."""

    # child -> master
    RAISE = 1  # num: raise this signal (uses one credit)
    WAIT = 2  # num: the child blocks in wait() for num, or ANY_SIGNAL
    UNWAIT = 3  # the child stopped waiting
    RETURN = 4  # num: a DELIVER that arrived after the child stopped waiting
    REGISTER = 5  # num, arg: target kind, value: target index
    READY = 6  # the child ran its post-fork hooks and serves signals
    STATUS = 7  # who is running? (answered by PROC frames and one END)
    PAYLOAD = 8  # value: 4 more bytes of the payload of the request that follows
    ADD_EVENT = 9  # value: payload length; the payload encodes a timer, cron or file monitor
    SPOOLED = 10  # a job was written to the spool directory: wake the spooler
    BELL = 11  # on the socket: frames wait in this child's ring (the master was asleep)
    WORKERS = 12  # the workers' figures? (answered by PAYLOAD frames of JSON and one END)
    SPOOLER_FREQUENCY = 13  # num: every spooler now looks at its jobs every num seconds
    CLUSTER_RAISE = 14  # num: raise this signal on every node of the cluster
    # master -> child
    RUN = 16  # num: run your handler for num
    DELIVER = 17  # num: your wait() is answered with num
    CREDIT = 18  # value: this many more RAISE frames may be sent
    REGISTERED = 19  # arg: 0 accepted, else a RegisterError code
    PROC = 20  # arg: role | PROC_READY when ready, num: id, value: pid
    END = 21  # end of a STATUS answer; of a WORKERS answer, value: the payload's length
    RELOAD = 22  # finish what you are doing, then exit (graceful reload)
    EVENT_ADDED = 23  # arg: 0 armed, 1 refused (the master logs why)
    SPOOL = 24  # to the spooler: new jobs wait in the directory
    FREQUENCY = 25  # to the spooler: num, its new frequency in seconds


class RegisterError(enum.IntEnum):
    """Why the master refused a REGISTER frame."""

    OK = 0
    TAKEN = 1  # the number is registered already
    NO_SUCH_TARGET = 2  # the target names no process of this runtime


def pack(op: Op, num: int = 0, value: int = 0, arg: int = 0) -> bytes:
    """Return one frame."""
    return FRAME.pack(op, arg, num, value)


def numbers_if_all(frames: bytes, op: int) -> bytes | None:
    """The signal numbers of ``frames`` (whole frames), one byte each, when every one
    is an ``op`` frame with a number under 256; None when any is not.

    A burst read this way costs a few slices counted in C, not a loop over frames.
    """
    count = len(frames) // FRAME_SIZE
    if frames[0::FRAME_SIZE].count(op) != count or frames[3::FRAME_SIZE].count(0) != count:
        return None
    return frames[2::FRAME_SIZE]


def pack_payload(payload: bytes) -> bytes:
    """PAYLOAD frames carrying ``payload``, 4 bytes each (the last one padded with zeros)."""
    padded = payload + bytes(-len(payload) % 4)
    return b"".join(
        pack(Op.PAYLOAD, value=int.from_bytes(padded[i : i + 4], "little"))
        for i in range(0, len(padded), 4)
    )


# Bytes asked of a socket per read of frames (8,192 frames). Not more: a read
# buffer past malloc's mmap threshold (128 KiB) is mapped and unmapped on
# every read, which cost 17 us a read here, more than the read itself.
READ_SIZE = 65536

# The frames sent once per signal, made once: the hot path only indexes them.
RAISE_FRAMES = tuple(pack(Op.RAISE, num) for num in range(256))
RUN_FRAMES = tuple(pack(Op.RUN, num) for num in range(256))
BELL_FRAME = pack(Op.BELL)
DELIVER_FRAMES = tuple(pack(Op.DELIVER, num) for num in range(256))


class Frame(NamedTuple):
    """One decoded frame, as answers to a request are handed back."""

    op: int
    arg: int
    num: int
    value: int


class FrameReader:
    """Splits a byte stream into frames, keeping a partial frame for the next read."""

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> Iterator[tuple[int, int, int, int]]:
        """Yield ``(op, arg, num, value)`` for every whole frame seen so far."""
        return FRAME.iter_unpack(self.whole_frames(data))

    def whole_frames(self, data: bytes) -> bytes:
        """Return the whole frames seen so far, as bytes; keep the partial one."""
        if self._rest:
            data = self._rest + data
        whole = len(data) - len(data) % FRAME_SIZE
        self._rest = data[whole:]
        return data if whole == len(data) else data[:whole]
