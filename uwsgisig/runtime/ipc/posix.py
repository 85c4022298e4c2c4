"""The POSIX process calls the master and its children share: kill, exit statuses, groups."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import sys
from collections.abc import Iterable, Iterator

__all__ = [
    "STOP_SIGNALS",
    "blocked",
    "describe_exit",
    "die_with_parent",
    "kill",
    "kill_group",
    "set_title",
]

log = logging.getLogger("uwsgisig")

# The POSIX signals the master acts on, by the name of the method that handles each.
STOP_SIGNALS = {
    signal.SIGINT: "int",
    signal.SIGQUIT: "quit",
    signal.SIGTERM: "term",
    signal.SIGHUP: "hup",
    signal.SIGCHLD: "chld",
    signal.SIGUSR1: "usr1",
    signal.SIGUSR2: "usr2",
    signal.SIGTSTP: "tstp",
}


def kill(pid: int, signum: int) -> None:
    """Send ``signum`` to ``pid``; a process that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def kill_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to process group ``pgid``; False when the group has no process left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member changed its credentials: the group still exists
    return True


def describe_exit(code: int) -> str:
    """``os.waitstatus_to_exitcode`` as words: 'code 3', 'signal SIGKILL', 'signal 35'."""
    if code >= 0:
        return f"code {code}"
    try:
        # Real-time signals (SIGRTMIN..SIGRTMAX) have no name in signal.Signals.
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


@contextlib.contextmanager
def blocked(signums: Iterable[int]) -> Iterator[None]:
    """Hold ``signums`` pending (not lost) while the body runs, e.g. across a fork.

    A child forked inside the body starts with them blocked too; it sets its own
    dispositions and then calls ``signal.pthread_sigmask(SIG_UNBLOCK, ...)``, so a
    SIGTERM sent between fork and that point is acted on, not swallowed by the
    master's handler that the child inherited.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def set_title(title: str, short: str) -> None:
    """Name this process for ``ps``, ``top`` and ``pgrep``.

    ``short`` (15 characters at most) becomes the kernel's name of the process
    (``/proc/PID/comm``: what ``ps -e``, ``top`` and ``pgrep`` show). With the
    ``setproctitle`` package installed (the ``titles`` extra), ``title``
    replaces the whole command line too, as uWSGI's process names do.
    """
    try:
        import setproctitle
    except ImportError:
        pass
    else:
        setproctitle.setproctitle(title)
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_name = 15
        libc.prctl(pr_set_name, short.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def die_with_parent(signum: int) -> None:
    """Ask Linux to send ``signum`` to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, signum, 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_PDEATHSIG) failed: %s", errno.errorcode.get(ctypes.get_errno()))
    except (OSError, AttributeError):
        pass
