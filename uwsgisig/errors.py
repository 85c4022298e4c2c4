"""Exceptions raised by uwsgisig.

Every exception derives from `UwsgisigError`; the specific ones also derive
from the builtin they refine, so ``except ValueError`` keeps working for code
written against the `uwsgi` module.

This module is a leaf: the API, the platform seam and the runtime engine all
import it, and it imports nothing of theirs.
"""

from __future__ import annotations

__all__ = [
    "AppImportError",
    "AttachRefusedError",
    "CacheConfigError",
    "LockNumberError",
    "MessageQueueFullError",
    "MessageTooLargeError",
    "MonitorPathError",
    "NoSignalAvailableError",
    "NotInClusterError",
    "NotInRuntimeError",
    "RpcError",
    "RpcNotFoundError",
    "ScheduleError",
    "SignalAlreadyRegisteredError",
    "SignalNumberError",
    "SignalQueueFullError",
    "TargetError",
    "UwsgisigError",
]

MAX_SIGNAL = 255


class UwsgisigError(Exception):
    """Base class of every error uwsgisig raises."""


class SignalNumberError(UwsgisigError, ValueError):
    """A signal number is not an int in 0-255."""

    def __init__(self, value: object) -> None:
        super().__init__(
            f"invalid signal number {value!r}: a signal number is an int from 0 to {MAX_SIGNAL}"
        )
        self.value = value


class TargetError(UwsgisigError, ValueError):
    """A signal target is not one of the forms uWSGI knows, or names nothing."""


class SignalAlreadyRegisteredError(UwsgisigError, ValueError):
    """A handler is already registered for this signal number."""


class NoSignalAvailableError(UwsgisigError):
    """All 256 signal numbers are taken."""


class AppImportError(UwsgisigError):
    """The app raised while the runtime imported it; the message holds its traceback."""


class AttachRefusedError(UwsgisigError):
    """The runtime refused this process as a worker; the message gives its reason."""


class LockNumberError(UwsgisigError, ValueError):
    """A lock number the runtime has no lock for (as uWSGI, a ValueError)."""

    def __init__(self, num: object, count: int) -> None:
        super().__init__(
            f"invalid lock number {num!r}: this runtime has locks 0 to {count - 1} "
            "(give more with --locks N)"
        )


class CacheConfigError(UwsgisigError, ValueError):
    """A cache option (``--cache``, ``--cache2``) that uwsgisig cannot build a cache from,
    or a cache the runtime does not have (as uWSGI, a ValueError)."""


class RpcError(UwsgisigError, ValueError):
    """An RPC function that cannot be registered or called: its name, or where it is."""


class RpcNotFoundError(UwsgisigError, LookupError):
    """No RPC function of that name is registered in this process."""


class NotInRuntimeError(UwsgisigError, RuntimeError):
    """The call needs a running runtime (a master and its children) and there is none."""


class NotInClusterError(UwsgisigError, RuntimeError):
    """The call needs a runtime that is a node of a cluster (``--cluster``); this one is not."""


class ScheduleError(UwsgisigError, ValueError):
    """A timer, cron or file monitor is invalid: a period <= 0, a cron field out
    of range, an unparsable crontab, a path that does not exist."""


class MonitorPathError(FileNotFoundError, ScheduleError):
    """The path given to a file monitor does not exist.

    `FileNotFoundError` comes first so that ``.filename`` names the path.
    """


class SignalQueueFullError(UwsgisigError, OSError):
    """The master's queue stayed full for the whole send timeout.

    The signal that raised this was not queued; every signal sent before it was.
    """


class MessageTooLargeError(UwsgisigError, ValueError):
    """A mule message is longer than the most a queue carries."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"a mule message of {size} bytes is too large: the limit is {limit} bytes "
            "(send a path or a spool job for bigger data)"
        )
        self.size = size
        self.limit = limit


class MessageQueueFullError(UwsgisigError, OSError):
    """A mule or farm queue stayed full for the whole send timeout.

    The message that raised this was not queued; every message sent before it was.
    """


def check_signal_number(num: object) -> int:
    """Return ``num`` if it is a valid signal number, else raise `SignalNumberError`."""
    if isinstance(num, bool) or not isinstance(num, int) or not 0 <= num <= MAX_SIGNAL:
        raise SignalNumberError(num)
    return num
