"""A process the master did not fork becomes one of its workers.

The process (a web server's worker) connects to the runtime's attach
socket, sends its hello (its pid, its signal table) and gets back its
worker id with the descriptors a forked worker would have inherited: its
private socket, the shared memory of progress cells and rings, the workers'
shared signal queue and the mules' message queues. Then its signal loop
runs in a thread of its own, so the server's threads keep serving requests
while handlers run beside them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import pickle
import socket
import threading
from collections.abc import Callable
from typing import Any

from ...errors import AttachRefusedError
from ..ipc.cache import CacheStore
from ..ipc.link import MasterGone, MasterLink
from ..ipc.locks import SharedLocks
from ..ipc.messages import PostOffice
from ..ipc.progress import Progress
from ..ipc.rings import Rings
from ..model.config import RuntimeConfig
from ..model.process import CURRENT
from ..model.roles import Role
from ..model.table import TABLE
from .bootstrap import rpc_server, run_hooks
from .loop import SignalLoop

__all__ = ["Attachment", "attach_to"]

log = logging.getLogger("uwsgisig")

ANSWER_LIMIT = 1 << 20
_MAX_FDS = 1024  # the worker's own socket, 4 mappings and queues, every mule's and farm's queue


class Attachment:
    """This process as worker ``worker_id``: its connection, its link, its loop's thread."""

    def __init__(
        self, door: socket.socket, link: MasterLink, loop: SignalLoop, worker_id: int
    ) -> None:
        self.door = door
        self.link = link
        self.loop = loop
        self.id = worker_id
        self.pid = os.getpid()
        self.thread: threading.Thread | None = None

    def serve_in_thread(self, hooks: list[Callable[[], object]]) -> None:
        """Run the post-fork ``hooks`` here, say READY, and serve signals in a daemon thread."""
        run_hooks(hooks, f"worker {self.id} (pid {self.pid})")
        self.link.ready()
        self.thread = threading.Thread(
            target=self._serve, name=f"uwsgisig worker {self.id}", daemon=True
        )
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.loop.serve_forever()
        except MasterGone:
            log.info("worker %d (pid %d): the runtime is gone; detached", self.id, self.pid)
        except OSError:
            if not self.loop.leaving:
                raise
            # detach() closed the link under the loop: it was leaving anyway.
        finally:
            self._forget()

    def detach(self) -> None:
        """Leave the runtime: the master gives what this worker had not started to the next."""
        if os.getpid() != self.pid:
            return  # a forked copy: the attached process is its parent
        self.loop.leaving = True
        # Closing the private socket first: nothing more can be read into this
        # process once the master learns it left.
        self.link.close()
        self._close_rpc()
        self.door.close()
        self._forget()

    def leave_copy(self) -> None:
        """In a process forked from this one: close its copies, it is no worker."""
        self.link.close()
        for queue in self.loop.queues.values():
            queue.close()
        self._close_rpc()
        self.door.close()
        self._forget()

    def _close_rpc(self) -> None:
        # A worker that left takes no RPC request, nor does a copy a request forked.
        if self.loop.rpc is not None:
            self.loop.rpc.sock.close()

    def _forget(self) -> None:
        if CURRENT.loop is self.loop:
            CURRENT.reset()


def attach_to(path: str, *, workers: int | None = None) -> Attachment:
    """Attach this process to the runtime listening on ``path`` as one of its workers.

    ``workers`` is how many workers this process's server runs, if known:
    see `master.door` for what the runtime does with it.

    Raises `AttachRefusedError` with the runtime's reason if it refuses (a
    signal table that differs, no free worker slot, another user).
    """
    door = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        door.connect(path)
        hello = {"pid": os.getpid(), "table": TABLE.fingerprint(), "workers": workers}
        door.sendall(json.dumps(hello).encode() + b"\n")
        answer, fds = _read_answer(door)
    except BaseException:
        door.close()
        raise
    if not answer.get("ok"):
        door.close()
        raise AttachRefusedError(f"the runtime at {path} refused this worker: {answer['error']}")
    try:
        return _become_worker(door, answer, fds)
    except BaseException:
        door.close()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise


def _read_answer(door: socket.socket) -> tuple[dict[str, Any], list[int]]:
    buffer = bytearray()
    fds: list[int] = []
    while b"\n" not in buffer:
        data, got, _flags, _addr = socket.recv_fds(door, 65536, _MAX_FDS)
        fds += got
        if not data:
            for fd in fds:
                os.close(fd)
            raise AttachRefusedError("the runtime closed the attach socket without an answer")
        buffer += data
        if len(buffer) > ANSWER_LIMIT:
            raise AttachRefusedError("the runtime's answer is too long")
    line = buffer.partition(b"\n")[0]
    return json.loads(line), fds


def _become_worker(door: socket.socket, answer: dict[str, Any], fds: list[int]) -> Attachment:
    private, progress_fd, rings_fd, sleeping_fd, single_fd, burst_fd, locks_fd, *rest = fds
    rpc_fd, post_fds = (rest[0], rest[1:]) if answer.get("rpc") else (None, rest)
    config: RuntimeConfig = pickle.loads(base64.b64decode(answer["config"]))
    index = answer["index"]
    progress = Progress.attach(progress_fd)
    rings = Rings.attach(rings_fd, sleeping_fd)
    link = MasterLink(
        socket.socket(fileno=private),
        send_timeout=config.send_timeout,
        progress=progress.cell(index),
        ring=rings.ring(index),
        threaded=True,
    )
    worker_queue = (socket.socket(fileno=single_fd), socket.socket(fileno=burst_fd))
    for end in worker_queue:
        end.setblocking(False)
    farms = {name: tuple(mules) for name, mules in answer["farms"].items()}
    post = PostOffice(
        answer["mules"],
        farms,
        write_ends=iter([socket.socket(fileno=fd, type=socket.SOCK_DGRAM) for fd in post_fds]),
    )
    rpc = rpc_server(socket.socket(fileno=rpc_fd), link, config) if rpc_fd is not None else None
    loop = SignalLoop(link, [worker_queue], TABLE, threads=True, rpc=rpc)
    CURRENT.role = Role.WORKER
    CURRENT.id = answer["id"]
    CURRENT.masterpid = answer["masterpid"]
    CURRENT.config = config
    CURRENT.loop = loop
    CURRENT.post = post
    CURRENT.locks = SharedLocks(answer["locks"], fd=locks_fd)
    if answer.get("caches"):  # the directory of the runtime's caches: open our own
        CURRENT.caches = CacheStore.join(config.caches, answer["caches"])
    return Attachment(door, link, loop, answer["id"])
