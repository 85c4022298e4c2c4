"""The uWSGI signal calls, implemented on uwsgisig's own runtime."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import signal as _signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from ..errors import (
    MAX_SIGNAL,
    CacheConfigError,
    NotInClusterError,
    NotInRuntimeError,
    RpcError,
    ScheduleError,
    SignalAlreadyRegisteredError,
    TargetError,
    check_signal_number,
)
from ..runtime.child import offload
from ..runtime.child.attach import Attachment, attach_to
from ..runtime.ipc.cache import Cache, MathOp
from ..runtime.ipc.locks import SharedLocks
from ..runtime.ipc.messages import MessageQueue, PostOffice, as_message
from ..runtime.ipc.spool import SpoolDir
from ..runtime.model import app
from ..runtime.model.app import DECLARED
from ..runtime.model.config import FarmSpec, MuleProgram
from ..runtime.model.process import CURRENT
from ..runtime.model.roles import Role
from ..runtime.model.rpc import MAX_NAME as MAX_RPC_NAME
from ..runtime.model.table import TABLE
from ..runtime.model.targets import Target, parse_target, target_code
from ..runtime.schedule.cron import CronSpec
from ..runtime.schedule.events import (
    CronEvent,
    Event,
    FileEvent,
    encode,
    ms_timer_event,
    rb_timer_event,
    timer_event,
)
from ..runtime.wire.jobs import JobValue
from ..runtime.wire.remote import parse_address, send_remote_signal
from ..runtime.wire.rpc import call_remote

__all__ = [
    "NAME",
    "cache_clear",
    "cache_dec",
    "cache_del",
    "cache_div",
    "cache_exists",
    "cache_get",
    "cache_inc",
    "cache_keys",
    "cache_mul",
    "cache_num",
    "cache_set",
    "cache_update",
    "check_cron",
    "check_crontab",
    "check_monitor_path",
    "check_ms_timer",
    "check_rpc_name",
    "check_spooler_frequency",
    "check_timer",
    "check_unique",
    "add_cron",
    "add_crontab",
    "add_file_monitor",
    "add_ms_timer",
    "add_rb_timer",
    "add_timer",
    "add_postfork_hook",
    "attach_worker",
    "detach_worker",
    "is_locked",
    "lock",
    "reload",
    "run_coroutines_on",
    "set_user_harakiri",
    "stop",
    "total_requests",
    "unlock",
    "workers",
    "call_offloaded",
    "declare_farm",
    "declare_mule",
    "declare_program",
    "farm_get_msg",
    "farm_msg",
    "i_am_the_spooler",
    "in_farm",
    "masterpid",
    "mule_get_msg",
    "mule_id",
    "mule_msg",
    "numproc",
    "on_reset",
    "options",
    "parse_target",
    "register_offload",
    "register_rpc",
    "rpc_call",
    "rpc_list",
    "rpc_registered",
    "rpc_remote",
    "register_signal",
    "set_message_hook",
    "set_spool_handler",
    "spool",
    "spooler_get_task",
    "spooler_jobs",
    "spooler_pid",
    "spooler_pids",
    "set_spooler_frequency",
    "signal",
    "signal_received",
    "signal_registered",
    "signal_cluster",
    "signal_wait",
    "worker_id",
]

NAME = "embedded"


def on_reset(hook: Callable[[], object]) -> None:
    """Call ``hook`` whenever the runtime's declarations are reset (the API's registry)."""
    DECLARED.on_reset(hook)


def register_signal(num: int, who: str, handler: Callable[[int], Any]) -> None:
    """Register ``handler`` for signal ``num``, run by target ``who``."""
    check_signal_number(num)
    target = parse_target(who)
    if not callable(handler):
        raise TypeError(f"a signal handler must be callable, not {handler!r}")
    if TABLE.is_registered(num):
        raise SignalAlreadyRegisteredError(f"signal {num} is already registered")
    if CURRENT.loop is not None:
        _register_with_master(num, who, target)
    TABLE.register(num, target, handler)


def _register_with_master(num: int, who: str, target: Target) -> None:
    """After fork: tell the master this process alone runs ``num``."""
    if target.kind == "farm" and target.name:
        index = CURRENT.config.farm_index(target.name)
        if not index:
            raise TargetError(f"target {who!r} names no farm of this runtime")
        target = Target("farm", index=index)
    kind, index = target_code(target)
    assert CURRENT.loop is not None
    CURRENT.loop.link.register(num, kind, index, describe=who)


def signal(num: int, remote: str | None = None) -> None:
    """Raise signal ``num`` in this runtime, or on the uWSGI node at ``remote``."""
    loop = CURRENT.loop
    if remote is None and loop is not None and type(num) is int and 0 <= num <= MAX_SIGNAL:
        loop.link.raise_signal(num)  # the hot path: a child raising a valid number
        return
    check_signal_number(num)
    if remote is not None:
        send_remote_signal(num, remote)
    elif CURRENT.loop is not None:
        CURRENT.loop.link.raise_signal(num)
    elif CURRENT.role == Role.MASTER:
        CURRENT.early_signals.append(num)
    else:
        raise NotInRuntimeError(
            f"cannot raise signal {num}: this process is not part of a running runtime "
            "(start one with `uwsgisig run APP` or uwsgisig.Runtime(...).start())"
        )


def signal_cluster(num: int) -> None:
    """Raise signal ``num`` on every node of this runtime's cluster."""
    check_signal_number(num)
    loop = CURRENT.loop
    if loop is None:
        raise NotInRuntimeError(
            f"cannot raise signal {num} on the cluster: only a worker, mule or spooler of a "
            "running runtime can"
        )
    if CURRENT.config.cluster is None:
        raise NotInClusterError(
            f"cannot raise signal {num} on the cluster: this runtime is in no cluster "
            "(start it with --cluster URL)"
        )
    loop.link.raise_on_cluster(num)


def signal_wait(num: int | None = None, timeout: float | None = None) -> int:
    """Block until signal ``num`` (or any) arrives; return its number."""
    if num is not None:
        check_signal_number(num)
    if CURRENT.loop is None:
        raise NotInRuntimeError("signal_wait() works only in a worker, mule or spooler")
    return CURRENT.loop.wait(num, timeout)


def signal_received() -> int | None:
    """The last signal this process received, or None if none yet."""
    return CURRENT.last_received


def signal_registered(num: int) -> bool:
    """Whether signal ``num`` has a handler in this process's table."""
    return TABLE.is_registered(num)


def worker_id() -> int:
    """This worker's id (from 1), or 0 if this process is not a worker."""
    return CURRENT.id if CURRENT.role == Role.WORKER else 0


def mule_id() -> int:
    """This mule's id (from 1), or 0 if this process is not a mule."""
    return CURRENT.id if CURRENT.role == Role.MULE else 0


def i_am_the_spooler() -> bool:
    """Whether this process is the spooler."""
    return CURRENT.role == Role.SPOOLER


def masterpid() -> int:
    """The master's pid, or 0 outside a runtime."""
    return CURRENT.masterpid


def numproc() -> int:
    """The number of workers of this runtime, or 0 outside one."""
    return CURRENT.config.worker_slots if CURRENT.role is not None else 0


def options() -> dict[str, object]:
    """This runtime's settings, keyed as uWSGI's ``uwsgi.opt`` keys them; empty outside one."""
    if CURRENT.role is None:
        return {}
    config = CURRENT.config
    opt: dict[str, object] = {"master": True, "processes": config.worker_slots}
    if config.mule_count:
        opt["mules"] = config.mule_count
    if config.farms:
        opt["farm"] = [f"{farm.name}:{','.join(map(str, farm.mules))}" for farm in config.farms]
    if config.spooler:
        opt["spooler"] = config.spool_dir or True
    if config.remote_signals:
        opt["remote-signals"] = config.remote_signals
    return opt


def in_farm(name: str | None = None) -> bool:
    """Whether this mule belongs to farm ``name`` (to any farm when ``name`` is None)."""
    return bool(CURRENT.farms) if name is None else name in CURRENT.farms


def declare_mule(mule_id: int) -> None:
    """Start mule ``mule_id`` (and the mules before it) with the runtime."""
    app.declare_mule(mule_id)


def declare_farm(name: str, mules: tuple[int, ...]) -> None:
    """Start farm ``name`` made of ``mules`` with the runtime."""
    app.declare_farm(FarmSpec(name, mules))


def add_postfork_hook(hook: Callable[[], object]) -> None:
    """Run ``hook`` in every child right after fork."""
    app.DECLARED.postfork_hooks.append(hook)


def add_timer(signum: int, seconds: float, unique: bool = False) -> None:
    """Raise ``signum`` every ``seconds`` seconds, from the master (``unique``: on one
    node of the cluster for each tick)."""
    _add_event(timer_event(signum, seconds, unique))


def add_rb_timer(signum: int, seconds: float, iterations: int = 0, unique: bool = False) -> None:
    """Raise ``signum`` every ``seconds`` seconds, ``iterations`` times (0 = forever)."""
    _add_event(rb_timer_event(signum, seconds, iterations, unique))


def add_ms_timer(signum: int, ms: float, unique: bool = False) -> None:
    """Raise ``signum`` every ``ms`` milliseconds, from the master."""
    _add_event(ms_timer_event(signum, ms, unique))


def add_cron(
    signum: int,
    minute: int | None = -1,
    hour: int | None = -1,
    day: int | None = -1,
    month: int | None = -1,
    weekday: int | None = -1,
    unique: bool = False,
) -> None:
    """Raise ``signum`` in every minute that matches; -1 (or None) is any, -N every N."""
    spec = CronSpec.from_uwsgi(minute, hour, day, month, weekday)
    _add_event(CronEvent(signum, spec, unique))


def add_crontab(signum: int, crontab: str, unique: bool = False) -> None:
    """Raise ``signum`` in every minute the 5-field ``crontab`` string matches."""
    _add_event(CronEvent(signum, CronSpec.parse(crontab), unique))


def check_unique() -> None:
    """Raise unless schedules can be unique (once per cluster) here: the master checks
    that the runtime has a cluster."""


def add_file_monitor(signum: int, path: str | os.PathLike[str], unique: bool = False) -> None:
    """Raise ``signum`` whenever the file or directory ``path`` changes."""
    _add_event(FileEvent(signum, path, unique))


def check_timer(seconds: float, iterations: int = 0) -> None:
    """Raise `ScheduleError` unless ``add_rb_timer(n, seconds, iterations)`` would accept them."""
    rb_timer_event(0, seconds, iterations)


def check_ms_timer(ms: float) -> None:
    """Raise `ScheduleError` unless ``add_ms_timer(n, ms)`` would accept ``ms``."""
    ms_timer_event(0, ms)


def check_cron(*fields: int | None) -> None:
    """Raise `ScheduleError` unless ``add_cron(n, *fields)`` would accept them."""
    CronSpec.from_uwsgi(*fields)


def check_crontab(crontab: str) -> None:
    """Raise `ScheduleError` unless ``crontab`` parses."""
    CronSpec.parse(crontab)


def check_monitor_path(path: str | os.PathLike[str]) -> None:
    """Raise `FileNotFoundError` (a `ScheduleError`) unless ``path`` exists."""
    FileEvent(0, path)


def _add_event(event: Event) -> None:
    """Before fork the master arms the event when it starts; after fork a child asks it."""
    if CURRENT.loop is None:
        app.DECLARED.events.append(event)
        return
    if not CURRENT.loop.link.add_event(event.signum, encode(event)):
        raise ScheduleError(f"the master could not arm {event} (its log says why)")


# ---------------------------------------------------------------- mule messages


def mule_msg(
    message: bytes | str, mule: int | str | None = None, *, timeout: float | None = None
) -> bool:
    """Send ``message`` to mule ``mule``, to the first free mule (None or 0), or to a farm (str).

    Waits up to ``timeout`` seconds (the runtime's send timeout by default)
    while the queue is full, then raises `MessageQueueFullError`. Returns True.
    """
    data = as_message(message)
    post = _post_office("send a mule message")
    queue = post.to_farm(mule) if isinstance(mule, str) else post.to_mule(mule or 0)
    _put(queue, data, timeout)
    return True


def farm_msg(farm: str, message: bytes | str, *, timeout: float | None = None) -> bool:
    """Send ``message`` to farm ``farm``: the first of its mules that is free takes it."""
    data = as_message(message)
    if not isinstance(farm, str):
        raise TargetError(f"invalid farm {farm!r}: a farm name is a str")
    _put(_post_office("send a farm message").to_farm(farm), data, timeout)
    return True


def _put(queue: MessageQueue, data: bytes, timeout: float | None) -> None:
    _check_timeout(timeout)
    queue.put(data, CURRENT.config.send_timeout if timeout is None else timeout)


def _check_timeout(timeout: object) -> None:
    """Raise unless ``timeout`` is None or a number of seconds >= 0."""
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise ValueError(f"invalid timeout {timeout!r}: give seconds >= 0, or None")


def _post_office(what: str) -> PostOffice:
    if CURRENT.post is None:
        raise NotInRuntimeError(
            f"cannot {what}: messages are sent from a worker, mule or spooler of a running runtime"
        )
    return CURRENT.post


def mule_get_msg(
    signals: bool = True,
    farms: bool = True,
    buffer_size: int = 65536,
    timeout: float | None = -1,
) -> bytes | None:
    """In a mule: block until a message for it (or, with ``farms``, for its farms) arrives.

    Signals that arrive meanwhile run their handlers unless ``signals`` is
    False. ``timeout`` is in seconds; -1 or None waits forever. Returns None on
    timeout. Messages are never cut: ``buffer_size`` is accepted for uWSGI's
    sake and ignored.
    """
    del buffer_size
    return _get_message("mule_get_msg", signals=signals, mule=True, farms=farms, timeout=timeout)


def farm_get_msg(*, signals: bool = True, timeout: float | None = None) -> bytes | None:
    """In a mule: block until a message for one of its farms arrives; None on timeout."""
    return _get_message("farm_get_msg", signals=signals, mule=False, farms=True, timeout=timeout)


def _get_message(
    call: str, *, signals: bool, mule: bool, farms: bool, timeout: float | None
) -> bytes | None:
    loop = CURRENT.loop
    if loop is None or loop.mailbox is None:
        raise NotInRuntimeError(f"{call}() works only in a mule")
    if timeout != -1:  # uWSGI's "forever"
        _check_timeout(timeout)
    wait = None if timeout is None or timeout == -1 else float(timeout)
    sources = loop.sources(signals=signals, mail=loop.mailbox.queues(mule=mule, farms=farms))
    return loop.get_message(sources, wait)


def set_message_hook(hook: Callable[[bytes], object] | None) -> None:
    """Run ``hook(message)`` in a mule's default loop for each message that is not a call."""
    if hook is not None and not callable(hook):
        raise TypeError(f"a message hook must be callable, not {hook!r}")
    DECLARED.message_hook = hook


def register_offload(func: Callable[..., Any]) -> str:
    """Make ``func`` runnable by a mule message; return the name it travels under."""
    if not callable(func):
        raise TypeError(f"only a callable can be offloaded, not {func!r}")
    return offload.register(func)


def call_offloaded(
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    mule: int = 0,
    farm: str | None = None,
) -> None:
    """Ask mule ``mule`` (0: the first free one) or farm ``farm`` to run ``name``."""
    message = offload.pack_call(name, args, kwargs)
    if farm is not None:
        farm_msg(farm, message)
    else:
        mule_msg(message, mule)


def declare_program(mule: int | None, body: Callable[[], object] | str) -> int:
    """Make mule ``mule`` (None: the next free id) run ``body``; return the mule's id."""
    if CURRENT.loop is not None:
        raise NotInRuntimeError(
            "a mule's loop is declared in the app module, before the runtime forks"
        )
    if mule is None:
        known = [CURRENT.config.mule_count, *app.DECLARED.mules]
        mule = max(known) + 1
    app.declare_program(MuleProgram(mule, body))
    return mule


# ---------------------------------------------------------------- spooler


def spool(
    message: dict[str, JobValue] | None = None,
    *,
    body: bytes | None = None,
    at: float | None = None,
    spooler: str | os.PathLike[str] | None = None,
    retries: int | None = None,
    priority: int | None = None,
    **fields: JobValue,
) -> str:
    """Write a job to the spool directory and wake the spooler; return the job's path.

    ``spooler`` names another of the runtime's spoolers (by its directory or
    the directory's name), or any directory (outside a runtime: the runtime's
    spooler finds the job at its next look). ``at`` is the UNIX time before
    which the job does not run; ``retries`` the tries after the first before
    it goes to the dead letters; ``priority`` (lower first) its place in line.
    """
    job: dict[str, JobValue] = {**(message or {}), **fields}
    if body is not None:
        if not isinstance(body, bytes):
            raise TypeError(f"a spool job's body is bytes, not {type(body).__name__}")
        job["body"] = body
    if at is not None and (
        isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at)
    ):
        raise ValueError(f"invalid at {at!r}: give a finite UNIX time in seconds")
    if spooler is not None and not isinstance(spooler, (str, os.PathLike)):
        raise TypeError(
            f"invalid spooler {spooler!r}: give the path of a spool directory (a str or a Path)"
        )
    directory = _spool_dir_named(spooler) if spooler is not None else CURRENT.config.spool_dir
    if directory is None:
        raise NotInRuntimeError(
            "cannot spool: this runtime has no spool directory (start it with "
            "--spooler DIR, or pass spooler=DIR)"
        )
    path = _spool_dir(directory).put(job, at=at, retries=retries, priority=priority)
    if CURRENT.loop is not None and CURRENT.config.spooler:
        # Waking the spooler for a job in another directory costs it one look.
        CURRENT.loop.link.spooled()
    return str(path)


_SPOOL_DIRS: dict[str, SpoolDir] = {}


def _spool_dir(directory: str | os.PathLike[str]) -> SpoolDir:
    """The `SpoolDir` of ``directory``, made (and the directory created) once per process."""
    key = os.fspath(directory)
    found = _SPOOL_DIRS.get(key)
    if found is None or not found.path.is_dir():
        found = _SPOOL_DIRS[key] = SpoolDir(directory)
    return found


def _spool_dir_named(spooler: str | os.PathLike[str]) -> str:
    """The runtime's spool directory that ``spooler`` names (its path, or its last part),
    else ``spooler`` itself, as a directory."""
    wanted = os.fspath(spooler)
    dirs = CURRENT.config.spool_dirs
    for directory in dirs:
        if wanted == directory or os.path.realpath(wanted) == os.path.realpath(directory):
            return directory
    named = [directory for directory in dirs if os.path.basename(directory.rstrip("/")) == wanted]
    if len(named) > 1:
        raise ValueError(
            f"spooler {wanted!r} names {len(named)} spoolers ({', '.join(named)}): give its path"
        )
    return named[0] if named else wanted


def set_spool_handler(handler: Callable[[dict[str, Any]], object] | None) -> None:
    """Run ``handler(job)`` in the spooler for each job; None or SPOOL_OK means done."""
    if handler is not None and not callable(handler):
        raise TypeError(f"a spool handler must be callable, not {handler!r}")
    DECLARED.spool_handler = handler


_attachment: Attachment | None = None


def attach_worker(path: str, workers: int | None = None) -> int:
    """Attach this process to the runtime at ``path`` as a worker; return its worker id.

    Its post-fork hooks run here, then its signal loop runs in a daemon thread.
    """
    global _attachment
    if _attachment is not None and _attachment.pid == os.getpid() and CURRENT.loop is not None:
        return _attachment.id
    if CURRENT.role == Role.MASTER:
        return 0  # the master imports the app too: its attach call is for the server's workers
    if CURRENT.role is not None:
        raise NotInRuntimeError(
            f"this process is already the runtime's {CURRENT.role.name.lower()}: "
            "only a process the runtime did not start attaches"
        )
    _attachment = attach_to(path, workers=workers)
    _attachment.serve_in_thread(DECLARED.postfork_hooks)
    return _attachment.id


def detach_worker() -> None:
    """Leave the runtime this process attached to; nothing if it is not attached."""
    global _attachment
    if _attachment is not None and _attachment.pid == os.getpid():
        _attachment.detach()
    _attachment = None


def _forget_attachment_in_child() -> None:
    # A process forked by an attached worker is not that worker: it may attach itself.
    global _attachment
    if _attachment is not None:
        _attachment.leave_copy()
        _attachment = None


os.register_at_fork(after_in_child=_forget_attachment_in_child)


def run_coroutines_on(loop: asyncio.AbstractEventLoop) -> None:
    """In an attached ASGI worker: run ``async def`` signal handlers on its event loop."""
    if CURRENT.loop is not None:
        CURRENT.loop.run_coroutines_on(loop)


def _locks() -> SharedLocks:
    if CURRENT.locks is None:
        raise NotInRuntimeError(
            "locks exist only in a worker, mule or spooler of a running runtime"
        )
    return CURRENT.locks


def lock(num: int = 0) -> None:
    """Block until user lock ``num`` is held by this thread of this process."""
    _locks().acquire(num)


def unlock(num: int = 0) -> None:
    """Release user lock ``num`` (nothing if this process does not hold it, as in uWSGI)."""
    _locks().release(num)


def is_locked(num: int = 0) -> bool:
    """Whether some process holds user lock ``num``."""
    return _locks().is_locked(num)


def _master() -> int:
    if CURRENT.role is None or not CURRENT.masterpid:
        raise NotInRuntimeError("this process is not part of a running runtime")
    return CURRENT.masterpid


def reload() -> None:
    """Reload the runtime's workers gracefully, as SIGHUP to the master does."""
    os.kill(_master(), _signal.SIGHUP)


def stop() -> None:
    """Stop the runtime at once, as SIGINT to the master does."""
    os.kill(_master(), _signal.SIGINT)


def workers() -> list[dict[str, Any]]:
    """Every worker's figures, as the stats server has them (uWSGI's ``workers()``)."""
    if CURRENT.loop is None:
        raise NotInRuntimeError("workers() works only in a worker, mule or spooler")
    return json.loads(CURRENT.loop.link.workers())


def total_requests() -> int:
    """Requests served: the runtime serves none (a web server beside it counts its own)."""
    return 0


def set_user_harakiri(seconds: float) -> None:
    """Be killed (and replaced) unless this is called again with 0 within ``seconds``."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
        math.isfinite(seconds) and seconds >= 0
    ):
        raise ValueError(f"invalid harakiri {seconds!r}: a finite number of seconds >= 0")
    if CURRENT.loop is None:
        raise NotInRuntimeError("set_user_harakiri() works only in a worker, mule or spooler")
    CURRENT.loop.set_user_harakiri(seconds)


# ---------------------------------------------------------------- RPC


def check_rpc_name(name: object) -> None:
    """Raise `RpcError` unless ``name`` is a str of 1 to 254 bytes (uWSGI's limit)."""
    if not isinstance(name, str) or not name:
        raise RpcError(f"invalid RPC name {name!r}: give a non-empty str")
    if len(name.encode("utf-8", "surrogateescape")) >= MAX_RPC_NAME:
        raise RpcError(
            f"invalid RPC name {name[:20]!r}...: at most {MAX_RPC_NAME - 1} bytes, as in uWSGI"
        )


def register_rpc(name: str, func: Callable[..., object]) -> None:
    """Register ``func`` as RPC function ``name`` in this process (the master's: in all)."""
    check_rpc_name(name)
    if not callable(func):
        raise TypeError(f"an RPC function must be callable, not {func!r}")
    if CURRENT.role in (Role.MULE, Role.SPOOLER):
        raise RpcError(
            f"cannot register RPC function {name!r} in a {CURRENT.role.name.lower()}: only "
            "the master (at import) and the workers can, as in uWSGI"
        )
    DECLARED.rpc.register(name, func)


def rpc_registered(name: str) -> bool:
    """Whether RPC function ``name`` is registered in this process."""
    return DECLARED.rpc.get(name) is not None


def rpc_call(name: str, args: list[bytes]) -> bytes | None:
    """Run RPC function ``name`` in this process; its non-empty bytes result, else None."""
    return DECLARED.rpc.call(name, args)


def rpc_remote(node: str, name: str, args: list[bytes]) -> bytes | None:
    """Call RPC function ``name`` on the node ``node`` (``HOST:PORT``); OSError if unreachable."""
    host, port = parse_address(node)
    return call_remote(node, host, port, name.encode("utf-8", "surrogateescape"), args)


def rpc_list() -> list[str]:
    """The RPC functions registered in this process."""
    return DECLARED.rpc.names()


# ---------------------------------------------------------------- caches
# uWSGI's cache calls, as its Python 3 module behaves (measured on 2.0.31):
# True or None, never False; keys and values are str (UTF-8) or bytes.

_log = logging.getLogger("uwsgisig")
_UNKNOWN_CACHES: set[str] = set()
_INT64 = (-(2**63), 2**63 - 1)


def _cache(name: str | None, call: str, position: int) -> Cache | None:
    """The cache called ``name`` (the first cache for None); None, logged once, if none."""
    if name is not None and not isinstance(name, str):
        raise TypeError(f"{call}() argument {position} must be str, not {type(name).__name__}")
    store = CURRENT.caches
    if store is None and CURRENT.role is None:
        raise NotInRuntimeError(
            "caches exist only in a running runtime: its master, workers, mules and spooler"
        )
    found = store.cache(name) if store is not None else None
    if found is None and (name or "") not in _UNKNOWN_CACHES:
        _UNKNOWN_CACHES.add(name or "")
        _log.warning(
            "no cache %s in this runtime: %s() finds nothing (define caches with --cache N "
            "or --cache2 name=NAME,items=N; remote caches, NAME@HOST, are not offered)",
            repr(name) if name else "at all",
            call,
        )
    return found


def _cache_bytes(value: object, call: str, position: int) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    raise TypeError(
        f"{call}() argument {position} must be str or bytes, not {type(value).__name__}"
    )


def _cache_int(value: object, call: str, what: str) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{call}(): {what} must be an int, not {type(value).__name__}")
    if not _INT64[0] <= value <= _INT64[1]:
        raise OverflowError(f"{call}(): {what} {value} does not fit in a signed 64-bit int")
    return int(value)


def _true_or_none(done: bool) -> Literal[True] | None:
    return True if done else None


def cache_get(key: str | bytes, cache: str | None = None, /) -> bytes | None:
    """The value of ``key`` in ``cache`` (the first cache by default); None if absent."""
    raw = _cache_bytes(key, "cache_get", 1)
    found = _cache(cache, "cache_get", 2)
    return found.get(raw) if found is not None else None


def _store(
    call: str, key: object, value: object, expires: object, cache: str | None, update: bool
) -> Literal[True] | None:
    raw_key = _cache_bytes(key, call, 1)
    raw_value = _cache_bytes(value, call, 2)
    seconds = _cache_int(expires, call, "expires")
    found = _cache(cache, call, 4)
    stored = found is not None and found.set(raw_key, raw_value, seconds, update=update)
    return _true_or_none(stored)


def cache_set(
    key: str | bytes, value: str | bytes, expires: int = 0, cache: str | None = None, /
) -> Literal[True] | None:
    """Store ``value`` if ``key`` holds nothing (uWSGI's set); True, or None if not stored."""
    return _store("cache_set", key, value, expires, cache, update=False)


def cache_update(
    key: str | bytes, value: str | bytes, expires: int = 0, cache: str | None = None, /
) -> Literal[True] | None:
    """Store ``value`` whether or not ``key`` holds one; True, or None if refused."""
    return _store("cache_update", key, value, expires, cache, update=True)


def cache_del(key: str | bytes, cache: str | None = None, /) -> Literal[True] | None:
    """Remove ``key``; True, or None if it held nothing."""
    raw = _cache_bytes(key, "cache_del", 1)
    found = _cache(cache, "cache_del", 2)
    return _true_or_none(found is not None and found.delete(raw))


def cache_exists(key: str | bytes, cache: str | None = None, /) -> Literal[True] | None:
    """True if ``key`` holds a value that has not expired, else None."""
    raw = _cache_bytes(key, "cache_exists", 1)
    found = _cache(cache, "cache_exists", 2)
    return _true_or_none(found is not None and found.exists(raw))


def cache_clear(cache: str | None = None, /) -> Literal[True] | None:
    """Remove every item of ``cache``; True, or None if there is no such cache."""
    found = _cache(cache, "cache_clear", 1)
    if found is None:
        return None
    found.clear()
    return True


def _math(
    call: str, op: str, key: object, value: object, expires: object, cache: str | None
) -> Literal[True] | None:
    raw = _cache_bytes(key, call, 1)
    delta = _cache_int(value, call, "value")
    seconds = _cache_int(expires, call, "expires")
    found = _cache(cache, call, 4)
    return _true_or_none(found is not None and found.math(raw, op, delta, seconds))


def cache_inc(
    key: str | bytes, value: int = 1, expires: int = 0, cache: str | None = None, /
) -> Literal[True] | None:
    """Add ``value`` to the int64 in ``key`` (a new key starts at the cache's math_initial)."""
    return _math("cache_inc", MathOp.INC, key, value, expires, cache)


def cache_dec(
    key: str | bytes, value: int = 1, expires: int = 0, cache: str | None = None, /
) -> Literal[True] | None:
    """Subtract ``value`` from the int64 in ``key``."""
    return _math("cache_dec", MathOp.DEC, key, value, expires, cache)


def cache_mul(
    key: str | bytes, value: int = 2, expires: int = 0, cache: str | None = None, /
) -> Literal[True] | None:
    """Multiply the int64 in ``key`` by ``value``."""
    return _math("cache_mul", MathOp.MUL, key, value, expires, cache)


def cache_div(
    key: str | bytes, value: int = 2, expires: int = 0, cache: str | None = None, /
) -> Literal[True] | None:
    """Divide the int64 in ``key`` by ``value`` (truncating; by 0 gives 0, as in uWSGI)."""
    return _math("cache_div", MathOp.DIV, key, value, expires, cache)


def cache_num(key: str | bytes, cache: str | None = None, /) -> int:
    """The int64 in ``key``; 0 if it is absent or does not hold 8 bytes."""
    raw = _cache_bytes(key, "cache_num", 1)
    found = _cache(cache, "cache_num", 2)
    return found.num(raw) if found is not None else 0


def cache_keys(cache: str | None = None, /) -> list[bytes]:
    """Every key of ``cache`` that holds a live value; ValueError if there is no such cache."""
    found = _cache(cache, "cache_keys", 1)
    if found is None:
        raise CacheConfigError(
            f"no local uWSGI cache available: this runtime has no cache {cache!r}"
            if cache
            else "no local uWSGI cache available: this runtime has no cache"
        )
    return found.keys()


# ---------------------------------------------------------------- the spoolers


def spooler_jobs() -> list[str]:
    """The jobs waiting in the first spooler's directory, in the order they will run."""
    directory = CURRENT.config.spool_dir
    return [str(path) for path in SpoolDir(directory).pending()] if directory else []


def spooler_pids() -> list[int]:
    """The pids of the spooler processes; empty outside a runtime."""
    if CURRENT.loop is None:
        return []
    return [
        pid for role, _, pid, _ in CURRENT.loop.link.status() if role == Role.SPOOLER and pid
    ]


def spooler_pid() -> int:
    """The pid of the (first) spooler process, or 0."""
    pids = spooler_pids()
    return pids[0] if pids else 0


def check_spooler_frequency(seconds: object) -> None:
    """Raise ValueError unless ``seconds`` is whole seconds from 0 to 65535."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= 65535:
        raise ValueError(f"invalid spooler frequency {seconds!r}: whole seconds, 0 to 65535")


def set_spooler_frequency(seconds: int) -> None:
    """Make every spooler look at its jobs every ``seconds`` (0: --spooler-frequency again)."""
    check_spooler_frequency(seconds)
    if CURRENT.loop is None:
        raise NotInRuntimeError(
            "set_spooler_frequency() works only in a worker, mule or spooler"
        )
    CURRENT.loop.link.set_spooler_frequency(seconds)


def spooler_get_task(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The job in the file ``path`` (with ``spooler_task_name``), or None if it is none."""
    task = Path(os.fspath(path))
    try:
        job = SpoolDir.load(task)
    except (OSError, ValueError):
        # A job still in its journal (see `runtime.ipc.journal`) has no file yet.
        in_journal = SpoolDir(task.parent).job_named(task.name) if task.parent.is_dir() else None
        if in_journal is None:
            return None
        job = in_journal
    return {**job.message, "spooler_task_name": str(task)}
