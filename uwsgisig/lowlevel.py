"""The low-level calls, named as in uWSGI's `uwsgi` module.

Code written against ``uwsgi.register_signal``, ``uwsgi.signal``,
``uwsgi.signal_wait`` and friends can use these unchanged:

```python
from uwsgisig import lowlevel as uwsgi

uwsgi.register_signal(30, "workers", on_reload)
uwsgi.signal(30)
```

The high-level API (`uwsgisig.Signal`, `uwsgisig.Mule`, ...) calls exactly these.
"""

import os

from .platform import (
    add_cron,
    add_file_monitor,
    add_ms_timer,
    add_rb_timer,
    add_timer,
    farm_get_msg,
    farm_msg,
    i_am_the_spooler,
    in_farm,
    masterpid,
    mule_get_msg,
    mule_id,
    mule_msg,
    numproc,
    register_signal,
    signal,
    signal_received,
    signal_registered,
    signal_wait,
    spool,
    worker_id,
)

__all__ = [
    "add_cron",
    "add_file_monitor",
    "add_ms_timer",
    "add_rb_timer",
    "add_timer",
    "farm_get_msg",
    "farm_msg",
    "i_am_the_spooler",
    "in_farm",
    "masterpid",
    "mule_get_msg",
    "mule_id",
    "mule_msg",
    "numproc",
    "send_to_spooler",
    "register_signal",
    "signal",
    "signal_received",
    "signal_registered",
    "signal_wait",
    "worker_id",
]


def send_to_spooler(
    message_dict: dict[str, str | bytes] | None = None,
    spooler: str | os.PathLike[str] | None = None,
    priority: int | None = None,
    at: float | None = None,
    body: bytes | None = None,
    **kwargs: str | bytes,
) -> str:
    """Spool a job, as ``uwsgi.send_to_spooler``; return the job's path.

    A job with a ``priority`` (a number >= 0) runs before those of a higher
    one and before every job without one.
    """
    return spool(
        message_dict, body=body, at=at, spooler=spooler, priority=priority, **kwargs
    )
