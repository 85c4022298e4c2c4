"""File monitors: a signal whenever a file or a directory changes.

Mirrors uwsgiconf's ``uwsgiconf.runtime.monitoring``:

```python
from uwsgisig.monitoring import register_file_monitor

@register_file_monitor("/etc/myapp/settings.toml", target="workers")
def reload_settings(num: int) -> None:
    ...
```

On Linux the master watches with inotify; elsewhere it compares the path's
state every half second. A directory is not watched recursively: creating,
changing or deleting an entry directly in it raises the signal once.
"""

from __future__ import annotations

import os

from . import platform
from .scheduling import Decorator, attach, check_unique
from .signals import Signal
from .targets import TypeTarget

__all__ = ["register_file_monitor"]


def register_file_monitor(
    path: str | os.PathLike[str], *, target: TypeTarget | Signal = None, unique: bool = False
) -> Decorator | None:
    """Raise a signal whenever ``path`` (a file or a directory) changes.

    Args:
        path: an existing file or directory.
        target: who runs the handler (default ``worker``), or a `Signal` to raise.
        unique: on one node of the cluster for each change (of a path they all
            see, on a shared file system): nodes tell a change by the path's
            modification time and size.

    Raises:
        FileNotFoundError: ``path`` does not exist (a `ScheduleError` too).
    """
    platform.check_monitor_path(path)
    check_unique(unique)
    return attach(target, lambda signal: platform.add_file_monitor(signal.num, path, unique))
