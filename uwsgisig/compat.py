"""A ``uwsgi`` module backed by uwsgisig's runtime, for apps written against uWSGI.

``uwsgisig run --uwsgi-compat APP`` calls `install` before it imports the app,
so ``import uwsgi`` (and uWSGI's ``uwsgidecorators``, which imports it) finds
this module. It offers uWSGI's signal, timer, cron, file-monitor, mule, farm
and spooler calls, with uWSGI's names, arguments and return values. Every
other call of uWSGI's module exists and raises `NotImplementedError` naming
the call.

```python
from uwsgisig import compat

uwsgi = compat.install()
uwsgi.register_signal(30, "workers", on_reload)
```
"""

from __future__ import annotations

import functools
import importlib.machinery
import logging
import os
import socket
import sys
import time
import types
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from . import platform
from .spooler import SPOOL_IGNORE, SPOOL_OK, SPOOL_RETRY

__all__ = [
    "COMPAT_ENV",
    "IMPLEMENTED",
    "NOT_IMPLEMENTED",
    "SPOOL_IGNORE",
    "SPOOL_OK",
    "SPOOL_RETRY",
    "UwsgiModule",
    "install",
    "uninstall",
]

log = logging.getLogger("uwsgisig")

MODULE_NAME = "uwsgi"

# Set by ``uwsgisig run --uwsgi-compat`` to the master's pid for the command it
# runs, so that a web server's workers (`uwsgisig.gunicorn`) install this module
# before the app, and `masterpid` answers before they attach (uwsgidecorators
# refuses to load where it is 0).
COMPAT_ENV = "UWSGISIG_UWSGI_COMPAT"

UWSGI_VERSION = (2, 0, 31)  # the release whose module this one follows

OFFERED = (
    "the signal, timer, cron, file-monitor, mule, farm, spooler, lock, cache, RPC and control calls"
)

CACHE_CALLS = (
    "cache_get", "cache_set", "cache_update", "cache_del", "cache_exists", "cache_clear",
    "cache_inc", "cache_dec", "cache_mul", "cache_div", "cache_num", "cache_keys",
)  # fmt: skip

NOT_IMPLEMENTED = (
    # queue, shared area, metrics, SNMP
    "queue_get", "queue_set", "queue_last", "queue_push", "queue_pull", "queue_pop",
    "queue_slot", "queue_pull_slot",
    "sharedarea_read", "sharedarea_write", "sharedarea_readbyte", "sharedarea_writebyte",
    "sharedarea_read8", "sharedarea_write8", "sharedarea_readlong", "sharedarea_writelong",
    "sharedarea_read64", "sharedarea_write64", "sharedarea_read32", "sharedarea_write32",
    "sharedarea_read16", "sharedarea_write16", "sharedarea_inclong", "sharedarea_inc64",
    "sharedarea_inc32", "sharedarea_dec64", "sharedarea_dec32", "sharedarea_rlock",
    "sharedarea_wlock", "sharedarea_unlock", "sharedarea_memoryview", "sharedarea_object",
    "metric_inc", "metric_dec", "metric_mul", "metric_div", "metric_get", "metric_set",
    "metric_set_max", "metric_set_min",
    "snmp_set_counter32", "snmp_set_counter64", "snmp_set_gauge", "snmp_incr_counter32",
    "snmp_incr_counter64", "snmp_incr_gauge", "snmp_decr_counter32", "snmp_decr_counter64",
    "snmp_decr_gauge", "snmp_set_community",
    # the server, its workers and its requests
    "request_id", "log", "log_this_request",
    "set_logvar", "get_logvar", "alarm", "disconnect", "cl",
    "accepting", "setprocname", "listen_queue", "route", "sendfile", "offload",
    "set_warning_message", "mem", "logsize", "i_am_the_lord",
    "lord_scroll", "scrolls", "ready", "chunked_read", "chunked_read_nb",
    "ready_fd", "add_var", "micros", "get_option", "set_option", "getoption", "setoption",
    "sorry_i_need_to_block", "grunt", "has_hook", "parsefile", "embedded_data", "extract",
    "fcgi", "add_probe",
    # async, green threads, websockets, raw connections
    "async_sleep", "async_connect", "async_send_message", "green_schedule", "suspend",
    "wait_fd_read", "wait_fd_write", "connect", "connection_fd", "is_connected", "send",
    "recv", "recv_block", "recv_frame", "close", "websocket_recv", "websocket_recv_nb",
    "websocket_send", "websocket_send_binary", "websocket_handshake",
    # clustering, messages over the uwsgi protocol, Erlang
    "send_message", "send_multi_message", "send_multicast_message", "cluster_nodes",
    "cluster_node_name", "cluster", "cluster_best_node", "erlang_send_message",
    "erlang_register_process", "erlang_recv_message", "erlang_connect", "erlang_rpc",
)  # fmt: skip
"""The calls of uWSGI's module that raise `NotImplementedError` here."""


def _not_implemented_message(call: str) -> str:
    """The `NotImplementedError` message for ``call`` (e.g. ``"cache_get()"``)."""
    return (
        f"uwsgi.{call} is not implemented by uwsgisig's uwsgi-compatible module "
        f"(--uwsgi-compat): it offers {OFFERED}"
    )


def _not_implemented(name: str) -> Callable[..., NoReturn]:
    def call(*args: object, **kwargs: object) -> NoReturn:
        raise NotImplementedError(_not_implemented_message(f"{name}()"))

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"uWSGI's ``{name}()``: not implemented, raises NotImplementedError."
    return call


# ---------------------------------------------------------------- signals


def masterpid() -> int:
    """The master's pid; 0 outside a runtime."""
    known = platform.masterpid()
    if known:
        return known
    beside = os.environ.get(COMPAT_ENV, "")
    return int(beside) if beside.isdigit() else 0


def signal_wait(signum: int | None = None) -> bytes:
    """Block until signal ``signum`` (or any) arrives; get it from `signal_received`.

    Returns ``b""``, as uWSGI does. There is no timeout, as in uWSGI.
    """
    platform.signal_wait(signum)
    return b""


def signal_received() -> int:
    """The last signal this process received, or -1 if none yet."""
    received = platform.signal_received()
    return -1 if received is None else received


def signal_registered(signum: int) -> bool | None:
    """True if ``signum`` has a handler in this process, else None (as uWSGI)."""
    return True if platform.signal_registered(signum) else None


def add_cron(signum: int, minute: int, hour: int, day: int, month: int, weekday: int) -> bool:
    """Raise ``signum`` in every minute that matches (-1 any, -N every N); return True."""
    platform.add_cron(signum, minute, hour, day, month, weekday)
    return True


def i_am_the_spooler() -> bool | None:
    """True in the spooler, else None (as uWSGI)."""
    return True if platform.i_am_the_spooler() else None


# ---------------------------------------------------------------- mules and farms


def mule_msg(message: bytes | str, mule: int | bytes | None = None) -> bool:
    """Send ``message`` to mule ``mule`` (an id; 0 or None: the first free mule) or to
    the farm whose name is the bytes ``mule``; return True.

    As uWSGI on Python 3 does, a str ``mule`` raises ``ValueError("invalid mule")``.
    A full queue makes the sender wait (then raise), never drops the message.
    """
    _check_message("mule_msg", 1, message)
    if not platform.options().get("mules"):
        raise ValueError("no mule configured")
    if mule is None or isinstance(mule, int):
        return platform.mule_msg(message, int(mule or 0))
    if isinstance(mule, bytes):
        return platform.mule_msg(message, mule.decode("utf-8", "surrogateescape"))
    raise ValueError("invalid mule")


def farm_msg(farm: str, message: bytes | str) -> None:
    """Send ``message`` to farm ``farm`` (a str): the first of its free mules takes it."""
    if not isinstance(farm, str):
        raise TypeError(f"farm_msg() argument 1 must be str, not {type(farm).__name__}")
    _check_message("farm_msg", 2, message)
    platform.farm_msg(farm, message)


def _check_message(call: str, position: int, message: object) -> None:
    """uWSGI reads a message with ``s#``: str or bytes."""
    if not isinstance(message, (bytes, str)):
        raise TypeError(
            f"{call}() argument {position} must be str or read-only bytes-like object, "
            f"not {type(message).__name__}"
        )


def mule_get_msg(
    signals: object = True,
    farms: object = True,
    buffer_size: int = 65536,
    timeout: float = -1,
) -> bytes | None:
    """In a mule: block until a message for it (or its farms) arrives; None on timeout.

    As in uWSGI, only None and False turn ``signals`` or ``farms`` off;
    ``timeout`` -1 waits forever.
    """
    return platform.mule_get_msg(
        signals=signals is not None and signals is not False,
        farms=farms is not None and farms is not False,
        buffer_size=buffer_size,
        timeout=timeout,
    )


def farm_get_msg() -> bytes | None:
    """In a mule: block until a message for one of its farms arrives.

    Signals that arrive meanwhile run their handlers.
    """
    return platform.farm_get_msg()


def in_farm(name: str | None = None) -> bool | None:
    """In a mule: True if it belongs to farm ``name`` (to any farm by default), else None."""
    return True if platform.in_farm(name) else None


# ---------------------------------------------------------------- spooler


def spool(*args: object, **kwargs: object) -> bytes:
    """Spool a job: a dict of bytes keys and bytes values; return its file's path, as bytes.

    As uWSGI on Python 3 reads it: the first argument is the job (keyword
    arguments are the job only when there is none); ``b"spooler"`` names the
    directory, ``b"at"`` the UNIX time (digits) before which it does not run,
    and a bytes ``b"body"`` is the body; ``b"priority"`` (digits, kept in the
    job) puts it in line, lower first. A str key or value raises uWSGI's
    ``ValueError``.
    """
    return _spool(args, kwargs)


def send_to_spooler(*args: object, **kwargs: object) -> bytes:
    """The same as `spool`."""
    return _spool(args, kwargs)


_ONLY_BYTES = "spooler callable dictionary must contains only bytes"


def _spool(args: tuple[object, ...], kwargs: dict[str, object]) -> bytes:
    message = args[0] if args else kwargs
    if not isinstance(message, dict):
        raise ValueError("The argument of spooler callable must be a dictionary")
    fields = dict(message)
    body = fields.pop(b"body") if isinstance(fields.get(b"body"), bytes) else None
    job: dict[str, bytes] = {}
    for key, value in fields.items():
        if not isinstance(key, bytes) or not isinstance(value, (bytes, bytearray, memoryview)):
            raise ValueError(_ONLY_BYTES)
        job[key.decode("utf-8", "surrogateescape")] = bytes(value)
    priority = _priority(job["priority"]) if "priority" in job else None
    when = _unix_time(job["at"]) if "at" in job else None
    directory = job.get("spooler")
    path = platform.spool(
        job,
        body=body,
        at=when,
        spooler=os.fsdecode(directory) if directory else None,
        priority=priority,
    )
    return os.fsencode(path)


def _priority(value: bytes) -> int:
    """uWSGI names a priority's subdirectory after it, and runs only numbered ones."""
    if not value.isdigit():
        raise ValueError(f"invalid priority {value!r}: give its digits, e.g. b'3' (lower first)")
    return int(value)


def spooler_jobs() -> list[bytes]:
    """The paths of the jobs waiting in the first spooler's directory, as bytes."""
    return [os.fsencode(path) for path in platform.spooler_jobs()]


def set_spooler_frequency(seconds: int) -> bool:
    """Make the spoolers look at their jobs every ``seconds``; True."""
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise TypeError(f"an integer is required, not {type(seconds).__name__}")
    platform.set_spooler_frequency(seconds)
    return True


def spooler_get_task(path: str) -> dict[bytes | str, bytes] | None:
    """The job in the spool file ``path`` as the spool handler gets it, or None."""
    if not isinstance(path, str):
        raise TypeError(f"spooler_get_task() argument 1 must be str, not {type(path).__name__}")
    task = platform.spooler_get_task(path)
    return None if task is None else _uwsgi_job(task)


def _unix_time(value: object) -> float:
    """``at`` as uWSGI takes it: a number, or its digits as bytes or str."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    if isinstance(text, (str, int, float)) and not isinstance(text, bool):
        try:
            return float(text)
        except ValueError:
            pass
    raise ValueError(f"invalid at {value!r}: give a UNIX time in seconds")


# uWSGI gives a spool handler these two keys as str, every other as bytes.
_STR_KEYS = frozenset({"spooler_task_name", "body"})


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


def _uwsgi_job(job: Mapping[str, bytes | str]) -> dict[bytes | str, bytes]:
    """A job as uWSGI's spool handler gets it: bytes keys (but ``spooler_task_name``
    and ``body``) and bytes values; ``spooler_task_name`` is the job file's name, not
    its path (uWSGI runs jobs from inside the spool directory)."""
    uwsgi_job = {
        (key if key in _STR_KEYS else _as_bytes(key)): _as_bytes(value)
        for key, value in job.items()
    }
    if "spooler_task_name" in uwsgi_job:
        uwsgi_job["spooler_task_name"] = os.path.basename(uwsgi_job["spooler_task_name"])
    return uwsgi_job


def _spool_handler(handler: Callable[[dict[bytes | str, bytes]], object]) -> Callable[..., int]:
    """Wrap a uWSGI spool handler: it gets uWSGI's job dict, and an answer that is not
    an int means retry, as in uWSGI."""

    def run(job: dict[str, Any]) -> int:
        answer = handler(_uwsgi_job(job))
        return answer if isinstance(answer, int) else SPOOL_RETRY

    return run


def _set_spooler(handler: Callable[[dict[bytes | str, bytes]], object] | None) -> None:
    if handler is not None and not callable(handler):
        raise TypeError(f"uwsgi.spooler must be callable, not {handler!r}")
    platform.set_spool_handler(None if handler is None else _spool_handler(handler))


# ---------------------------------------------------------------- locks


def lock(num: int = 0) -> None:
    """Block until user lock ``num`` is this process's. Not in the spooler, as in uWSGI."""
    _not_in_the_spooler()
    platform.lock(num)


def unlock(num: int = 0) -> None:
    """Release user lock ``num``. Not in the spooler, as in uWSGI."""
    _not_in_the_spooler()
    platform.unlock(num)


def is_locked(num: int = 0) -> bool:
    """Whether some process holds user lock ``num``. Not in the spooler, as in uWSGI."""
    _not_in_the_spooler()
    return platform.is_locked(num)


def _not_in_the_spooler() -> None:
    if platform.i_am_the_spooler():
        raise ValueError("The spooler cannot lock/unlock resources")


# ---------------------------------------------------------------- RPC
#
# uWSGI 2.0.31 on Python 3 reads the function's name and arguments with
# PyBytes_Check: a str name or argument makes call() and rpc() raise
# ValueError("unable to call rpc function"); register_rpc() wants a str name.


def register_rpc(name: str, func: Callable[..., object], argc: int = 0) -> bool:
    """Register ``func`` as RPC function ``name`` (a str); return True.

    ValueError if it cannot be registered (a mule or the spooler, a name of
    255 bytes or more), as in uWSGI.
    """
    if not isinstance(name, str):
        raise TypeError(f"register_rpc() argument 1 must be str, not {type(name).__name__}")
    if isinstance(argc, bool) or not isinstance(argc, int) or not 0 <= argc <= 255:
        raise TypeError(f"register_rpc() argument 3 must be an int 0-255, not {argc!r}")
    try:
        platform.register_rpc(name, func)
    except (ValueError, TypeError) as exc:
        log.error("uwsgi.register_rpc(%r): %s", name, exc)
        raise ValueError("unable to register rpc function") from exc
    return True


def call(func: bytes, *args: bytes) -> bytes | None:
    """Run RPC function ``func`` (bytes) in this process with bytes ``args``; its
    bytes result, or None."""
    name = _rpc_name(func, args)
    return platform.rpc_call(name, list(args))


def rpc(node: bytes | str | None, func: bytes, *args: bytes) -> bytes | None:
    """Call RPC function ``func`` on the node ``node`` (``b"HOST:PORT"``; empty: here).

    As in uWSGI, None when the node cannot be reached or gives nothing.
    """
    name = _rpc_name(func, args)
    if isinstance(node, str):
        node = node.encode("latin-1")
    if not isinstance(node, bytes) or not node:
        return platform.rpc_call(name, list(args))
    try:
        return platform.rpc_remote(node.decode("latin-1"), name, list(args))
    except (OSError, ValueError) as exc:
        log.error("uwsgi.rpc(%r, %r): %s", node, func, exc)
        return None


def rpc_list() -> tuple[bytes, ...]:
    """The names of this process's RPC functions, as bytes."""
    return tuple(name.encode("utf-8", "surrogateescape") for name in platform.rpc_list())


def _rpc_name(func: object, args: tuple[object, ...]) -> str:
    if not isinstance(func, bytes) or not all(isinstance(arg, bytes) for arg in args):
        raise ValueError("unable to call rpc function")
    return func.decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- the module


def _uwsgi_option(value: object) -> object:
    """An option's value as uWSGI's ``uwsgi.opt`` holds it: True for a flag, else bytes."""
    if value is True:
        return True
    if isinstance(value, list):
        values = [_uwsgi_option(item) for item in value]
        return values[0] if len(values) == 1 else values  # uWSGI makes a list of repeats only
    return str(value).encode("utf-8")


# uWSGI's own variables, which its parse_sys_envs() does not read as options.
_NOT_OPTIONS = frozenset(
    {
        "UWSGI_RELOADS", "UWSGI_VASSALS_DIR", "UWSGI_EMPEROR_FD", "UWSGI_BROODLORD_NUM",
        "UWSGI_EMPEROR_FD_CONFIG", "UWSGI_EMPEROR_PROXY", "UWSGI_JAIL_PID",
        "UWSGI_ORIGINAL_PROC_NAME",
    }
)  # fmt: skip


def _environment_options() -> list[tuple[str, str]]:
    """``UWSGI_FOO_BAR=x`` as the option ``("foo-bar", "x")``, as uWSGI reads its environment."""
    return [
        (name[6:].lower().replace("_", "-"), value)
        for name, value in os.environ.items()
        if name.startswith("UWSGI_") and name not in _NOT_OPTIONS
    ]


# Assigning these attributes of the module hands the value to the runtime.
_HOOK_SETTERS: dict[str, Callable[[Any], None]] = {
    "mule_msg_hook": platform.set_message_hook,
    "spooler": _set_spooler,
}


class UwsgiModule(types.ModuleType):
    """The ``uwsgi`` module `install` makes: uWSGI's calls on uwsgisig's runtime.

    ``numproc`` and ``opt`` are read live. Assigning ``mule_msg_hook``,
    ``spooler`` or ``post_fork_hook`` takes effect as in uWSGI.
    """

    @property
    def numproc(self) -> int:
        """The number of workers; 0 outside a runtime."""
        return platform.numproc()

    @property
    def opt(self) -> dict[str, object]:
        """The runtime's options as uWSGI's ``uwsgi.opt``: bytes values, True for flags.

        As in uWSGI, ``UWSGI_*`` environment variables are options too
        (``UWSGI_HARAKIRI_VERBOSE=1`` is ``harakiri-verbose``), before the others.
        """
        options: dict[str, list[object]] = {}
        for key, value in [*_environment_options(), *platform.options().items()]:
            options.setdefault(key, []).append(value)
        return {key: _uwsgi_option(values) for key, values in options.items()}

    def __setattr__(self, name: str, value: object) -> None:
        setter = _HOOK_SETTERS.get(name)
        if setter is not None:
            setter(value)
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        super().__delattr__(name)
        setter = _HOOK_SETTERS.get(name)
        if setter is not None:
            setter(None)


# uWSGI's calls that uwsgisig's runtime runs unchanged, and those adapted above.
_IMPLEMENTED: dict[str, Callable[..., Any]] = {
    "register_signal": platform.register_signal,
    "signal": platform.signal,
    "signal_wait": signal_wait,
    "signal_received": signal_received,
    "signal_registered": signal_registered,
    "add_timer": platform.add_timer,
    "add_rb_timer": platform.add_rb_timer,
    "add_cron": add_cron,
    "add_file_monitor": platform.add_file_monitor,
    "worker_id": platform.worker_id,
    "mule_id": platform.mule_id,
    "masterpid": masterpid,
    "i_am_the_spooler": i_am_the_spooler,
    "mule_msg": mule_msg,
    "farm_msg": farm_msg,
    "mule_get_msg": mule_get_msg,
    "farm_get_msg": farm_get_msg,
    "in_farm": in_farm,
    "spool": spool,
    "send_to_spooler": send_to_spooler,
    "reload": platform.reload,
    "stop": platform.stop,
    "workers": lambda: tuple(platform.workers()),
    "total_requests": platform.total_requests,
    "set_user_harakiri": platform.set_user_harakiri,
    "register_rpc": register_rpc,
    "rpc": rpc,
    "call": call,
    "rpc_list": rpc_list,
    "spooler_jobs": spooler_jobs,
    "spooler_pid": platform.spooler_pid,
    "spooler_pids": platform.spooler_pids,
    "set_spooler_frequency": set_spooler_frequency,
    "spooler_get_task": spooler_get_task,
    "lock": lock,
    "unlock": unlock,
    "is_locked": is_locked,
    **{name: getattr(platform, name) for name in CACHE_CALLS},
}

IMPLEMENTED = tuple(_IMPLEMENTED)
"""The calls of uWSGI's module that run on uwsgisig's runtime."""


def _make_module() -> UwsgiModule:
    module = UwsgiModule(MODULE_NAME, "uWSGI's module, backed by uwsgisig's runtime.")
    module.__dict__.update(
        __spec__=importlib.machinery.ModuleSpec(MODULE_NAME, None),
        UWSGISIG_COMPAT=True,
        SPOOL_OK=SPOOL_OK,
        SPOOL_RETRY=SPOOL_RETRY,
        SPOOL_IGNORE=SPOOL_IGNORE,
        version=".".join(map(str, UWSGI_VERSION)).encode(),
        version_info=(*UWSGI_VERSION, 0, b"uwsgisig"),
        hostname=socket.gethostname().encode(),
        started_on=int(time.time()),
        is_a_reload=False,
        **{name: _not_implemented(name) for name in NOT_IMPLEMENTED},
        **_IMPLEMENTED,
    )
    platform.add_postfork_hook(functools.partial(_run_post_fork_hook, module))
    return module


def _run_post_fork_hook(module: UwsgiModule) -> None:
    """Call the module's ``post_fork_hook``, as uWSGI does in every child after fork."""
    if sys.modules.get(MODULE_NAME) is not module:
        return  # uninstalled
    hook = module.__dict__.get("post_fork_hook")
    if hook is None:
        return
    try:
        hook()
    except Exception:
        # uWSGI logs the error and the child goes on.
        log.exception("uwsgi.post_fork_hook %r raised in pid %d", hook, os.getpid())


def install() -> types.ModuleType:
    """Make ``import uwsgi`` give uwsgisig's uWSGI-compatible module; return it.

    Call it before the app is imported (``uwsgisig run --uwsgi-compat`` does).
    Installing again returns the same module. Raises `RuntimeError` if a real
    ``uwsgi`` module is already imported.
    """
    known = sys.modules.get(MODULE_NAME)
    if known is not None:
        if getattr(known, "UWSGISIG_COMPAT", False):
            return known
        raise RuntimeError(
            "a uwsgi module is already imported (running under a uWSGI server?): "
            "uwsgisig's uwsgi-compatible module cannot replace it"
        )
    module = _make_module()
    sys.modules[MODULE_NAME] = module
    return module


def uninstall() -> None:
    """Remove the module `install` made, and the hooks the app set through it."""
    module = sys.modules.get(MODULE_NAME)
    if not isinstance(module, UwsgiModule):
        return
    del sys.modules[MODULE_NAME]
    for name in _HOOK_SETTERS:
        if name in module.__dict__:
            delattr(module, name)
