"""A command the runtime runs beside its children: uWSGI's attach-daemon.

`uwsgisig run APP -- gunicorn ...` starts the runtime, then the command, with
the attach socket in its environment so the server's workers attach by
themselves. The command runs in a process group of its own. It is restarted
with the children's backoff if it dies, sent SIGHUP when the runtime reloads,
and stopped with the runtime: SIGTERM (a server's graceful stop), then SIGKILL
to its group after ``stop_timeout``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable, Mapping, Sequence

from ..ipc.posix import STOP_SIGNALS, blocked, describe_exit, kill, kill_group
from .backoff import respawn_delay

__all__ = ["Command"]

log = logging.getLogger("uwsgisig")


class Command:
    """One supervised command line; ``call_later`` is the master's timer."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        call_later: Callable[[float, Callable[[], None]], None],
        name: str = "",
        keep_fds: Sequence[int] = (),
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.call_later = call_later
        self.name = name  # how logs call it, else by its command line
        self.keep_fds = tuple(keep_fds)  # descriptors it inherits
        self.on_start = on_start  # called after each start
        self.pid: int | None = None
        self.stopping = False
        self.started_at = 0.0
        self.delay = 0.0

    def describe(self) -> str:
        return self.name or f"command {' '.join(self.argv)!r}"

    def start(self) -> None:
        """Fork and exec the command in a process group of its own."""
        with blocked(STOP_SIGNALS):
            pid = os.fork()
            if pid == 0:
                self._exec()
        with contextlib.suppress(PermissionError, ProcessLookupError):
            os.setpgid(pid, pid)
        self.pid = pid
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.describe(), pid)
        if self.on_start is not None:
            self.on_start()

    def _exec(self) -> None:
        try:
            with contextlib.suppress(PermissionError, ProcessLookupError):
                os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            # As subprocess's restore_signals: Python ignores SIGPIPE and SIGXFSZ,
            # and an ignored signal stays ignored across exec.
            for signum in (*STOP_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            for fd in self.keep_fds:
                os.set_inheritable(fd, True)
            os.execvpe(self.argv[0], self.argv, self.env)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(127)

    def exited(self, status_code: int) -> None:
        """The command's process ended with ``status_code``: restart it unless stopping."""
        pid, self.pid = self.pid, None
        if self.stopping:
            log.info("%s (pid %s) exited with %s", self.describe(), pid, describe_exit(status_code))
            return
        self.delay = respawn_delay(time.monotonic() - self.started_at, self.delay)
        log.warning(
            "%s (pid %s) exited with %s: restarting it in %.1f s",
            self.describe(),
            pid,
            describe_exit(status_code),
            self.delay,
        )
        self.call_later(self.delay, self._restart)

    def _restart(self) -> None:
        if not self.stopping and self.pid is None:
            self.start()

    def reload(self) -> None:
        """The runtime reloads: the command (a server) reloads its workers on SIGHUP."""
        if self.pid is not None:
            kill(self.pid, signal.SIGHUP)

    def begin_stop(self) -> None:
        """Ask the command to stop (SIGTERM); it is not restarted from now on."""
        self.stopping = True
        if self.pid is not None:
            kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        """It outlived its stop timeout: SIGKILL its whole group."""
        if self.pid is not None:
            log.warning("%s (pid %d) did not stop: killing it", self.describe(), self.pid)
            kill_group(self.pid, signal.SIGKILL)
