"""Start a runtime: in the foreground (the CLI) or forked, with a handle (tests, scripts)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable, Sequence

import attrs

from ..errors import AppImportError, TargetError
from .child import run_child
from .handle import ProcessInfo, RuntimeHandle
from .ipc.cache import CacheStore
from .ipc.posix import die_with_parent, set_title
from .ipc.rings import Rings
from .master import Master
from .master.door import bind_door
from .master.listener import address_of, bind_listener
from .model.app import DECLARED, import_app
from .model.caches import CacheSpec, cache_specs
from .model.config import FarmSpec, MuleProgram, RuntimeConfig, parse_farm
from .model.process import CURRENT
from .model.roles import Role
from .model.table import TABLE
from .schedule.events import rb_timer_event, timer_event

__all__ = ["ProcessInfo", "Runtime", "RuntimeHandle", "serve"]

log = logging.getLogger("uwsgisig")
PRIVATE_DIR_PREFIX = "uwsgisig-"
LOG_FORMAT = "%(asctime)s uwsgisig[%(process)d] %(levelname)s %(message)s"


class Runtime:
    """A master and its workers, mules, farms and spooler.

    ``app`` (a module name or a ``.py`` path) is imported in the master before
    it forks, so the handlers, mules and farms it declares exist everywhere.
    ``mule_loops`` start programmed mules after the ``mules`` plain ones, as
    uWSGI's ``--mule=...`` does; ``spooler`` is True for a spooler of signals
    only, the directory of its spool jobs, or a list of directories, one
    spooler each (uWSGI's ``--spooler`` repeated; the first is the default
    one); ``spooler_processes`` processes share each spooler's jobs, each job
    run by one of them. ``remote_signals`` (``HOST:PORT``,
    port 0 for a free one) lets other nodes raise signals over the uwsgi
    protocol; a non-loopback host needs ``remote_signals_any=True``, and
    ``remote_allow`` (networks such as ``"10.0.0.0/8"``) names the senders it
    takes beside loopback ones, for remote signals and RPC alike.
    ``cluster`` (``redis://HOST:PORT/DB``, ``rediss://...`` for TLS, a user
    and password in the URL for AUTH) makes the runtime a node of the cluster
    ``cluster_name`` on that server, named ``cluster_node`` (default: the
    host's name and the master's pid): the ``cluster`` and ``subscribed``
    targets raise signals on its nodes.
    ``rpc_socket`` (``HOST:PORT``) is where the forked workers answer uWSGI
    RPC requests and remote signals, as a uWSGI node's socket does; a
    non-loopback host needs ``rpc_socket_any=True``. ``need_app=False`` logs an
    app that raises while it is imported and goes on with what it registered,
    as uWSGI 2.0 does (``uwsgisig run --uwsgi-compat``).
    ``graceful_stop`` makes SIGTERM let running handlers finish, for up to
    ``stop_timeout`` seconds, instead of ending them at once. ``attach``
    keeps that many worker slots, after the ``workers`` it forks, for
    processes that attach (a web server's workers, see `uwsgisig.attach`) on
    the unix socket ``attach_socket``; by default that is ``attach.sock`` in
    a private temporary directory, removed when the runtime stops.
    ``command`` (an argv) runs beside the runtime, supervised as uWSGI's
    attach-daemon: restarted if it dies, sent SIGHUP on reload, stopped with
    the runtime; ``$UWSGISIG_ATTACH`` tells its processes where to attach.
    ``pidfile`` holds the master's pid while it runs; touching a file of
    ``touch_reload`` or ``touch_workers_reload`` reloads the workers, one of
    ``touch_mules_reload`` the mules; ``touch_chain_reload``,
    ``touch_logreopen`` and ``touch_logrotate`` do what their names say.
    ``timers`` and ``rb_timers`` are uWSGI's ``--timer`` and ``--rbtimer``:
    ``(signal, seconds)`` pairs the master raises. ``log_level`` is ``"debug"``,
    ``"info"``, ``"warning"`` or ``"error"``. ``master_fifo`` are named pipes
    that take uWSGI's one-letter master FIFO commands (see `master.fifo`).
    ``stats`` (a unix socket path or a loopback ``host:port``) serves the
    runtime's state as JSON in uWSGI's shape, over HTTP with ``stats_http``.
    ``locks`` adds user locks 1 to N beside lock 0 (uWSGI's ``--locks``).
    ``cache`` makes uWSGI's default cache of that many items (``--cache N``);
    ``cache2`` adds caches in ``--cache2`` syntax (``"name=NAME,items=N"``) or
    as `CacheSpec` values. Every process of the runtime shares them.
    ``harakiri`` kills (and replaces) a worker, mule or spooler whose signal
    handler runs that many seconds (0: no limit).
    """

    def __init__(
        self,
        app: str | None = None,
        *,
        workers: int = 1,
        mules: int = 0,
        farms: Iterable[FarmSpec | str] = (),
        mule_loops: Iterable[Callable[[], object] | str] = (),
        spooler: bool | str | os.PathLike[str] | Iterable[str | os.PathLike[str]] = False,
        spooler_processes: int = 1,
        spooler_ordered: bool = False,
        spooler_frequency: float = 30.0,
        queue_size: int = 65536,
        send_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        graceful_stop: bool = False,
        reload_timeout: float = 30.0,
        log_file: str | os.PathLike[str] | None = None,
        remote_signals: str | None = None,
        remote_signals_any: bool = False,
        remote_allow: Iterable[str] = (),
        cluster: str | None = None,
        cluster_name: str = "uwsgisig",
        cluster_node: str | None = None,
        rpc_socket: str | None = None,
        rpc_socket_any: bool = False,
        need_app: bool = True,
        attach: int = 0,
        attach_socket: str | os.PathLike[str] | None = None,
        command: Sequence[str] = (),
        pidfile: str | os.PathLike[str] | None = None,
        touch_reload: Iterable[str | os.PathLike[str]] = (),
        touch_workers_reload: Iterable[str | os.PathLike[str]] = (),
        touch_mules_reload: Iterable[str | os.PathLike[str]] = (),
        touch_chain_reload: Iterable[str | os.PathLike[str]] = (),
        touch_logreopen: Iterable[str | os.PathLike[str]] = (),
        touch_logrotate: Iterable[str | os.PathLike[str]] = (),
        timers: Iterable[tuple[int, float]] = (),
        rb_timers: Iterable[tuple[int, float]] = (),
        log_level: str = "info",
        master_fifo: Iterable[str | os.PathLike[str]] = (),
        stats: str | os.PathLike[str] | None = None,
        stats_http: bool = False,
        locks: int = 0,
        cache: int = 0,
        cache2: Iterable[str | CacheSpec] = (),
        harakiri: float = 0.0,
    ) -> None:
        self.app = app
        spool_dirs = spool_dirs_of(spooler)
        self.config = RuntimeConfig(
            workers=workers,
            mules=mules,
            farms=tuple(parse_farm(f) if isinstance(f, str) else f for f in farms),
            programs=tuple(
                MuleProgram(mules + position, body)
                for position, body in enumerate(mule_loops, start=1)
            ),
            spooler=spooler is True or bool(spool_dirs),
            spool_dir=spool_dirs[0] if spool_dirs else None,
            extra_spool_dirs=spool_dirs[1:],
            spooler_processes=spooler_processes,
            spooler_ordered=spooler_ordered,
            spooler_frequency=spooler_frequency,
            queue_size=queue_size,
            send_timeout=send_timeout,
            stop_timeout=stop_timeout,
            graceful_stop=graceful_stop,
            reload_timeout=reload_timeout,
            log_file=None if log_file is None else os.fspath(log_file),
            remote_signals=remote_signals,
            remote_signals_any=remote_signals_any,
            remote_allow=tuple(remote_allow),
            cluster=cluster,
            cluster_name=cluster_name,
            cluster_node=cluster_node,
            rpc_socket=rpc_socket,
            rpc_socket_any=rpc_socket_any,
            need_app=need_app,
            attach=attach,
            attach_socket=os.fspath(attach_socket) if attach_socket is not None else None,
            command=tuple(command),
            pidfile=os.fspath(pidfile) if pidfile is not None else None,
            touch_reload=tuple(os.fspath(path) for path in touch_reload),
            touch_workers_reload=tuple(os.fspath(path) for path in touch_workers_reload),
            touch_mules_reload=tuple(os.fspath(path) for path in touch_mules_reload),
            touch_chain_reload=tuple(os.fspath(path) for path in touch_chain_reload),
            touch_logreopen=tuple(os.fspath(path) for path in touch_logreopen),
            touch_logrotate=tuple(os.fspath(path) for path in touch_logrotate),
            timers=tuple(timers),
            rb_timers=tuple(rb_timers),
            log_level=log_level,
            master_fifo=tuple(os.fspath(path) for path in master_fifo),
            stats=os.fspath(stats) if stats is not None else None,
            stats_http=stats_http,
            locks=locks,
            caches=cache_specs(cache, cache2),
            harakiri=harakiri,
        )

    def run(self) -> int:
        """Run the master in this process until SIGINT, SIGQUIT or SIGTERM; return the exit code."""
        return serve(self.app, self.config, controller=None)

    def start(self, *, ready_timeout: float = 15.0) -> RuntimeHandle:
        """Fork a master that runs this runtime; return once every child is ready."""
        # Bound here, so a bad address fails in the caller and the handle knows the port.
        listening = listen_for_remote_signals(self.config)
        rpc_listening = listen_for_rpc(self.config)
        config, door = open_door(self.config)
        parent_end, master_end = socket.socketpair()
        rings = Rings(1)  # the handle's frames to the master, shared across the fork
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                parent_end.close()
                die_with_parent(signal.SIGTERM)
                code = serve(
                    self.app,
                    config,
                    controller=master_end,
                    controller_rings=rings,
                    listening=listening,
                    door=door,
                    rpc_listening=rpc_listening,
                )
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        master_end.close()
        rings.memory.close_fd()  # only the master hands it on, to workers that attach
        if door is not None:
            door.close()  # the master's copy listens
        remote = None
        if listening is not None:
            remote = address_of(listening)
            listening.close()  # the master has its own copy
        rpc_address = None
        if rpc_listening is not None:
            rpc_address = address_of(rpc_listening)
            rpc_listening.close()
        handle = RuntimeHandle(
            pid,
            parent_end,
            config,
            remote_signals=remote,
            ring=rings.ring(0),
            rpc_socket=rpc_address,
        )
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
    controller_rings: Rings | None = None,
    door: socket.socket | None = None,
    rpc_listening: socket.socket | None = None,
) -> int:
    """Be the master: listen, import the app, check it, fork, and loop."""
    configure_logging(config.log_file, config.log_level)
    config = attrs.evolve(config, app=app)
    set_title(f"uwsgisig master{f' [{app}]' if app else ''}", "uwsgisig master")
    if listening is None:
        listening = listen_for_remote_signals(config)
    if rpc_listening is None:
        rpc_listening = listen_for_rpc(config)
    if door is None:
        config, door = open_door(config)
    CURRENT.role = Role.MASTER
    CURRENT.id = 0
    CURRENT.masterpid = os.getpid()
    CURRENT.config = config
    # Before the app: its import may use the caches, as it may under uWSGI.
    CURRENT.caches = caches = CacheStore.create(config.caches) if config.caches else None
    try:
        return _serve_app(app, config, controller, listening, controller_rings, door, rpc_listening)
    finally:
        if caches is not None:
            caches.remove()


def _serve_app(
    app: str | None,
    config: RuntimeConfig,
    controller: socket.socket | None,
    listening: socket.socket | None,
    controller_rings: Rings | None,
    door: socket.socket | None,
    rpc_listening: socket.socket | None,
) -> int:
    """Import the app, check it, build the master and run it."""
    if app is not None:
        import_or_log(app, config.need_app)
    config = with_declarations(config)
    check_programs(config)
    for num, seconds in config.timers:
        timer_event(num, seconds)  # raises ScheduleError naming a bad one, before anything
    for num, seconds in config.rb_timers:
        rb_timer_event(num, seconds)
    CURRENT.config = config
    master = Master(
        config,
        TABLE,
        hooks=DECLARED.postfork_hooks,
        child_main=run_child,
        events=DECLARED.events,
        controller=controller,
        controller_rings=controller_rings,
        listening=listening,
        door=door,
        rpc_listening=rpc_listening,
        caches=CURRENT.caches,
    )
    check_targets(master)
    for event in master.declared_events:
        master.check_event(event)
    try:
        return master.run()
    finally:
        remove_private_dir(config)


def listen_for_remote_signals(config: RuntimeConfig) -> socket.socket | None:
    """The socket that takes signals from other nodes, if the config asks for one."""
    if config.remote_signals is None:
        return None
    return bind_listener(config.remote_signals, config.remote_signals_any)


def spool_dirs_of(
    spooler: bool | str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> list[str]:
    """The directories ``spooler`` names: none for True/False, one path, or several."""
    if isinstance(spooler, bool):
        return []
    if isinstance(spooler, (str, os.PathLike)):
        return [os.fspath(spooler)]
    return [os.fspath(path) for path in spooler]


def import_or_log(app: str, need_app: bool) -> None:
    """Import the app; unless ``need_app``, an app that raises is logged, as uWSGI 2.0 does."""
    try:
        import_app(app)
    except AppImportError as exc:
        if need_app:
            raise
        log.error("%s\nno app loaded: going on with what it registered before it raised", exc)


def listen_for_rpc(config: RuntimeConfig) -> socket.socket | None:
    """The socket where the workers answer RPC requests, if the config asks for one."""
    if config.rpc_socket is None:
        return None
    return bind_listener(
        config.rpc_socket,
        config.rpc_socket_any,
        what="RPC requests",
        allow_with="rpc_socket_any=True (--rpc-socket-any)",
    )


def open_door(config: RuntimeConfig) -> tuple[RuntimeConfig, socket.socket | None]:
    """Bind the attach socket if the config keeps attach slots; fill in its path."""
    if not config.attach:
        return config, None
    if config.attach_socket is None:
        private = tempfile.mkdtemp(prefix=PRIVATE_DIR_PREFIX)  # mode 0700
        config = attrs.evolve(config, attach_socket=os.path.join(private, "attach.sock"))
    assert config.attach_socket is not None
    return config, bind_door(config.attach_socket)


def remove_private_dir(config: RuntimeConfig) -> None:
    """Remove the directory `open_door` made for the attach socket, once it is empty."""
    if config.attach_socket is None:
        return
    parent = os.path.dirname(config.attach_socket)
    if os.path.basename(parent).startswith(PRIVATE_DIR_PREFIX):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(config.attach_socket)
        with contextlib.suppress(OSError):
            os.rmdir(parent)


def with_declarations(config: RuntimeConfig) -> RuntimeConfig:
    """Add the mules and farms the app declared to those of the command line."""
    farms = {farm.name: farm for farm in config.farms}
    for farm in DECLARED.farms.values():
        farms.setdefault(farm.name, farm)
    mules = max([config.mules, *DECLARED.mules])
    programs = {program.mule: program for program in config.programs}
    for program in DECLARED.programs.values():
        known = programs.setdefault(program.mule, program)
        if known != program:
            raise TargetError(
                f"mule {program.mule} is given two loops: {known.describe()} and "
                f"{program.describe()}"
            )
    return attrs.evolve(
        config, mules=mules, farms=tuple(farms.values()), programs=tuple(programs.values())
    )


def check_programs(config: RuntimeConfig) -> None:
    """Refuse to start a programmed mule whose loop cannot be found (it would die in a loop).

    The module is looked up, not imported: the mule imports it, after fork.
    """
    for program in config.programs:
        body = program.body
        if callable(body):
            continue
        if body.endswith(".py"):
            if not os.path.isfile(body):
                raise TargetError(f"mule {program.mule}'s loop {body!r}: no such file")
            continue
        module = body.partition(":")[0]
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        if found is None:
            raise TargetError(
                f"mule {program.mule}'s loop {body!r} cannot be imported: no module named "
                f"{module!r} (give --pythonpath DIR, or run from its directory)"
            )


def check_targets(master: Master) -> None:
    """Refuse to start when a registered handler targets a process that will not exist."""
    for num, entry in TABLE.entries().items():
        if not master.target_exists(entry.target):
            raise TargetError(
                f"signal {num} targets {str(entry.target)!r}, which names no process of this "
                f"runtime ({master.config.workers} workers, {master.config.attach} attach slots, "
                f"{master.config.mule_count} mules, "
                f"farms {[farm.name for farm in master.config.farms]}, "
                f"{'a' if master.config.spooler else 'no'} spooler, "
                f"{'a' if master.config.cluster else 'no'} cluster)"
            )


def configure_logging(log_file: str | None, level: str = "info") -> None:
    """Send uwsgisig's log to ``log_file`` or, if the program set up no logging, to stderr."""
    log.setLevel(level.upper())
    if log_file is not None:
        handler: logging.Handler = logging.FileHandler(log_file)
    elif not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
    else:
        return
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    log.addHandler(handler)
