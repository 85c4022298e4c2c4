"""The stats server: the runtime's state as JSON, in uWSGI's shape, for uwsgitop and the like.

``--stats ADDR`` (a unix socket path, or a loopback ``host:port``) answers each
connection with one JSON document and closes it, as uWSGI's stats server
does; with ``--stats-http`` the document comes as an HTTP response. The keys
are uWSGI 2.0.31's (measured: ``version``, ``listen_queue``,
``listen_queue_errors``, ``signal_queue``, ``load``, ``pid``, ``uid``, ``gid``,
``cwd``, ``locks``, ``sockets``, ``workers[]`` with ``id``, ``pid``,
``accepting``, ``requests``, ``delta_requests``, ``exceptions``,
``harakiri_count``, ``signals``, ``signal_queue``, ``status``, ``rss``,
``vsz``, ``running_time``, ``last_spawn``, ``respawn_count``, ``tx``,
``avg_rt``, ``apps``, ``cores``), with values that are true here: the
runtime serves no requests, so the request counters are 0. What uWSGI lacks
comes beside them: ``mules[]``, ``spooler``, ``timers``, ``crons`` and
``signal_counts``.

A connection is answered in the master's loop, with one send that may block
for at most `SEND_TIMEOUT`: the document is small, and the peer is local.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..._version import __version__
from ...errors import MAX_SIGNAL
from ..model.addresses import parse_listen_address
from ..schedule.cron import CronSpec
from .door import bind_private_socket
from .peers import Slot

if TYPE_CHECKING:  # the loop builds the server, and hands itself to `snapshot`
    from .loop import Master

__all__ = ["StatsServer", "bind_stats", "memory_of", "snapshot", "workers_stats"]

log = logging.getLogger("uwsgisig")

SEND_TIMEOUT = 1.0  # seconds
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def bind_stats(address: str) -> socket.socket:
    """Listen on ``address``: a unix socket path (made 0600) or a loopback ``host:port``."""
    if ":" in address and not address.startswith(("/", ".")):
        host, port = parse_listen_address(address)  # loopback only: it tells a lot
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family, backlog=16)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot serve stats on {address}: {exc.strerror}") from exc
        sock.setblocking(False)
        return sock
    return bind_private_socket(address, "stats socket", backlog=16)


def memory_of(pid: int) -> tuple[int, int]:
    """``(rss, vsz)`` of ``pid`` in bytes, from /proc; zeros if it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            size, resident = statm.read().split()[:2]
    except (OSError, ValueError):
        return 0, 0
    return int(resident) * _PAGE, int(size) * _PAGE


class StatsServer:
    """Answers each connection on ``listening`` with ``snapshot()`` as JSON."""

    def __init__(
        self,
        listening: socket.socket,
        poll: select.poll,
        snapshot: Callable[[], dict[str, Any]],
        *,
        http: bool = False,
    ) -> None:
        self.listening = listening
        self._poll = poll
        self._snapshot = snapshot
        self._http = http

    def start(self) -> None:
        self._poll.register(self.listening, select.POLLIN)

    def owns(self, fd: int) -> bool:
        return fd == self.listening.fileno()

    def fds(self) -> list[int]:
        return [self.listening.fileno()]

    def ready(self) -> None:
        """Answer every connection waiting to be accepted."""
        while True:
            try:
                peer, _ = self.listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("stats server: cannot accept: %s", exc)
                return
            with peer:
                self._answer(peer)

    def _answer(self, peer: socket.socket) -> None:
        body = json.dumps(self._snapshot(), indent=1).encode()
        peer.settimeout(SEND_TIMEOUT)
        try:
            if self._http:
                _read_request(peer)
                head = (
                    "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                body = head.encode() + body
            peer.sendall(body)
        except OSError as exc:
            log.warning("stats server: a client left before its answer: %s", exc)

    def close(self) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._poll.unregister(self.listening)
        address = self.listening.getsockname()
        self.listening.close()
        if isinstance(address, str) and address:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address)


def _read_request(peer: socket.socket) -> None:
    """Read an HTTP request's head, so closing after the answer sends no reset."""
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        chunk = peer.recv(4096)
        if not chunk:
            return
        head += chunk


def snapshot(master: Master) -> dict[str, Any]:
    """The state of ``master``'s runtime, in the shape of uWSGI's stats server."""
    held = master.router.held.counts()
    raised = master.raised_by_num
    return {
        "version": __version__,
        "server": "uwsgisig",
        "listen_queue": 0,
        "listen_queue_errors": 0,
        "signal_queue": master.backlog(),
        "load": 0,
        "pid": master.pid,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cwd": os.getcwd(),
        "locks": [],
        "caches": _caches_stats(master),
        "sockets": [],
        "paused": master.router.paused is not None,
        "workers": workers_stats(master),
        "mules": [
            {**_slot_stats(mule, master), "farms": _farms_of(master, mule)}
            for mule in master.mules
        ],
        "spooler": _spooler_stats(master),
        "cluster": master.cluster.stats() if master.cluster is not None else None,
        "spoolers": [_spooler_process_stats(master, spooler) for spooler in master.spoolers],
        "timers": [
            {"signal": num, "period": period, "next_in": max(0.0, due - time.monotonic())}
            for num, period, due in master.events.timers.listing()
        ],
        "crons": [_cron_stats(num, spec) for num, spec in master.events.cron.specs()],
        "signal_counts": {
            str(num): {"raised": raised[num], "held": held.get(num, 0)}
            for num in range(MAX_SIGNAL + 1)
            if raised[num] or held.get(num)
        },
        "signals_raised": master.raised,
        "signals_held": len(master.router.held),
        "signals_dropped": master.router.held.dropped,
    }


def _caches_stats(master: Master) -> list[dict[str, Any]]:
    """uWSGI's figures of each cache (uwsgisig counts no hits, misses or full events)."""
    if master.caches is None:
        return []
    return [
        {
            "name": cache.name,
            "keysize": cache.spec.keysize,
            "max_items": cache.spec.items,
            "blocksize": cache.spec.blocksize,
            "items": len(cache),
            "purge_lru": cache.spec.purge_lru,
        }
        for cache in master.caches.caches.values()
    ]


def workers_stats(master: Master) -> list[dict[str, Any]]:
    """uWSGI's figures of every worker that has a process (``uwsgi.workers()``)."""
    return [_slot_stats(slot, master) for slot in master.workers if not slot.vacant]


def _slot_stats(slot: Slot, master: Master) -> dict[str, Any]:
    running = slot.progress.running
    if master.router.paused is not None:
        status = "pause"
    else:
        status = "idle" if running is None else f"sig{running}"
    rss, vsz = memory_of(slot.pid) if slot.pid else (0, 0)
    age = time.monotonic() - slot.started_at if slot.started_at else 0.0
    return {
        "id": slot.id,
        "pid": slot.pid or 0,
        "accepting": int(slot.ready),
        "requests": 0,  # the runtime serves no requests: its server counts them
        "delta_requests": 0,
        "exceptions": 0,
        "harakiri_count": 0,
        "signals": slot.progress.received,
        "signal_queue": slot.backlog(),
        "status": status,
        "rss": rss,
        "vsz": vsz,
        "running_time": int(age * 1_000_000),  # microseconds since its start
        "last_spawn": int(time.time() - age) if slot.started_at else 0,
        "respawn_count": slot.respawns + 1 if slot.started_at else 0,
        "tx": 0,
        "avg_rt": 0,
        "apps": [],
        "cores": [],
        "attached": slot.attached,
    }


def _cron_stats(num: int, spec: CronSpec) -> dict[str, Any]:
    upcoming = spec.next_match(datetime.now())
    return {
        "signal": num,
        "spec": str(spec),
        "next": upcoming.isoformat(timespec="minutes") if upcoming else None,
    }


def _farms_of(master: Master, mule: Slot) -> list[str]:
    return [farm.name for farm in master.config.farms if mule.id in farm.mules]


def _spooler_process_stats(master: Master, spooler: Slot) -> dict[str, Any]:
    spool = master.spool_of.get(spooler.key)
    return {
        **_spooler_slot_stats(master, spooler),
        "dir": str(spool.path) if spool is not None else None,
    }


def _spooler_stats(master: Master) -> dict[str, Any] | None:
    return _spooler_slot_stats(master, master.spooler) if master.spooler is not None else None


def _spooler_slot_stats(master: Master, spooler: Slot) -> dict[str, Any]:
    spool = master.spool_of.get(spooler.key)
    jobs = len(spool.pending()) if spool is not None else 0
    return {**_slot_stats(spooler, master), "jobs_queued": jobs}
