"""What a runtime runs: the number of workers and mules, the farms, the limits."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import attrs

from ...errors import TargetError
from .addresses import Network, parse_listen_address, parse_networks
from .caches import CacheSpec, check_unique
from .cluster import ClusterSpec

__all__ = ["ATTACH_ENV", "FarmSpec", "MuleProgram", "RuntimeConfig", "parse_farm"]

ATTACH_ENV = "UWSGISIG_ATTACH"
"""Where a command run beside the runtime finds its attach socket (`uwsgisig.attach`)."""

_FARM_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def _positive_ids(instance: object, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    if not value or any(isinstance(i, bool) or not isinstance(i, int) or i < 1 for i in value):
        raise TargetError(f"invalid mules {value!r} for a farm: give one or more mule ids >= 1")


def _farm_name(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not _FARM_NAME.fullmatch(value):
        raise TargetError(f"invalid farm name {value!r}: use letters, digits, '_', '.' or '-'")


@attrs.frozen
class FarmSpec:
    """A named group of mules; a signal or message to the farm goes to one of them."""

    name: str = attrs.field(validator=_farm_name)
    mules: tuple[int, ...] = attrs.field(converter=tuple, validator=_positive_ids)


_MODULE_ATTR = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def _program_body(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if callable(value):
        return
    if isinstance(value, str) and (value.endswith(".py") or _MODULE_ATTR.fullmatch(value)):
        return
    raise TargetError(
        f"invalid mule loop {value!r}: give a callable, 'package.module:function' "
        "or the path of a .py script (a mule id is an int from 1)"
    )


@attrs.frozen
class MuleProgram:
    """A mule that runs ``body`` instead of the signal loop, as uWSGI's ``--mule=...``."""

    mule: int
    body: Callable[[], object] | str = attrs.field(validator=_program_body)

    def describe(self) -> str:
        """The body's name, for log lines."""
        if isinstance(self.body, str):
            return self.body
        return f"{self.body.__module__}:{getattr(self.body, '__qualname__', repr(self.body))}"


def parse_farm(text: str) -> FarmSpec:
    """Parse uWSGI's ``--farm`` syntax, ``NAME:1,2``."""
    name, sep, ids = text.partition(":")
    try:
        mules = tuple(int(i) for i in ids.split(",")) if sep else ()
    except ValueError:
        mules = ()
    if not mules:
        raise TargetError(f"invalid farm {text!r}: write NAME:ID[,ID...], e.g. 'images:1,2'")
    return FarmSpec(name, mules)


def _at_least(minimum: int) -> object:
    def check(instance: object, attribute: attrs.Attribute, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"invalid {attribute.name} {value!r}: must be an int >= {minimum}")

    return check


def _positive_seconds(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"invalid {attribute.name} {value!r}: must be a finite number of seconds > 0"
        )


LOG_LEVELS = ("debug", "info", "warning", "error")


def _log_level(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if value not in LOG_LEVELS:
        raise ValueError(f"invalid log_level {value!r}: use one of {', '.join(LOG_LEVELS)}")


def _seconds_or_zero(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"invalid {attribute.name} {value!r}: must be a finite number of seconds >= 0 "
            "(0: no limit)"
        )


@attrs.frozen
class RuntimeConfig:
    """Settings of one runtime. Mules and farms declared by the app are merged in."""

    # Workers the master forks; with ``attach``, 0 is allowed: a web server's
    # workers are then the runtime's workers.
    workers: int = attrs.field(default=1, validator=_at_least(0))
    # Worker slots, after the forked ones, for processes that attach (a web
    # server's workers), and the unix socket where they attach (None: the
    # runner makes one in a private temporary directory).
    attach: int = attrs.field(default=0, validator=_at_least(0))
    attach_socket: str | None = None
    # A command run beside the runtime and supervised by it (uWSGI's
    # attach-daemon), e.g. a web server whose workers attach.
    command: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    # Where the master writes its pid while it runs (uWSGI's --pidfile).
    pidfile: str | None = None
    # Files that, when touched, reload everything, the workers, or the mules.
    touch_reload: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    touch_workers_reload: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    touch_mules_reload: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    touch_chain_reload: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    touch_logreopen: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    touch_logrotate: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    # uWSGI's --timer and --rbtimer: (signal, seconds), raised by the master.
    timers: tuple[tuple[int, float], ...] = attrs.field(default=(), converter=tuple)
    rb_timers: tuple[tuple[int, float], ...] = attrs.field(default=(), converter=tuple)
    log_level: str = attrs.field(default="info", validator=_log_level)
    # uWSGI's --harakiri for signal handlers: seconds one may run before its
    # process is killed (and replaced); 0 for no limit.
    harakiri: float = attrs.field(default=0.0, validator=_seconds_or_zero)
    # uWSGI's --locks: user locks 1..locks, beside lock 0, which is always there.
    locks: int = attrs.field(default=0, validator=_at_least(0))
    # uWSGI's --cache N and --cache2: the caches every process shares; the first
    # is the one a call without a cache name uses.
    caches: tuple[CacheSpec, ...] = attrs.field(default=(), converter=tuple)
    # uWSGI's master FIFOs: named pipes that take one-letter commands.
    master_fifo: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    # The app as it was given (module or path), for process titles and logs.
    app: str | None = None
    # Whether an app that raises while it is imported stops the start (False: it
    # is logged and the runtime goes on with what the app registered, as uWSGI 2.0).
    need_app: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    # Where the stats server listens (a unix socket path or a loopback host:port),
    # and whether it answers over HTTP.
    stats: str | None = None
    stats_http: bool = False
    mules: int = attrs.field(default=0, validator=_at_least(0))
    farms: tuple[FarmSpec, ...] = attrs.field(default=(), converter=tuple)
    spooler: bool = False
    # The spooler's job directory; None means a spooler for signals only.
    spool_dir: str | None = None
    # More spoolers (uWSGI's --spooler repeated), each with a directory of its own.
    extra_spool_dirs: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    # Processes per spooler (uWSGI's --spooler-processes): each job runs on one of them.
    spooler_processes: int = attrs.field(default=1, validator=_at_least(1))
    # uWSGI's --spooler-ordered: jobs run in order of priority, then of age (always here).
    spooler_ordered: bool = False
    # How often the spooler looks at its directory, and retries failed jobs (seconds).
    spooler_frequency: float = attrs.field(default=30.0, validator=_positive_seconds)
    # Mules that run a loop of their own (uWSGI's --mule=...).
    programs: tuple[MuleProgram, ...] = attrs.field(default=(), converter=tuple)
    # Signals the master may hold in memory before raisers are made to wait.
    queue_size: int = attrs.field(default=65536, validator=_at_least(1))
    # How long send() waits for room in a full master queue before it raises.
    send_timeout: float = attrs.field(default=30.0, validator=_positive_seconds)
    # How long a stop waits for children to exit before it kills them.
    stop_timeout: float = attrs.field(default=5.0, validator=_positive_seconds)
    # Whether SIGTERM lets running handlers finish (up to stop_timeout) instead of ending them.
    graceful_stop: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    # How long a graceful reload waits for a worker to finish its handler.
    reload_timeout: float = attrs.field(default=30.0, validator=_positive_seconds)
    log_file: str | None = None
    # HOST:PORT where the master takes uwsgi-protocol signals from other nodes, if anywhere.
    remote_signals: str | None = None
    # Whether that address may be other than loopback: whoever reaches it raises signals.
    remote_signals_any: bool = False
    # The networks whose hosts may raise remote signals and call RPC functions, beside
    # the loopback ones (which always may).
    remote_allow: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    # The Redis (or Valkey) URL of the cluster this runtime is a node of, if any; the
    # cluster's name (several clusters can share a server), and this node's (default:
    # the host's name and the master's pid).
    cluster: str | None = None
    cluster_name: str = "uwsgisig"
    cluster_node: str | None = None
    # HOST:PORT where the workers answer uWSGI RPC requests (and remote signals), if anywhere.
    rpc_socket: str | None = None
    # Whether that address may be other than loopback: whoever reaches it calls RPC functions.
    rpc_socket_any: bool = False

    def __attrs_post_init__(self) -> None:
        check_unique(self.caches)
        if self.workers + self.attach < 1:
            raise ValueError(
                f"invalid workers {self.workers!r}: a runtime needs at least one worker, "
                "forked (workers >= 1) or attached (attach >= 1)"
            )
        if self.remote_signals is not None:
            parse_listen_address(self.remote_signals, self.remote_signals_any)
        parse_networks(self.remote_allow)
        if self.cluster is not None:
            ClusterSpec(self.cluster, self.cluster_name)
        if self.rpc_socket is not None:
            parse_listen_address(
                self.rpc_socket,
                self.rpc_socket_any,
                what="RPC requests",
                allow_with="rpc_socket_any=True (--rpc-socket-any)",
            )
        programmed = [program.mule for program in self.programs]
        for mule in programmed:
            if programmed.count(mule) > 1:
                raise TargetError(f"mule {mule} is given two loops")
        names = [farm.name for farm in self.farms]
        for name in names:
            if names.count(name) > 1:
                raise TargetError(f"farm {name!r} is declared twice with different mules")

    @property
    def allowed_networks(self) -> tuple[Network, ...]:
        """Whose remote signals and RPC requests are taken: loopback, and ``remote_allow``."""
        return parse_networks(self.remote_allow)

    @property
    def spool_dirs(self) -> tuple[str, ...]:
        """Every spooler's directory, the first spooler's first."""
        return (self.spool_dir, *self.extra_spool_dirs) if self.spool_dir else ()

    @property
    def spooler_count(self) -> int:
        """Spooler processes to start: ``spooler_processes`` per spooler."""
        if not self.spooler:
            return 0
        return max(len(self.spool_dirs), 1) * self.spooler_processes

    @property
    def worker_slots(self) -> int:
        """Every worker id: the forked workers, then the slots for attached ones."""
        return self.workers + self.attach

    @property
    def mule_count(self) -> int:
        """Mules to start: enough for ``mules`` and for every farm's mule ids."""
        farm_ids = [i for farm in self.farms for i in farm.mules]
        return max([self.mules, *farm_ids, *(program.mule for program in self.programs)])

    def program_of(self, mule_id: int) -> MuleProgram | None:
        """The loop mule ``mule_id`` runs, or None for the signal loop."""
        for program in self.programs:
            if program.mule == mule_id:
                return program
        return None

    def farm_index(self, name: str) -> int:
        """The 1-based position of farm ``name``, or 0 if there is none."""
        for index, farm in enumerate(self.farms, start=1):
            if farm.name == name:
                return index
        return 0
