"""The uWSGI signal calls, driven through a real uWSGI server's ``uwsgi`` module.

Chosen by `uwsgisig.platform` when ``import uwsgi`` finds the server's own
module, so an app written against uwsgisig runs unchanged under
``uwsgi --master ...``. uWSGI does the routing, the timers and the mules; this
module checks arguments as the embedded runtime does and maps the few things
uWSGI spells differently. What uWSGI cannot do raises `NotImplementedError`
naming the call, never a silent no-op.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import uwsgi

from ..errors import (
    MAX_SIGNAL,
    LockNumberError,
    MessageQueueFullError,
    SignalAlreadyRegisteredError,
    TargetError,
    check_signal_number,
)
from ..runtime.child import offload
from ..runtime.child.programs import run_program
from ..runtime.ipc.messages import as_message
from ..runtime.ipc.spool import SPOOL_OK, SPOOL_RETRY, check_priority
from ..runtime.model import app
from ..runtime.model.config import MuleProgram
from ..runtime.model.targets import parse_target
from ..runtime.schedule.cron import CronSpec
from ..runtime.schedule.events import FileEvent, ms_timer_event, rb_timer_event
from ..runtime.wire.jobs import JobValue, check_job, decode_job, encode_job
from . import embedded

__all__ = list(embedded.__all__)  # the same calls as the embedded engine

# Checks of arguments alone: uWSGI takes whatever the embedded engine takes.
check_cron = embedded.check_cron
check_monitor_path = embedded.check_monitor_path
check_rpc_name = embedded.check_rpc_name
check_spooler_frequency = embedded.check_spooler_frequency
on_reset = embedded.on_reset

NAME = "uwsgi"

# The field of a uWSGI spool job that holds a uwsgisig job, as JSON.
JOB_FIELD = b"uwsgisig_job"

log = logging.getLogger("uwsgisig")

# How long mule_msg waits for room while uWSGI reports a full mule queue (seconds).
SEND_TIMEOUT = 30.0
_RETRY_PAUSES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)


def _unsupported(call: str, why: str) -> NotImplementedError:
    return NotImplementedError(f"{call} is not available under uWSGI: {why}")


# ---------------------------------------------------------------- signals


def register_signal(num: int, who: str, handler: Callable[[int], Any]) -> None:
    """Register ``handler`` for signal ``num`` with uWSGI, run by target ``who``."""
    check_signal_number(num)
    target = parse_target(who)  # uWSGI takes any text and fails when the signal is raised
    if target.is_cluster:
        # uWSGI 2.0 takes them and never delivers: its cluster branch is empty.
        raise _unsupported(
            f"the {who!r} target",
            "uWSGI 2.0 accepts it and delivers nothing; run the app on uwsgisig's runtime "
            "with --cluster",
        )
    if not callable(handler):
        raise TypeError(f"a signal handler must be callable, not {handler!r}")
    if uwsgi.signal_registered(num):
        raise SignalAlreadyRegisteredError(f"signal {num} is already registered")
    uwsgi.register_signal(num, who, handler)


def signal_cluster(num: int) -> None:
    """uWSGI 2.0 has no cluster to raise a signal on."""
    check_signal_number(num)
    raise _unsupported(
        "raising a signal on the cluster",
        "uWSGI 2.0 has no cluster; run the app on uwsgisig's runtime with --cluster",
    )


def signal(num: int, remote: str | None = None) -> None:
    """Raise signal ``num`` through uWSGI, or on the node at ``remote``."""
    check_signal_number(num)
    if remote is None:
        uwsgi.signal(num)
    else:
        uwsgi.signal(num, remote)


def signal_wait(num: int | None = None, timeout: float | None = None) -> int:
    """Block until signal ``num`` (or any) arrives; return its number."""
    if timeout is not None:
        raise _unsupported("signal_wait(timeout=...)", "uWSGI's signal_wait has no timeout")
    if num is None:
        uwsgi.signal_wait()
    else:
        check_signal_number(num)
        uwsgi.signal_wait(num)
    return int(uwsgi.signal_received())


def signal_received() -> int | None:
    """The signal the last ``signal_wait`` returned for, or None before any."""
    num = int(uwsgi.signal_received())
    return num if 0 <= num <= MAX_SIGNAL else None


def signal_registered(num: int) -> bool:
    """Whether signal ``num`` has a handler in uWSGI's signal table."""
    check_signal_number(num)
    return bool(uwsgi.signal_registered(num))


# ---------------------------------------------------------------- who am I


def attach_worker(path: str, workers: int | None = None) -> int:
    """Under uWSGI this process is one of its workers already: its id, with nothing to do."""
    return int(uwsgi.worker_id())


def detach_worker() -> None:
    """Under uWSGI there is nothing to leave."""


def run_coroutines_on(loop: asyncio.AbstractEventLoop) -> None:
    """Under uWSGI, handlers run as uWSGI runs them: nothing to do."""


def lock(num: int = 0) -> None:
    """uWSGI's user lock ``num``."""
    _check_lock(num)
    uwsgi.lock(num)


def unlock(num: int = 0) -> None:
    """Release uWSGI's user lock ``num``."""
    _check_lock(num)
    uwsgi.unlock(num)


def is_locked(num: int = 0) -> bool:
    """Whether uWSGI's user lock ``num`` is held."""
    _check_lock(num)
    return bool(uwsgi.is_locked(num))


def _check_lock(num: object) -> None:
    """`LockNumberError` as the embedded runtime raises it, where uWSGI says "Invalid lock
    number" (uWSGI has locks 0 to ``--locks``)."""
    count = int(uwsgi.opt.get("locks", 0) or 0) + 1
    if isinstance(num, bool) or not isinstance(num, int) or not 0 <= num < count:
        raise LockNumberError(num, count)


def reload() -> None:
    """uWSGI's graceful reload."""
    uwsgi.reload()


def stop() -> None:
    """uWSGI's stop."""
    uwsgi.stop()


def workers() -> list[dict[str, Any]]:
    """uWSGI's figures of every worker."""
    return list(uwsgi.workers())


def total_requests() -> int:
    """Requests uWSGI served."""
    return int(uwsgi.total_requests())


def set_user_harakiri(seconds: float) -> None:
    """uWSGI's user harakiri."""
    uwsgi.set_user_harakiri(math.ceil(seconds))


def worker_id() -> int:
    """This worker's id (from 1), or 0 if this process is not a worker."""
    return int(uwsgi.worker_id())


def mule_id() -> int:
    """This mule's id (from 1), or 0 if this process is not a mule."""
    return int(uwsgi.mule_id())


def i_am_the_spooler() -> bool:
    """Whether this process is uWSGI's spooler."""
    return bool(uwsgi.i_am_the_spooler())


def masterpid() -> int:
    """The uWSGI master's pid (0 without ``--master``)."""
    return int(uwsgi.masterpid())


def numproc() -> int:
    """The number of uWSGI workers."""
    return int(uwsgi.numproc)


def options() -> dict[str, object]:
    """uWSGI's ``uwsgi.opt``: the server's options (bytes values, as uWSGI gives them)."""
    return dict(uwsgi.opt)


def in_farm(name: str | None = None) -> bool:
    """Whether this mule belongs to farm ``name`` (to any farm when ``name`` is None)."""
    return bool(uwsgi.in_farm() if name is None else uwsgi.in_farm(name))


def declare_mule(mule_id: int) -> None:
    """Nothing to do: uWSGI starts the mules of its ``--mule`` options."""


def declare_farm(name: str, mules: tuple[int, ...]) -> None:
    """Nothing to do: uWSGI starts the farms of its ``--farm`` options."""


def add_postfork_hook(hook: Callable[[], object]) -> None:
    """Run ``hook`` in every child right after fork (uWSGI's ``post_fork_hook``)."""
    if not app.DECLARED.postfork_hooks:
        _chain_post_fork_hook()
    embedded.add_postfork_hook(hook)


def _chain_post_fork_hook() -> None:
    """Take uWSGI's post-fork hook, keeping any the app set before (uwsgidecorators' chain)."""
    previous = getattr(uwsgi, "post_fork_hook", None)

    def run_hooks() -> None:
        if previous is not None:
            previous()
        for hook in app.DECLARED.postfork_hooks:
            hook()

    uwsgi.post_fork_hook = run_hooks


# ---------------------------------------------------------------- timers, cron, files


def add_timer(signum: int, seconds: float, unique: bool = False) -> None:
    """Raise ``signum`` every ``seconds`` (whole) seconds, from uWSGI's master."""
    if unique:
        check_unique()
    check_timer(seconds)
    check_signal_number(signum)
    uwsgi.add_timer(signum, int(seconds))


def add_rb_timer(signum: int, seconds: float, iterations: int = 0, unique: bool = False) -> None:
    """Raise ``signum`` every ``seconds`` (whole) seconds, ``iterations`` times (0 = forever)."""
    if unique:
        check_unique()
    check_timer(seconds, iterations)
    check_signal_number(signum)
    uwsgi.add_rb_timer(signum, int(seconds), iterations)


def add_ms_timer(signum: int, ms: float, unique: bool = False) -> None:
    """Raise ``signum`` every ``ms`` milliseconds: whole seconds only under uWSGI."""
    check_ms_timer(ms)
    add_timer(signum, ms / 1000, unique)


def check_unique() -> None:
    """Unique schedules need uwsgisig's runtime in a cluster: uWSGI 2.0 has none."""
    raise _unsupported(
        "a unique (once per cluster) timer or cron",
        "uWSGI 2.0 has no cluster; run the app on uwsgisig's runtime with --cluster",
    )


def check_timer(seconds: float, iterations: int = 0) -> None:
    """Raise unless uWSGI's timers take ``seconds`` and ``iterations``: whole seconds only."""
    rb_timer_event(0, seconds, iterations)
    if seconds != int(seconds):
        raise _unsupported(
            f"a timer of {seconds!r} seconds",
            "uWSGI's Python timers take whole seconds (use the embedded runtime for finer ones)",
        )


def check_ms_timer(ms: float) -> None:
    """Raise unless ``ms`` is a whole number of seconds, all uWSGI's Python timers take."""
    ms_timer_event(0, ms)
    if float(ms) % 1000:  # ms_timer_event checked ms as this float
        raise _unsupported(
            f"a timer of {ms!r} milliseconds",
            "uWSGI's Python module has no millisecond timers; give a multiple of 1000",
        )


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
    if unique:
        check_unique()
    check_signal_number(signum)
    fields = (minute, hour, day, month, weekday)
    CronSpec.from_uwsgi(*fields)
    uwsgi.add_cron(signum, *(-1 if value is None else value for value in fields))


def add_crontab(signum: int, crontab: str, unique: bool = False) -> None:
    """Raise ``signum`` in every minute the crontab matches, when uWSGI's fields can say it."""
    if unique:
        check_unique()
    check_signal_number(signum)
    uwsgi.add_cron(signum, *_uwsgi_cron_fields(crontab))


def check_crontab(crontab: str) -> None:
    """Raise unless ``crontab`` parses and uWSGI's cron fields can say it."""
    _uwsgi_cron_fields(crontab)


def _uwsgi_cron_fields(crontab: str) -> tuple[int, int, int, int, int]:
    fields = CronSpec.parse(crontab).to_uwsgi()
    if fields is None:
        raise _unsupported(
            f"the crontab {crontab!r}",
            "uWSGI's cron fields hold one value, -1 (any) or -N (every N) each",
        )
    return fields


def add_file_monitor(signum: int, path: str | os.PathLike[str], unique: bool = False) -> None:
    """Raise ``signum`` whenever the file or directory ``path`` changes."""
    if unique:
        check_unique()
    check_signal_number(signum)
    FileEvent(0, path)
    uwsgi.add_file_monitor(signum, os.fspath(path))


# ---------------------------------------------------------------- mule messages


def mule_msg(
    message: bytes | str, mule: int | str | None = None, *, timeout: float | None = None
) -> bool:
    """Send ``message`` to mule ``mule``, the first free mule (None or 0) or farm ``mule`` (str).

    uWSGI drops a message its mule queue has no room for; this waits for room
    instead, up to ``timeout`` seconds (30 by default), then raises
    `MessageQueueFullError`. Returns True.
    """
    data = as_message(message)
    if isinstance(mule, str):
        return farm_msg(mule, data)
    target = mule or 0
    deadline = time.monotonic() + (SEND_TIMEOUT if timeout is None else timeout)
    pauses = iter(_RETRY_PAUSES)
    while not uwsgi.mule_msg(data, target):
        # uWSGI gives no descriptor to wait on: back off, bounded by the deadline.
        pause = next(pauses, _RETRY_PAUSES[-1])
        if time.monotonic() + pause > deadline:
            raise MessageQueueFullError(f"the queue of mule {target} stayed full")
        time.sleep(pause)
    return True


def farm_msg(farm: str, message: bytes | str, *, timeout: float | None = None) -> bool:
    """Send ``message`` to farm ``farm``: uWSGI gives it to the first free mule of the farm.

    uWSGI does not report a farm queue that is full: such a message is lost.
    """
    del timeout
    if not isinstance(farm, str):
        raise TargetError(f"invalid farm {farm!r}: a farm name is a str")
    uwsgi.farm_msg(farm, as_message(message))
    return True


def mule_get_msg(
    signals: bool = True,
    farms: bool = True,
    buffer_size: int = 65536,
    timeout: float | None = -1,
) -> bytes | None:
    """In a mule: block until a message arrives; None after ``timeout`` (whole seconds)."""
    wait = -1 if timeout is None or timeout == -1 else math.ceil(timeout)
    message = uwsgi.mule_get_msg(signals, farms, buffer_size, wait)
    return None if message is None else bytes(message)


def farm_get_msg(*, signals: bool = True, timeout: float | None = None) -> bytes | None:
    """In a mule: block until a message for one of its farms arrives."""
    if timeout is not None:
        raise _unsupported("farm_get_msg(timeout=...)", "uWSGI's farm_get_msg has no timeout")
    if not signals:
        raise _unsupported(
            "farm_get_msg(signals=False)", "uWSGI's farm_get_msg does not run signals anyway"
        )
    message = uwsgi.farm_get_msg()
    return None if message is None else bytes(message)


def set_message_hook(hook: Callable[[bytes], object] | None) -> None:
    """Run ``hook(message)`` in a mule for each message that is not an offloaded call."""
    embedded.set_message_hook(hook)
    uwsgi.mule_msg_hook = _deliver


def _deliver(message: bytes) -> None:
    """uWSGI's ``mule_msg_hook``: run an offloaded call, or pass the message to the app's hook."""
    offload.deliver(message, f"mule {uwsgi.mule_id()}")


def register_offload(func: Callable[..., Any]) -> str:
    """Make ``func`` runnable by a mule message; return the name it travels under."""
    name = embedded.register_offload(func)
    uwsgi.mule_msg_hook = _deliver
    return name


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
    """Make mule ``mule`` run ``body`` as its loop, as uwsgidecorators' ``@mule`` does.

    uWSGI has no "next free mule": the id is required. When the body returns
    or raises, the mule exits and uWSGI's master starts it again.
    """
    if mule is None:
        raise _unsupported(
            "a mule loop without a mule id", "name the mule, one of uWSGI's --mule options"
        )
    program = MuleProgram(mule, body)

    def run_in_its_mule() -> None:
        if uwsgi.mule_id() == program.mule:
            sys.exit(run_program(program))

    add_postfork_hook(run_in_its_mule)
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
    """Hand a job to uWSGI's spooler; return the job file's name.

    uWSGI keeps bytes only: the job travels as JSON in one field
    (`JOB_FIELD`), which `set_spool_handler`'s wrapper reads back, so its
    values come back as they went in.
    """
    if retries is not None:
        raise _unsupported("spool(retries=...)", "uWSGI's spooler retries every job forever")
    job = check_job({**(message or {}), **fields})
    if body is not None:
        if not isinstance(body, bytes):
            raise TypeError(f"a spool job's body is bytes, not {type(body).__name__}")
        job["body"] = body
    uwsgi_job = {JOB_FIELD: json.dumps(encode_job(job)).encode()}
    if at is not None:
        if isinstance(at, bool) or not isinstance(at, (int, float)):
            raise ValueError(f"invalid at {at!r}: give a UNIX time in seconds")
        uwsgi_job[b"at"] = str(int(at)).encode()
    if spooler is not None:
        uwsgi_job[b"spooler"] = os.fsencode(spooler)
    check_priority(priority)
    if priority is not None:
        uwsgi_job[b"priority"] = str(priority).encode()
    name = uwsgi.spool(uwsgi_job)
    return name.decode() if isinstance(name, bytes) else str(name)


def set_spool_handler(handler: Callable[[dict[str, Any]], object] | None) -> None:
    """Run ``handler(job)`` in uWSGI's spooler for each job; None or SPOOL_OK means done.

    uWSGI gives every field as bytes; the keys are turned into str.
    """
    if handler is not None and not callable(handler):
        raise TypeError(f"a spool handler must be callable, not {handler!r}")
    if handler is None:
        if hasattr(uwsgi, "spooler"):
            del uwsgi.spooler
        return

    def run_job(job: dict[bytes | str, Any]) -> int:
        fields = _job_fields(job)
        try:
            result = handler(fields)
        except Exception:
            log.exception("the spool handler raised on job %s", fields.get("spooler_task_name"))
            return SPOOL_RETRY
        return SPOOL_OK if result is None else int(result)  # type: ignore[call-overload]

    uwsgi.spooler = run_job


def _job_fields(job: dict[bytes | str, Any]) -> dict[str, Any]:
    """The job `spool` wrote, its values as they went in; another writer's job with str
    keys and uWSGI's bytes values."""
    fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in job.items()}
    packed = fields.pop(JOB_FIELD.decode(), None)
    if packed is None:
        return fields
    unpacked: dict[str, Any] = decode_job(json.loads(packed))
    unpacked["spooler_task_name"] = fields.get("spooler_task_name")
    return unpacked


# ---------------------------------------------------------------- RPC


def register_rpc(name: str, func: Callable[..., object]) -> None:
    """Register ``func`` as RPC function ``name`` with uWSGI."""
    embedded.check_rpc_name(name)
    if not callable(func):
        raise TypeError(f"an RPC function must be callable, not {func!r}")
    uwsgi.register_rpc(name, func)


def rpc_registered(name: str) -> bool:
    """Whether RPC function ``name`` is registered in this process."""
    return name.encode("utf-8", "surrogateescape") in uwsgi.rpc_list()


def rpc_call(name: str, args: list[bytes]) -> bytes | None:
    """Run RPC function ``name`` in this process through uWSGI."""
    return uwsgi.call(name.encode("utf-8", "surrogateescape"), *args)


def rpc_remote(node: str, name: str, args: list[bytes]) -> bytes | None:
    """Call RPC function ``name`` on the node at ``node`` through uWSGI.

    uWSGI gives None for a node it cannot reach, as for a function with no result.
    """
    return uwsgi.rpc(node, name.encode("utf-8", "surrogateescape"), *args)


def rpc_list() -> list[str]:
    """The RPC functions registered in this process."""
    return [os.fsdecode(name) for name in uwsgi.rpc_list()]


# ---------------------------------------------------------------- caches
# Passed on as they are: uWSGI's module answers True or None, bytes, and
# raises TypeError for what it refuses. A cache name of None is left out,
# as uWSGI takes no None for it.


def _named(*args: object) -> tuple[object, ...]:
    return args[:-1] if args[-1] is None else args


def cache_get(key: str | bytes, cache: str | None = None, /) -> bytes | None:
    """uWSGI's ``cache_get``: the value of ``key``, or None."""
    return uwsgi.cache_get(*_named(key, cache))


def cache_set(
    key: str | bytes, value: str | bytes, expires: int = 0, cache: str | None = None, /
) -> bool | None:
    """uWSGI's ``cache_set``: True if stored, None if ``key`` holds a value or it is refused."""
    return uwsgi.cache_set(*_named(key, value, expires, cache))


def cache_update(
    key: str | bytes, value: str | bytes, expires: int = 0, cache: str | None = None, /
) -> bool | None:
    """uWSGI's ``cache_update``: True if stored, None if refused."""
    return uwsgi.cache_update(*_named(key, value, expires, cache))


def cache_del(key: str | bytes, cache: str | None = None, /) -> bool | None:
    """uWSGI's ``cache_del``: True if ``key`` was removed, else None."""
    return uwsgi.cache_del(*_named(key, cache))


def cache_exists(key: str | bytes, cache: str | None = None, /) -> bool | None:
    """uWSGI's ``cache_exists``: True or None."""
    return uwsgi.cache_exists(*_named(key, cache))


def cache_clear(cache: str | None = None, /) -> bool | None:
    """uWSGI's ``cache_clear``: True, or None if there is no such cache."""
    return uwsgi.cache_clear() if cache is None else uwsgi.cache_clear(cache)


def cache_inc(
    key: str | bytes, value: int = 1, expires: int = 0, cache: str | None = None, /
) -> bool | None:
    """uWSGI's ``cache_inc``."""
    return uwsgi.cache_inc(*_named(key, value, expires, cache))


def cache_dec(
    key: str | bytes, value: int = 1, expires: int = 0, cache: str | None = None, /
) -> bool | None:
    """uWSGI's ``cache_dec``."""
    return uwsgi.cache_dec(*_named(key, value, expires, cache))


def cache_mul(
    key: str | bytes, value: int = 2, expires: int = 0, cache: str | None = None, /
) -> bool | None:
    """uWSGI's ``cache_mul``."""
    return uwsgi.cache_mul(*_named(key, value, expires, cache))


def cache_div(
    key: str | bytes, value: int = 2, expires: int = 0, cache: str | None = None, /
) -> bool | None:
    """uWSGI's ``cache_div``."""
    return uwsgi.cache_div(*_named(key, value, expires, cache))


def cache_num(key: str | bytes, cache: str | None = None, /) -> int:
    """uWSGI's ``cache_num``: the int64 in ``key``, or 0."""
    return uwsgi.cache_num(*_named(key, cache))


def cache_keys(cache: str | None = None, /) -> list[bytes]:
    """uWSGI's ``cache_keys``; ValueError if there is no such cache."""
    return uwsgi.cache_keys() if cache is None else uwsgi.cache_keys(cache)


# ---------------------------------------------------------------- the spoolers


def spooler_jobs() -> list[str]:
    """The jobs waiting in uWSGI's first spooler directory."""
    return [os.fsdecode(path) for path in uwsgi.spooler_jobs()]


def spooler_pids() -> list[int]:
    """The pids of uWSGI's spoolers."""
    return list(uwsgi.spooler_pids())


def spooler_pid() -> int:
    """The pid of uWSGI's first spooler, or 0."""
    return int(uwsgi.spooler_pid())


def set_spooler_frequency(seconds: int) -> None:
    """Make uWSGI's spoolers look at their jobs every ``seconds``."""
    check_spooler_frequency(seconds)
    uwsgi.set_spooler_frequency(seconds)


def spooler_get_task(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The job in uWSGI's spool file ``path``, as the spool handler gets it, or None."""
    task = uwsgi.spooler_get_task(os.fspath(path))
    return None if task is None else _job_fields(task)
