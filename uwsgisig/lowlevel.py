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

from .platform import (
    add_cron,
    add_file_monitor,
    add_ms_timer,
    add_rb_timer,
    add_timer,
    i_am_the_spooler,
    in_farm,
    masterpid,
    mule_id,
    numproc,
    register_signal,
    signal,
    signal_received,
    signal_registered,
    signal_wait,
    worker_id,
)

__all__ = [
    "add_cron",
    "add_file_monitor",
    "add_ms_timer",
    "add_rb_timer",
    "add_timer",
    "i_am_the_spooler",
    "in_farm",
    "masterpid",
    "mule_id",
    "numproc",
    "register_signal",
    "signal",
    "signal_received",
    "signal_registered",
    "signal_wait",
    "worker_id",
]
