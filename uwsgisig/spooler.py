"""The spool: jobs that must run even if the runtime stops before they do.

A job is a dict of str keys whose values are str, bytes, int, float, bool,
None, or lists and dicts of those; it is written as a file in the spooler's
directory (``uwsgisig run app.py --spooler DIR``) and comes back to the
handler as it went in. The spooler process runs the app's spool handler on
each job, oldest first, and deletes the job when the handler returns None or
`SPOOL_OK`. A job whose handler raises or returns `SPOOL_RETRY` stays, and
runs again after the spooler frequency; with ``retries=N`` it is tried at
most N more times, each after a longer, jittered wait, then moved to the
dead letters (``dead/`` in the spool directory). Jobs left when the runtime
stops run when it starts again: at least once, so make a handler idempotent.

```python
from uwsgisig import spooler

@spooler.handler
def send_mail(job: dict) -> None:
    deliver(job["to"], job["cc"], job["body"])

spooler.spool({"to": "ops@example.com", "cc": ["a@example.com"]}, body=b"disk full",
              retries=5)
```
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from . import platform

__all__ = [
    "SPOOL_IGNORE",
    "SPOOL_OK",
    "SPOOL_RETRY",
    "get_pids",
    "get_tasks",
    "handler",
    "read_task_file",
    "set_period",
    "spool",
]

# uWSGI's answers of a spool handler.
SPOOL_OK = -2
"""The job is done: delete it."""
SPOOL_RETRY = -1
"""Run the job again later."""
SPOOL_IGNORE = 0
"""Not done: keep the job and look at it again later (as `SPOOL_RETRY`)."""

H = TypeVar("H", bound=Callable[[dict[str, Any]], object])


def spool(
    message: dict[str, Any] | None = None,
    *,
    body: bytes | None = None,
    at: float | None = None,
    spooler: str | os.PathLike[str] | None = None,
    retries: int | None = None,
    priority: int | None = None,
    **fields: Any,
) -> str:
    """Spool a job; return the path of its file.

    The job is ``message`` and ``fields`` merged, plus ``body`` under the key
    ``"body"``; the handler also finds the file's path under
    ``"spooler_task_name"``. Values are str, bytes, int, float, bool, None, or
    lists and dicts of those (a `TypeError` names any other). ``at`` is the
    UNIX time before which the job does not run. ``spooler`` is a spool
    directory other than the runtime's (it also lets a script outside the
    runtime spool jobs); with several spoolers (``--spooler`` repeated) it
    picks one by its directory or the directory's name. ``retries`` (a number
    >= 0) bounds the tries after the first; None tries again forever, as uWSGI
    does. ``priority`` (a number >= 0) runs the job before those of a higher
    one and before every job without one, as uWSGI orders them. Once this
    returns, the job is on disk.
    """
    return platform.spool(
        message,
        body=body,
        at=at,
        spooler=spooler,
        retries=retries,
        priority=priority,
        **fields,
    )


def handler(func: H) -> H:
    """Decorator: ``func(job)`` runs each spool job in the spooler.

    Return None or `SPOOL_OK` when the job is done; return `SPOOL_RETRY` or
    raise to have it run again later.
    """
    platform.set_spool_handler(func)
    return func


def get_tasks() -> list[str]:
    """The paths of the jobs waiting in the (first) spooler's directory, in running order."""
    return platform.spooler_jobs()


def get_pids() -> list[int]:
    """The pids of the spooler processes (uWSGI's ``spooler_pids``)."""
    return platform.spooler_pids()


def set_period(seconds: int) -> bool:
    """Make every spooler look at its jobs every ``seconds`` (0: the configured frequency)."""
    platform.set_spooler_frequency(seconds)
    return True


def read_task_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The job in the file ``path``, as the handler would get it; empty if it is no job."""
    return platform.spooler_get_task(path) or {}
