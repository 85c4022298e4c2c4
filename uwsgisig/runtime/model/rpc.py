"""The RPC functions of one process, and how one is called, as uWSGI calls them.

Functions registered while the master imports the app exist in every child
(fork copies them); one registered later lives only in the process that
registered it, as in uWSGI. A call gets each argument as bytes; its result
counts only if it is non-empty bytes, otherwise the caller gets None. A
function that raises is logged with its traceback and gives None too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

__all__ = ["MAX_NAME", "RpcFunctions"]

log = logging.getLogger("uwsgisig")

# uWSGI keeps names in 256-byte fields, the last one for the terminating zero.
MAX_NAME = 255


class RpcFunctions:
    """RPC functions by name, in registration order."""

    __slots__ = ("_functions",)

    def __init__(self) -> None:
        self._functions: dict[str, Callable[..., object]] = {}

    def register(self, name: str, func: Callable[..., object]) -> None:
        """Register ``func`` as ``name``; a name registered before is replaced, as in uWSGI."""
        self._functions[name] = func

    def names(self) -> list[str]:
        """The names registered in this process."""
        return list(self._functions)

    def get(self, name: str) -> Callable[..., object] | None:
        """The function registered as ``name``, or None."""
        return self._functions.get(name)

    def call(self, name: str, args: Sequence[bytes]) -> bytes | None:
        """Run ``name`` here with ``args``; its non-empty bytes result, else None."""
        func = self._functions.get(name)
        if func is None:
            return None
        try:
            result = func(*args)
        except Exception:
            log.exception("RPC function %r raised", name)
            return None
        return result if isinstance(result, bytes) and result else None
