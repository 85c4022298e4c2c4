"""The controller's handle on a runtime it started: raise, wait, inspect, reload, stop."""

from __future__ import annotations

import operator
import os
import select
import signal
import socket
import time
from types import TracebackType
from typing import SupportsIndex

import attrs

from ..errors import MAX_SIGNAL, UwsgisigError, check_signal_number
from .child import SignalLoop
from .ipc.link import MasterGone, MasterLink
from .ipc.posix import kill
from .ipc.rings import Ring
from .model.config import RuntimeConfig

__all__ = ["ProcessInfo", "RuntimeHandle"]


def _number(num: object) -> int:
    """A signal number from an int or anything with ``__index__`` (a `Signal`)."""
    if type(num) is int and 0 <= num <= MAX_SIGNAL:
        return num  # the common case, on every raise: spare the checks below
    if not isinstance(num, int) and hasattr(num, "__index__"):
        num = operator.index(num)  # type: ignore[arg-type]
    return check_signal_number(num)


@attrs.frozen
class ProcessInfo:
    """One process of a running runtime."""

    role: str  # 'master', 'worker', 'mule' or 'spooler'
    id: int  # worker or mule id (1-based); 0 for the master and the spooler
    pid: int  # 0 while the process is being respawned
    ready: bool  # it ran its post-fork hooks and serves signals


class RuntimeHandle:
    """Controls a runtime started with `Runtime.start`: raise, wait, inspect, stop."""

    def __init__(
        self,
        pid: int,
        sock: socket.socket,
        config: RuntimeConfig,
        remote_signals: str | None = None,
        ring: Ring | None = None,
        rpc_socket: str | None = None,
    ) -> None:
        self.pid = pid
        self.config = config
        # Where the runtime takes remote signals (HOST:PORT, the port it got), or None.
        self.remote_signals = remote_signals
        # Where the workers answer RPC requests (HOST:PORT, the port it got), or None.
        self.rpc_socket = rpc_socket
        self._link = MasterLink(sock, send_timeout=config.send_timeout, ring=ring)
        self._loop = SignalLoop(self._link, [], table=None)
        self.returncode: int | None = None

    def signal(self, num: SupportsIndex) -> None:
        """Raise signal ``num`` (a number or a `Signal`) in the runtime, as ``send()`` would."""
        number = _number(num)
        if self.returncode is not None:
            self._check_running(f"raise signal {number}")
        self._link.raise_signal(number)

    def wait(self, num: SupportsIndex | None = None, timeout: float = 10.0) -> int:
        """Wait for signal ``num`` (or any) routed to a waiting process; raise TimeoutError."""
        number = None if num is None else _number(num)
        self._check_running("wait for a signal")
        return self._loop.wait(number, timeout)

    def _check_running(self, what: str) -> None:
        if self.returncode is not None:
            raise UwsgisigError(
                f"cannot {what}: this runtime was stopped (master pid {self.pid} exited with "
                f"status {self.returncode}); start another with Runtime(...).start()"
            )

    def processes(self) -> list[ProcessInfo]:
        """Every process of the runtime, the master first."""
        return [
            ProcessInfo(role.name.lower(), ident, pid, ready)
            for role, ident, pid, ready in self._link.status()
        ]

    def pids(self) -> list[int]:
        """Pids of the master and of every live child."""
        return [info.pid for info in self.processes() if info.pid]

    def wait_ready(self, timeout: float = 15.0) -> list[ProcessInfo]:
        """Block until every child has started and run its post-fork hooks."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                infos = self.processes()
            except (MasterGone, TimeoutError):
                code = self._reap(timeout=5.0)
                raise UwsgisigError(
                    f"the runtime exited (status {code}) before it was ready; its log says why"
                ) from None
            if all(info.ready and info.pid for info in infos):
                return infos
            if time.monotonic() > deadline:
                raise TimeoutError(f"the runtime was not ready within {timeout:g} s: {infos}")
            # READY frames go to the master, not to us: ask again shortly.
            self._link.read(0.01)

    def reload(self) -> None:
        """Reload the workers gracefully (SIGHUP to the master)."""
        os.kill(self.pid, signal.SIGHUP)

    def stop(self, timeout: float | None = None) -> int:
        """Stop the runtime (SIGINT to the master) and wait for it; return its exit status."""
        if self.returncode is not None:
            return self.returncode
        kill(self.pid, signal.SIGINT)
        limit = self.config.stop_timeout + 5.0 if timeout is None else timeout
        code = self._reap(limit)
        if code is None:
            kill(self.pid, signal.SIGKILL)
            code = self._reap(None)
        self._link.sock.close()
        return code if code is not None else -signal.SIGKILL

    def _reap(self, timeout: float | None) -> int | None:
        """Wait for the master to exit; return its exit code, None on timeout."""
        if self.returncode is not None:
            return self.returncode
        if timeout is not None:
            fd = os.pidfd_open(self.pid)
            try:
                if not select.select([fd], [], [], timeout)[0]:
                    return None
            finally:
                os.close(fd)
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def __enter__(self) -> RuntimeHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
