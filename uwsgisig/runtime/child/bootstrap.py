"""A forked child becomes worker N, mule N or the spooler, and serves until it leaves."""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable, Iterable

from ..ipc.link import MasterGone, MasterLink
from ..ipc.posix import STOP_SIGNALS, die_with_parent, set_title
from ..model.app import DECLARED
from ..model.config import RuntimeConfig
from ..model.process import CURRENT, ChildSpec
from .loop import SignalLoop, describe_self
from .programs import run_program
from .rpc import RpcServer
from .spooler import Spooler

__all__ = ["reset_posix_signals", "run_child", "run_hooks"]

log = logging.getLogger("uwsgisig")


def run_child(spec: ChildSpec) -> int:
    """The body of a forked child; returns its exit code."""
    reset_posix_signals()
    die_with_parent(signal.SIGKILL)
    if os.getppid() != spec.masterpid:
        return 0  # the master died before the line above: nobody would read us
    link = MasterLink(
        spec.link, send_timeout=spec.config.send_timeout, progress=spec.progress, ring=spec.ring
    )
    rpc = None
    if spec.rpc_listening is not None:
        rpc = rpc_server(spec.rpc_listening, link, spec.config)
    loop = SignalLoop(link, spec.queues, spec.table, spec.mailbox, rpc=rpc)
    loop.harakiri_ns = int(spec.config.harakiri * 1e9)
    set_title(*titles_of(spec))
    CURRENT.role = spec.role
    CURRENT.id = spec.id
    CURRENT.masterpid = spec.masterpid
    CURRENT.config = spec.config
    CURRENT.loop = loop
    CURRENT.farms = spec.farms
    CURRENT.post = spec.post
    CURRENT.locks = spec.locks
    CURRENT.caches = spec.caches
    os.register_at_fork(after_in_child=_leave_runtime)
    signal.signal(signal.SIGHUP, lambda signum, frame: loop.request_stop())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        run_hooks(spec.hooks, describe_self())
        link.ready()
        if spec.program is not None:
            return run_program(spec.program)
        if spec.spool is not None:
            Spooler(spec.spool, DECLARED.spool_handler, spec.config.spooler_frequency).serve(loop)
        else:
            loop.serve_forever()
    except MasterGone:
        return 0
    return 0


def rpc_server(sock: socket.socket, link: MasterLink, config: RuntimeConfig) -> RpcServer:
    """This worker's server of the runtime's RPC socket ``sock``."""
    return RpcServer(
        sock, DECLARED.rpc, link.raise_signal, describe_self, allowed=config.allowed_networks
    )


def titles_of(spec: ChildSpec) -> tuple[str, str]:
    """``uwsgisig worker 2 [app.py]`` for ``ps``, and ``uwsgisig w2`` for the kernel."""
    name = spec.role.name.lower()
    ident = f" {spec.id}" if spec.id else ""
    app = f" [{spec.config.app}]" if spec.config.app else ""
    short = f"uwsgisig {name[0]}{spec.id}" if spec.id else f"uwsgisig {name}"
    return f"uwsgisig {name}{ident}{app}", short


def run_hooks(hooks: Iterable[Callable[[], object]], who: str) -> None:
    """Run the post-fork hooks; one that raises is logged with its traceback, and the
    process goes on (as uWSGI's python plugin does), rather than dying in a loop."""
    for hook in hooks:
        try:
            hook()
        except Exception:
            log.exception(
                "post-fork hook %s:%s raised in %s; going on without it",
                getattr(hook, "__module__", "?"),
                getattr(hook, "__qualname__", repr(hook)),
                who,
            )


def reset_posix_signals() -> None:
    """Give a fresh child its dispositions: the master alone acts on stop and reload.

    SIGHUP becomes "stop gracefully" once the loop exists (`run_child`); SIGTERM
    ends the child at once, as the master's quick stop wants.
    """
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    # USR1, USR2 and TSTP mean stats, status and pause to the master alone: a
    # child gets back their defaults, as any process has them.
    for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTSTP):
        signal.signal(signum, signal.SIG_DFL)


def _leave_runtime() -> None:
    """In a process that a handler forked: it is no worker, mule or spooler.

    Its copies of the child's sockets are closed so it can never read the
    signals or messages of the process that forked it.
    """
    loop = CURRENT.loop
    if loop is not None:
        loop.forked_copy = True
        loop.link.close()
        for queue in loop.queues.values():
            queue.close()
        if loop.mailbox is not None:
            for box in loop.mailbox.queues():
                box.read_end.close()
        if loop.rpc is not None:
            loop.rpc.sock.close()  # nor take its RPC requests
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    CURRENT.reset()
