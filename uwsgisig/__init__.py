"""uWSGI's signal framework as a Python library.

Decorate handlers, declare mules and farms, raise signals from any process of
the runtime:

```python
from uwsgisig import Signal

hello = Signal(1)

@hello.register_handler(target="workers")
def greet(num: int) -> None:
    print("signal", num)
```
"""

from . import monitoring, scheduling, spooler
from ._version import __version__ as __version__
from .attaching import attach, detach
from .errors import (
    AttachRefusedError,
    CacheConfigError,
    LockNumberError,
    MessageQueueFullError,
    MessageTooLargeError,
    MonitorPathError,
    NoSignalAvailableError,
    NotInClusterError,
    NotInRuntimeError,
    RpcError,
    RpcNotFoundError,
    ScheduleError,
    SignalAlreadyRegisteredError,
    SignalNumberError,
    SignalQueueFullError,
    TargetError,
    UwsgisigError,
)
from .hooks import postfork
from .lowlevel import masterpid, mule_id, worker_id
from .mules import Farm, Mule, Offloaded
from .runtime import ProcessInfo, Runtime, RuntimeHandle
from .signals import (
    REGISTERED_SIGNALS,
    Signal,
    SignalDescription,
    get_available_num,
    get_last_received,
)

__all__ = [
    "AttachRefusedError",
    "CacheConfigError",
    "REGISTERED_SIGNALS",
    "Farm",
    "LockNumberError",
    "MessageQueueFullError",
    "MessageTooLargeError",
    "MonitorPathError",
    "Mule",
    "NoSignalAvailableError",
    "NotInClusterError",
    "NotInRuntimeError",
    "Offloaded",
    "ProcessInfo",
    "RpcError",
    "RpcNotFoundError",
    "Runtime",
    "RuntimeHandle",
    "ScheduleError",
    "Signal",
    "SignalAlreadyRegisteredError",
    "SignalDescription",
    "SignalNumberError",
    "SignalQueueFullError",
    "TargetError",
    "UwsgisigError",
    "attach",
    "detach",
    "get_available_num",
    "get_last_received",
    "masterpid",
    "monitoring",
    "mule_id",
    "postfork",
    "scheduling",
    "spooler",
    "worker_id",
]

