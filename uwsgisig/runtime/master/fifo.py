"""uWSGI's master FIFO: commands written to a named pipe, one letter each.

``echo r > /run/app.fifo`` reloads, ``echo q > ...`` stops; several letters
in one write run in order, and whitespace between them is ignored. With
several FIFOs (``--master-fifo`` given more than once) only the selected
one is obeyed: the first at start, and a digit ``N`` written to it selects
the N-th (from 0). An unknown letter is logged and ignored.

Each FIFO is opened read-write and non-blocking, so the master never sees an
end of file when a writer closes, and never blocks on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import stat
from collections.abc import Callable, Mapping, Sequence

__all__ = ["MasterFifo", "open_fifo"]

log = logging.getLogger("uwsgisig")


def open_fifo(path: str) -> int:
    """Make the FIFO ``path`` (mode 0600) unless it exists; open it read-write, non-blocking."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        os.mkfifo(path, 0o600)
    else:
        if not stat.S_ISFIFO(mode):
            raise FileExistsError(f"master FIFO {path!r} exists and is not a FIFO")
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


class MasterFifo:
    """The master's FIFOs; ``commands`` maps each letter to what it does."""

    def __init__(
        self,
        paths: Sequence[str],
        poll: select.poll,
        commands: Mapping[str, Callable[[], None]],
    ) -> None:
        self.paths = list(paths)
        self.fds = [open_fifo(path) for path in self.paths]
        self.selected = 0
        self._poll = poll
        self._commands = commands

    def start(self) -> None:
        for fd in self.fds:
            self._poll.register(fd, select.POLLIN)

    def owns(self, fd: int) -> bool:
        return fd in self.fds

    def ready(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        index = self.fds.index(fd)
        if index != self.selected:
            log.warning(
                "master FIFO %s is not the selected one (%s): %r ignored",
                self.paths[index],
                self.paths[self.selected],
                data,
            )
            return
        for letter in data.decode("latin-1"):
            self._obey(letter)

    def _obey(self, letter: str) -> None:
        if letter.isspace():
            return
        if letter.isdigit():
            self._select(int(letter))
            return
        command = self._commands.get(letter)
        if command is None:
            log.warning(
                "master FIFO: unknown command %r ignored (known: %s, and 0-9 to select a FIFO)",
                letter,
                "".join(sorted(self._commands)),
            )
            return
        log.info("master FIFO: %r", letter)
        command()

    def _select(self, index: int) -> None:
        if index >= len(self.fds):
            log.warning(
                "master FIFO: no FIFO %d to select (there are %d, from 0)", index, len(self.fds)
            )
            return
        self.selected = index
        log.info("master FIFO: %s is the selected FIFO now", self.paths[index])

    def close(self) -> None:
        """Close the FIFOs and remove their files."""
        for fd, path in zip(self.fds, self.paths, strict=True):
            with contextlib.suppress(KeyError, ValueError):
                self._poll.unregister(fd)
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.fds.clear()
