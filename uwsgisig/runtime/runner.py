"""Start a runtime: in the foreground (the CLI) or forked, with a handle (tests, scripts)."""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from types import TracebackType

import attrs

from ..errors import TargetError, UwsgisigError, check_signal_number
from .app import (
    DECLARED_EVENTS,
    DECLARED_FARMS,
    DECLARED_MULES,
    DECLARED_PROGRAMS,
    POSTFORK_HOOKS,
    import_app,
)
from .child import SignalLoop, run_child
from .config import FarmSpec, MuleProgram, RuntimeConfig, parse_farm
from .link import MasterGone, MasterLink
from .listener import address_of, bind_listener
from .master import Master
from .posix import die_with_parent, kill
from .process import CURRENT
from .roles import Role
from .table import TABLE

__all__ = ["ProcessInfo", "Runtime", "RuntimeHandle"]

log = logging.getLogger("uwsgisig")
LOG_FORMAT = "%(asctime)s uwsgisig[%(process)d] %(levelname)s %(message)s"


@attrs.frozen
class ProcessInfo:
    """One process of a running runtime."""

    role: str  # 'master', 'worker', 'mule' or 'spooler'
    id: int  # worker or mule id (1-based); 0 for the master and the spooler
    pid: int  # 0 while the process is being respawned
    ready: bool  # it ran its post-fork hooks and serves signals


class Runtime:
    """A master and its workers, mules, farms and spooler.

    ``app`` (a module name or a ``.py`` path) is imported in the master before
    it forks, so the handlers, mules and farms it declares exist everywhere.
    ``mule_loops`` start programmed mules after the ``mules`` plain ones, as
    uWSGI's ``--mule=...`` does; ``spooler`` is True for a spooler of signals
    only, or the directory of its spool jobs. ``remote_signals`` (``HOST:PORT``,
    port 0 for a free one) lets other nodes raise signals over the uwsgi
    protocol; a non-loopback host needs ``remote_signals_any=True``.
    ``graceful_stop`` makes SIGTERM let running handlers finish, for up to
    ``stop_timeout`` seconds, instead of ending them at once.
    """

    def __init__(
        self,
        app: str | None = None,
        *,
        workers: int = 1,
        mules: int = 0,
        farms: Iterable[FarmSpec | str] = (),
        mule_loops: Iterable[Callable[[], object] | str] = (),
        spooler: bool | str | os.PathLike[str] = False,
        spooler_frequency: float = 30.0,
        queue_size: int = 65536,
        send_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        graceful_stop: bool = False,
        reload_timeout: float = 30.0,
        log_file: str | os.PathLike[str] | None = None,
        remote_signals: str | None = None,
        remote_signals_any: bool = False,
    ) -> None:
        self.app = app
        self.config = RuntimeConfig(
            workers=workers,
            mules=mules,
            farms=tuple(parse_farm(f) if isinstance(f, str) else f for f in farms),
            programs=tuple(
                MuleProgram(mules + position, body)
                for position, body in enumerate(mule_loops, start=1)
            ),
            spooler=spooler is not False,
            spool_dir=None if isinstance(spooler, bool) else os.fspath(spooler),
            spooler_frequency=spooler_frequency,
            queue_size=queue_size,
            send_timeout=send_timeout,
            stop_timeout=stop_timeout,
            graceful_stop=graceful_stop,
            reload_timeout=reload_timeout,
            log_file=None if log_file is None else os.fspath(log_file),
            remote_signals=remote_signals,
            remote_signals_any=remote_signals_any,
        )

    def run(self) -> int:
        """Run the master in this process until SIGINT, SIGQUIT or SIGTERM; return the exit code."""
        return serve(self.app, self.config, controller=None)

    def start(self, *, ready_timeout: float = 15.0) -> RuntimeHandle:
        """Fork a master that runs this runtime; return once every child is ready."""
        # Bound here, so a bad address fails in the caller and the handle knows the port.
        listening = listen_for_remote_signals(self.config)
        parent_end, master_end = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                parent_end.close()
                die_with_parent(signal.SIGTERM)
                code = serve(self.app, self.config, controller=master_end, listening=listening)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        master_end.close()
        remote = None
        if listening is not None:
            remote = address_of(listening)
            listening.close()  # the master has its own copy
        handle = RuntimeHandle(pid, parent_end, self.config, remote_signals=remote)
        try:
            handle.wait_ready(ready_timeout)
        except BaseException:
            handle.stop()
            raise
        return handle


def serve(
    app: str | None,
    config: RuntimeConfig,
    controller: socket.socket | None,
    listening: socket.socket | None = None,
) -> int:
    """Be the master: listen, import the app, check it, fork, and loop."""
    configure_logging(config.log_file)
    if listening is None:
        listening = listen_for_remote_signals(config)
    CURRENT.role = Role.MASTER
    CURRENT.id = 0
    CURRENT.masterpid = os.getpid()
    CURRENT.config = config
    if app is not None:
        import_app(app)
    config = with_declarations(config)
    CURRENT.config = config
    master = Master(
        config,
        TABLE,
        hooks=POSTFORK_HOOKS,
        child_main=run_child,
        events=DECLARED_EVENTS,
        controller=controller,
        listening=listening,
    )
    check_targets(master)
    return master.run()


def listen_for_remote_signals(config: RuntimeConfig) -> socket.socket | None:
    """The socket that takes signals from other nodes, if the config asks for one."""
    if config.remote_signals is None:
        return None
    return bind_listener(config.remote_signals, config.remote_signals_any)


def with_declarations(config: RuntimeConfig) -> RuntimeConfig:
    """Add the mules and farms the app declared to those of the command line."""
    farms = {farm.name: farm for farm in config.farms}
    for farm in DECLARED_FARMS.values():
        farms.setdefault(farm.name, farm)
    mules = max([config.mules, *DECLARED_MULES])
    programs = {program.mule: program for program in config.programs}
    for program in DECLARED_PROGRAMS.values():
        known = programs.setdefault(program.mule, program)
        if known != program:
            raise TargetError(
                f"mule {program.mule} is given two loops: {known.describe()} and "
                f"{program.describe()}"
            )
    return attrs.evolve(
        config, mules=mules, farms=tuple(farms.values()), programs=tuple(programs.values())
    )


def check_targets(master: Master) -> None:
    """Refuse to start when a registered handler targets a process that will not exist."""
    for num, entry in TABLE.entries().items():
        if not master.target_exists(entry.target):
            raise TargetError(
                f"signal {num} targets {str(entry.target)!r}, which names no process of this "
                f"runtime ({master.config.workers} workers, {master.config.mule_count} mules, "
                f"farms {[farm.name for farm in master.config.farms]}, "
                f"{'a' if master.config.spooler else 'no'} spooler)"
            )


def configure_logging(log_file: str | None) -> None:
    """Send uwsgisig's log to ``log_file`` or, if the program set up no logging, to stderr."""
    if log_file is not None:
        handler: logging.Handler = logging.FileHandler(log_file)
    elif not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
    else:
        return
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


class RuntimeHandle:
    """Controls a runtime started with `Runtime.start`: raise, wait, inspect, stop."""

    def __init__(
        self,
        pid: int,
        sock: socket.socket,
        config: RuntimeConfig,
        remote_signals: str | None = None,
    ) -> None:
        self.pid = pid
        self.config = config
        # Where the runtime takes remote signals (HOST:PORT, the port it got), or None.
        self.remote_signals = remote_signals
        self._link = MasterLink(sock, send_timeout=config.send_timeout)
        self._loop = SignalLoop(self._link, [], table=None)
        self.returncode: int | None = None

    def signal(self, num: int) -> None:
        """Raise signal ``num`` in the runtime, as a child's ``Signal(num).send()`` would."""
        self._link.raise_signal(check_signal_number(num))

    def wait(self, num: int | None = None, timeout: float = 10.0) -> int:
        """Wait for signal ``num`` (or any) routed to a waiting process; raise TimeoutError."""
        if num is not None:
            check_signal_number(num)
        return self._loop.wait(num, timeout)

    def processes(self) -> list[ProcessInfo]:
        """Every process of the runtime, the master first."""
        infos = []
        for frame in self._link.status():
            role = Role(frame.arg & 0x7F)
            ready = role == Role.MASTER or bool(frame.arg & 0x80)
            infos.append(ProcessInfo(role.name.lower(), frame.num, frame.value, ready))
        return infos

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
