"""Processes the runtime did not start join it as its workers.

A web server's worker (gunicorn, uvicorn, granian...) calls `attach` once
it has imported the app, and from then on it is one of the runtime's
workers: it has a `worker_id`, signals routed to ``worker``, ``workerN``,
``workers`` or ``active-workers`` run in it, and it raises signals, waits,
messages mules and spools jobs as a worker the runtime forked would.

`uwsgisig run APP -- COMMAND` starts the server with the runtime's attach
socket in `ATTACH_ENV`, so `attach()` with no argument finds it. Outside a
runtime (no socket given, none in the environment) it does nothing, so the
same app runs under the server alone.
"""

from __future__ import annotations

import os

from . import platform
from .runtime.model.config import ATTACH_ENV

__all__ = ["ATTACH_ENV", "attach", "detach"]


def attach(path: str | os.PathLike[str] | None = None, *, workers: int | None = None) -> int:
    """Attach this process to the runtime as one of its workers; return its worker id.

    ``path`` is the runtime's attach socket; by default the one in
    ``$UWSGISIG_ATTACH``. With neither, this returns 0 and does nothing. The
    app's post-fork hooks run here, then the worker's signal handlers run in
    a daemon thread of this process. Calling it again in an attached process
    returns the same id. Raises `uwsgisig.AttachRefusedError` with the
    runtime's reason when it refuses: a signal table that differs from the
    runtime's (the two did not import the same app), or no free worker slot.

    ``workers`` is how many workers the server runs, if it is known (the
    gunicorn hooks give it). Then ids stay 1 to ``workers`` across the
    server's reloads: a new worker that finds them all held by workers about
    to leave waits for one of those ids (up to 10 s) instead of taking a
    higher one.
    """
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ValueError(f"invalid workers {workers!r}: the server's worker count, an int >= 1")
    where = os.fspath(path) if path is not None else os.environ.get(ATTACH_ENV)
    if not where:
        return 0
    return platform.attach_worker(where, workers)


def detach() -> None:
    """Leave the runtime: signals queued for this worker go to the next holder of its id."""
    platform.detach_worker()
