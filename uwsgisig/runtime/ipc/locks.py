"""uWSGI's user locks: ``lock(n)`` / ``unlock(n)``, shared by every process of a runtime.

Lock ``n`` is a POSIX record lock (``fcntl``) on byte ``n`` of a file with no
name, made by the master before fork (an attached worker gets its
descriptor). The kernel releases a process's record locks when it dies, so
a holder killed in the middle of its work never wedges the others, which a
mutex in shared memory would. Record locks belong to a process, not to a
thread: a `threading.Lock` per lock makes the threads of one process (an
attached worker's requests and its signal thread) wait for each other too.
"""

from __future__ import annotations

import fcntl
import os
import threading

from ...errors import LockNumberError
from .shared import anonymous_file

__all__ = ["SharedLocks"]


class SharedLocks:
    """Locks ``0`` to ``count - 1``; ``fd`` is the master's file when attaching."""

    def __init__(self, count: int, *, fd: int | None = None) -> None:
        if fd is None:
            fd = anonymous_file("locks")
            os.ftruncate(fd, max(count, 1))
        self.fd = fd
        self.count = count
        self._threads = [threading.Lock() for _ in range(count)]
        self._held = [False] * count
        os.register_at_fork(after_in_child=self._forget_threads)

    def acquire(self, num: int) -> None:
        """Block until lock ``num`` is this thread's."""
        self._check(num)
        self._threads[num].acquire()
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, num)
        except BaseException:
            self._threads[num].release()
            raise
        self._held[num] = True

    def release(self, num: int) -> None:
        """Release lock ``num``; nothing if this process does not hold it, as in uWSGI."""
        self._check(num)
        if not self._held[num]:
            return
        self._held[num] = False
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, num)
        self._threads[num].release()

    def is_locked(self, num: int) -> bool:
        """Whether some process (this one included) holds lock ``num``."""
        self._check(num)
        if self._held[num]:
            return True
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, num)
        except OSError:
            return True
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, num)
        return False

    def _check(self, num: object) -> None:
        if isinstance(num, bool) or not isinstance(num, int) or not 0 <= num < self.count:
            raise LockNumberError(num, self.count)

    def _forget_threads(self) -> None:
        # The child holds no record lock (they are not inherited), and a thread
        # lock held by another thread of the parent would stay held forever.
        self._threads = [threading.Lock() for _ in range(self.count)]
        self._held = [False] * self.count

