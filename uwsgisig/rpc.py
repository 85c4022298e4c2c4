"""RPC functions, called in this process or on another node, with uwsgiconf's spelling.

```python
from uwsgisig.rpc import get_rpc_list, make_rpc_call, register_rpc

@register_rpc()
def hello(name: bytes) -> str:
    return f"hello {name.decode()}"

make_rpc_call("hello", args=["you"])                            # "hello you"
make_rpc_call("hello", args=["you"], remote="10.0.0.5:3031")    # on another node
```

Register at import: the master imports the app before it forks, so every
process has the function, and a local call runs in the calling process, as
in uWSGI. A function registered after fork exists only in the process that
registered it. A function gets its arguments as bytes; it returns bytes,
str (sent as UTF-8) or None. Other nodes reach the workers through the
runtime's RPC socket (``--rpc-socket HOST:PORT``), or a uWSGI node's socket.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TypeVar

from . import platform
from .errors import RpcError, RpcNotFoundError

__all__ = ["call", "get_rpc_list", "make_rpc_call", "register_rpc", "rpc"]

F = TypeVar("F", bound=Callable[..., object])


def register_rpc(name: str | None = None) -> Callable[[F], F]:
    """Decorator: register the function for RPC as ``name`` (its own name by default)."""

    def register(func: F) -> F:
        rpc_name = name if name is not None else getattr(func, "__name__", "")
        platform.register_rpc(rpc_name, _as_bytes_result(rpc_name, func))
        return func

    return register


def make_rpc_call(
    func_name: str, *, args: Sequence[object] | None = None, remote: str | None = None
) -> str | None:
    """Call RPC function ``func_name`` here, or on the node at ``remote`` (``HOST:PORT``).

    Each argument is sent as its text (bytes as they are). Returns the result
    decoded as UTF-8, or None when the function gave nothing.
    """
    result = rpc(remote, func_name, *(args or ())) if remote else call(func_name, *(args or ()))
    return None if result is None else result.decode("utf-8", "surrogateescape")


def call(name: str, *args: object) -> bytes | None:
    """Run RPC function ``name`` in this process; its result as bytes, or None.

    Raises `RpcNotFoundError` if this process has no function of that name.
    """
    platform.check_rpc_name(name)
    if not platform.rpc_registered(name):
        known = ", ".join(repr(known) for known in platform.rpc_list()) or "none"
        raise RpcNotFoundError(
            f"no RPC function {name!r} in this process (registered here: {known}); "
            "register it at import so that every process has it"
        )
    return platform.rpc_call(name, [_as_argument(arg) for arg in args])


def rpc(node: str | None, name: str, *args: object) -> bytes | None:
    """Call RPC function ``name`` on the node at ``node`` (``HOST:PORT``; None: here).

    Returns its result as bytes, or None when the node has no such function
    or it gave nothing. Raises OSError naming the node if it cannot be reached.
    """
    if not node:
        return call(name, *args)
    platform.check_rpc_name(name)
    return platform.rpc_remote(node, name, [_as_argument(arg) for arg in args])


def get_rpc_list() -> list[str]:
    """The names of the RPC functions registered in this process."""
    return platform.rpc_list()


def _as_argument(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8", "surrogateescape")


def _as_bytes_result(name: str, func: Callable[..., object]) -> Callable[..., bytes | None]:
    """``func``, returning bytes or None as uWSGI's RPC wants, from bytes, str or None."""
    if not callable(func):
        raise TypeError(f"an RPC function must be callable, not {func!r}")

    @functools.wraps(func)
    def answer(*args: bytes) -> bytes | None:
        result = func(*args)
        if result is None or isinstance(result, bytes):
            return result
        if isinstance(result, str):
            return result.encode("utf-8", "surrogateescape")
        raise RpcError(
            f"RPC function {name!r} returned {type(result).__name__} {result!r}: "
            "return bytes, str or None"
        )

    return answer
