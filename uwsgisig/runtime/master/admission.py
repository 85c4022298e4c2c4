"""Admitting a process at the attach door: the table check, the worker slot, the answer.

The door (`master.door`) carries the hello and the answer; this decides.
Its server's workers take ids from the first attach slot on. When the hello
says how many workers the server runs and every one of their ids is held, a
patient visitor waits for one to be freed (a server that reloads starts its
new workers before the old ones leave).
"""

from __future__ import annotations

import base64
import logging
import pickle
import time
from typing import TYPE_CHECKING, Any

import attrs

from ..model.config import RuntimeConfig
from .door import Admission
from .peers import Slot

if TYPE_CHECKING:  # the loop calls `admit` with itself
    from .loop import Master

__all__ = ["admit"]

log = logging.getLogger("uwsgisig")


def admit(
    master: Master, pid: int, hello: dict[str, Any], patient: bool
) -> tuple[Admission, Slot] | str | None:
    """A process asks to attach as a worker: check its table, give it a worker slot.

    Its server's workers take ids from the first attach slot on; when the
    hello says how many workers the server runs and every one of their
    ids is held, a ``patient`` answer is None: wait for one to be freed.
    """
    table = hello.get("table")
    if not isinstance(table, dict):
        return "the hello has no signal table"
    size = hello.get("workers")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        return f"invalid workers {size!r} in the hello: the server's worker count, an int >= 1"
    differences = master.table.differences(table)
    if differences:
        return (
            "its signal table differs from the runtime's, so the two did not import "
            "the same app (or the app registers signals differently in each process): "
            + "; ".join(differences)
        )
    slot = next((slot for slot in master.workers if slot.vacant), None)
    if size is not None and (slot is None or slot.id > master.config.workers + size):
        if patient:
            log.info(
                "pid %d waits for one of its server's worker ids %d-%d to be freed",
                pid,
                master.config.workers + 1,
                master.config.workers + size,
            )
            return None  # its server's ids are all held: one is about to be freed
        log.warning(
            "pid %d: worker ids %d-%d of its server are all held; it gets another",
            pid,
            master.config.workers + 1,
            master.config.workers + size,
        )
    if slot is None:
        attachable = [s.id for s in master.workers if s.attached]
        return (
            f"every attach slot is taken (workers {attachable[0]}-{attachable[-1]}): "
            "give the runtime more with --attach"
        )
    if slot.started_at:
        slot.respawns += 1  # a new holder of this id
    slot.pid = pid
    slot.ready = False
    slot.started_at = time.monotonic()
    master.router.workers_changed()
    master.touch(slot)  # what waited for the slot's next holder
    index = master.slots.index(slot)
    answer = {
        "id": slot.id,
        "index": index,
        "masterpid": master.pid,
        "config": base64.b64encode(pickle.dumps(_config_for_workers(master.config))).decode(),
        "mules": master.config.mule_count,
        "farms": {farm.name: list(farm.mules) for farm in master.config.farms},
        "locks": master.locks.count,
        "caches": master.caches.path if master.caches is not None else None,
        "rpc": master.rpc_listening is not None,  # its descriptor follows the locks'
    }
    fds = [
        slot.child_end.fileno(),
        master.progress.memory.fd,
        master.rings.memory.fd,
        master.rings.sleeping_memory.fd,
        *(end.fileno() for end in master.worker_queue.read_ends),
        master.locks.fd,
        *([master.rpc_listening.fileno()] if master.rpc_listening is not None else []),
        *(queue.write_end.fileno() for queue in master.post.all_queues()),
    ]
    return Admission(answer, fds, f"worker {slot.id}"), slot


def _config_for_workers(config: RuntimeConfig) -> RuntimeConfig:
    # Mule loops may be lambdas: a worker does not need them, and they do not pickle.
    return attrs.evolve(config, programs=())
