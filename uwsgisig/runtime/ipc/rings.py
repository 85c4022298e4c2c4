"""The children's frames to the master, through memory shared with it.

A child's frames to the master (RAISE above all, but also WAIT, REGISTER,
...) go into a ring of its own in a mapping made before fork (by the master
for its children, by the controller for its handle, before it forks the master),
not through a system call: the ring is the master's queue, so a frame is
safe there as soon as it is written, and the master still reads it if the
child dies the next instant. Frames keep their order because they all take
the same path.

Only the child writes ``head`` and only the master writes ``tail``; a frame
(8 bytes, the ring a multiple of 8) is published by moving ``head`` after
its bytes are written, so the master never sees half a frame. Every ring's
``head`` sits in one block of the mapping and every ``tail`` in another, so
the master learns whether any ring holds frames with one comparison of the
two blocks (`Rings.pending`), however many children there are.

Waking the master. While it works, the master looks at every ring on each
pass of its loop. Before it sleeps in ``poll`` it sets ``sleeping``, then
looks at the rings once more; a child, after publishing a frame, looks at
``sleeping`` and, if set, writes one BELL frame to its socket. Each side
stores, then fences, then loads (Dekker's pattern), so at least one of them
sees the other: either the master finds the frame before it sleeps, or the
child rings. `fence` is a lock taken and released: on x86-64 that is a
locked instruction, a full barrier. Where the processor orders memory more
weakly (ARM, POWER) that is not guaranteed, so there the master never sleeps
longer than `WEAK_ORDER_NAP` without looking at the rings: a missed bell costs
at most that much delay, never a signal.
"""

from __future__ import annotations

import os
import platform
import threading

from .shared import SharedMemory

__all__ = ["RING_SIZE", "WEAK_ORDER_NAP", "Ring", "Rings", "fence"]

RING_SIZE = 65536  # bytes of frames per child: 8,192 frames, twice the raise window
# The mapping: a header (the master's "sleeping" word, the number of rings),
# then every ring's head, then every tail, then every ring's frames; each
# part starts on its own cache line.
_SLEEPING = 0  # word 0: the master sleeps in poll
_COUNT = 1  # word 1: how many rings the mapping holds
_LINE = 64

# Seconds the master may sleep without looking at the rings; None where the fence is full.
WEAK_ORDER_NAP = None if platform.machine().lower() in ("x86_64", "amd64") else 0.01

_fence_lock = threading.Lock()


def _new_fence_lock() -> None:
    # Another thread may have held the lock at the instant of fork: the child
    # would wait for it forever. Its only use is the barrier, so a fresh one will do.
    global _fence_lock
    _fence_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_fence_lock)


def fence() -> None:
    """Order this process's earlier stores before its later loads (a full barrier)."""
    _fence_lock.acquire()
    _fence_lock.release()


class Ring:
    """One child's ring: its ``head`` and ``tail`` counters and its frame bytes."""

    __slots__ = ("_head", "_sleeping", "_tail", "_words", "data", "size")

    def __init__(
        self, words: memoryview, head: int, tail: int, data: memoryview, sleeping: memoryview
    ) -> None:
        self._words = words  # the mapping as 8-byte words
        self._head = head  # the index of this ring's head in ``words``
        self._tail = tail
        self._sleeping = sleeping
        self.data = data
        self.size = len(data)

    # ---------------------------------------------------------------- the child's side

    @property
    def head(self) -> int:
        """Bytes ever published by the child."""
        return self._words[self._head]

    def room(self, head: int) -> int:
        """Bytes the child may still write, given its ``head``."""
        return self.size - (head - self._words[self._tail])

    def publish(self, head: int, frame: bytes) -> bool:
        """Write ``frame`` at ``head`` and publish it; True if the master may sleep.

        The caller checked `room`. ``frame`` is whole 8-byte frames.
        """
        size = self.size
        start = head % size
        end = start + len(frame)
        if end <= size:
            self.data[start:end] = frame
        else:
            split = size - start
            self.data[start:] = frame[:split]
            self.data[: end - size] = frame[split:]
        self._words[self._head] = head + len(frame)
        _fence_lock.acquire()  # `fence`, inlined: this runs on every raise
        _fence_lock.release()
        return self._sleeping[0] != 0

    # ---------------------------------------------------------------- the master's side

    def pending(self) -> bool:
        """Whether frames wait to be read."""
        words = self._words
        return words[self._head] != words[self._tail]

    def take(self) -> bytes:
        """Every published frame not read yet, in order; they are consumed."""
        words = self._words
        head, tail = words[self._head], words[self._tail]
        if head == tail:
            return b""
        size = self.size
        start = tail % size
        end = start + head - tail
        if end <= size:
            frames = bytes(self.data[start:end])
        else:
            frames = bytes(self.data[start:]) + bytes(self.data[: end - size])
        words[self._tail] = head
        return frames


class Rings:
    """The rings of ``count`` children, and the master's ``sleeping`` word, in one mapping.

    An attached worker maps the same memory from the descriptors the master
    sends it (`attach`): ``memory.fd``, and ``sleeping_memory.fd`` for the
    mapping that holds the sleeping word.
    """

    def __init__(
        self,
        count: int,
        size: int = RING_SIZE,
        *,
        sleeping_in: Rings | None = None,
        memory: SharedMemory | None = None,
        sleeping_memory: SharedMemory | None = None,
    ) -> None:
        if size % 8:
            raise ValueError(f"invalid ring size {size}: must be a multiple of 8 bytes")
        if memory is None:
            memory = SharedMemory(_layout(count, size)[-1], "rings")
            memoryview(memory.map).cast("Q")[_COUNT] = count
        self.memory = memory
        self._map = memory.map
        self._words = memoryview(self._map).cast("Q")
        self.count = self._words[_COUNT]
        self._heads_at, self._tails_at, self._data_at, _ = _layout(self.count, size)
        self._size = size
        # Every head and every tail, as two runs of words compared at once.
        self._heads = self._words[self._heads_at // 8 : self._heads_at // 8 + self.count]
        self._tails = self._words[self._tails_at // 8 : self._tails_at // 8 + self.count]
        # The master's one "sleeping" word: this mapping's, or that of ``sleeping_in``.
        if sleeping_memory is None:
            sleeping_memory = sleeping_in.memory if sleeping_in is not None else memory
        self.sleeping_memory = sleeping_memory
        self._sleeping = memoryview(sleeping_memory.map).cast("Q")[_SLEEPING : _SLEEPING + 1]

    @classmethod
    def attach(cls, rings_fd: int, sleeping_fd: int) -> Rings:
        """The master's rings, mapped from the descriptors it sent."""
        memory = SharedMemory.attach(rings_fd)
        return cls(0, memory=memory, sleeping_memory=SharedMemory.attach(sleeping_fd))

    def ring(self, index: int) -> Ring:
        """The ring of slot ``index`` (0-based)."""
        if not 0 <= index < self.count:
            raise IndexError(f"no ring {index}: the mapping holds {self.count}")
        data = self._data_at + index * self._size
        return Ring(
            self._words,
            self._heads_at // 8 + index,
            self._tails_at // 8 + index,
            memoryview(self._map)[data : data + self._size],
            self._sleeping,
        )

    def pending(self) -> bool:
        """The master: whether any ring holds frames it has not taken."""
        return self._heads != self._tails

    def set_sleeping(self, sleeping: bool) -> None:
        """The master: about to sleep in poll (True), or awake again (False)."""
        self._sleeping[0] = int(sleeping)
        if sleeping:
            fence()


def _layout(count: int, size: int) -> tuple[int, int, int, int]:
    """Byte offsets of the heads, the tails and the frames of ``count`` rings, and the end."""
    words = -(-8 * max(count, 1) // _LINE) * _LINE  # a run of words, in whole cache lines
    heads = _LINE
    tails = heads + words
    data = tails + words
    return heads, tails, data, data + max(count, 1) * size
