"""Shared memory that a process not forked from its maker can map too.

The master's progress cells and rings are made before fork, so its own
children inherit them. A worker that attaches later (a web server's worker)
is no child of the master: it gets the mapping's descriptor over the attach
socket and maps the same pages. So the memory is a file with no name
(``memfd_create``), not an anonymous mapping.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import weakref

__all__ = ["SharedMemory", "anonymous_file"]


class SharedMemory:
    """``size`` bytes of zeroed memory, shared with whoever maps ``fd``."""

    def __init__(self, size: int, name: str, *, fd: int | None = None) -> None:
        if fd is None:
            fd = anonymous_file(name)
            os.ftruncate(fd, size)
        self.fd = fd
        self.size = size
        self.map = mmap.mmap(fd, size)
        # The mapping outlives the descriptor: close it with this object at the latest.
        self._close = weakref.finalize(self, os.close, fd)

    @classmethod
    def attach(cls, fd: int) -> SharedMemory:
        """Map the memory whose descriptor ``fd`` another process sent; ``fd`` is closed."""
        memory = cls(os.fstat(fd).st_size, "", fd=fd)
        memory.close_fd()
        return memory

    def close_fd(self) -> None:
        """Keep the mapping, drop the descriptor: no other process will map it from here."""
        self._close()
        self.fd = -1


def anonymous_file(name: str) -> int:
    """A descriptor of a file with no name (a memfd, else an unlinked temporary file)."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        return memfd_create(f"uwsgisig-{name}", os.MFD_CLOEXEC)
    fd, path = tempfile.mkstemp(prefix=f"uwsgisig-{name}-")
    os.unlink(path)  # nothing else may open it by name
    return fd
