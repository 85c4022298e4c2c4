"""uWSGI's caches, shared by every process of the runtime, with uwsgiconf's spelling.

```python
from uwsgisig.caching import Cache

cache = Cache("mycache")          # uwsgisig run app.py --cache2 name=mycache,items=1000

cache.set("answer", 42)           # stored as b"42" for 5 minutes (the default timeout)
cache["answer"]                   # "42"
"answer" in cache                 # True
cache.get("other", setter=lambda key: "computed")   # computed once, then cached
cache.incr("hits")                # an int64 counter; read it with get("hits", as_int=True)
```

The same code runs under a real uWSGI server, on its caches. A key that
holds a value is left alone by `Cache.set` (uWSGI's ``cache_set``); give it
a new value with ``del cache[key]`` first, or use the low-level
``cache_update``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import platform

__all__ = ["Cache"]

DEFAULT_TIMEOUT = 300  # seconds, uwsgiconf's


class Cache:
    """One of the runtime's caches, by name (None: the first cache, as uWSGI's calls do).

    ``timeout`` is how long a value set through this object lives, in
    seconds: 300 by default, 0 for ever.
    """

    __slots__ = ("name", "timeout")

    def __init__(self, name: str | None = None, *, timeout: int | None = None) -> None:
        self.name = name
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout

    def __repr__(self) -> str:
        return f"Cache({self.name!r}, timeout={self.timeout!r})"

    def __contains__(self, key: str | bytes) -> bool:
        """Whether ``key`` holds a value that has not expired."""
        return bool(platform.cache_exists(key, self.name))

    @property
    def keys(self) -> list[str]:
        """The keys that hold a value, decoded (UTF-8). ValueError if there is no such cache."""
        return [key.decode() for key in platform.cache_keys(self.name)]

    def clear(self) -> None:
        """Remove every item."""
        platform.cache_clear(self.name)

    def get(
        self,
        key: str | bytes,
        *,
        default: Any = None,
        as_int: bool = False,
        setter: Callable[[str | bytes], Any] | None = None,
        preserve_bytes: bool = False,
    ) -> Any:
        """The value of ``key``: a str (UTF-8), bytes with ``preserve_bytes``, or
        the int64 of `incr` and friends with ``as_int`` (0 when absent).

        When there is none: ``setter(key)`` is called, and its value, unless
        None, is stored and returned; else ``default`` is returned.
        """
        if as_int:
            value: Any = platform.cache_num(key, self.name)
        else:
            value = platform.cache_get(key, self.name)
            if value is not None and not preserve_bytes:
                value = value.decode()
        if value is None:
            if setter is None:
                return default
            value = setter(key)
            if value is None:
                return default
            self.set(key, value)
        return value

    __getitem__ = get

    def set(self, key: str | bytes, value: Any, *, timeout: int | None = None) -> bool:
        """Store ``value`` (bytes as they are, anything else as ``str(value)`` in UTF-8)
        unless ``key`` already holds one; ``timeout`` overrides the object's.

        True if stored; False if ``key`` holds a value, or the cache refused it
        (full, or the key or value too long for it).
        """
        if timeout is None:
            timeout = self.timeout
        if not isinstance(value, bytes):
            value = f"{value}".encode()
        return bool(platform.cache_set(key, value, timeout, self.name))

    def __setitem__(self, key: str | bytes, value: Any) -> None:
        """``cache[key] = value``: `set` with the object's timeout."""
        self.set(key, value)

    def delete(self, key: str | bytes) -> None:
        """Remove ``key`` (nothing if it holds no value)."""
        platform.cache_del(key, self.name)

    __delitem__ = delete

    def incr(self, key: str | bytes, *, delta: int = 1) -> bool:
        """Add ``delta`` to the int64 in ``key`` (a new key starts at the cache's
        ``math_initial``, 0 by default, and lives ``timeout`` seconds)."""
        return bool(platform.cache_inc(key, delta, self.timeout, self.name))

    def decr(self, key: str | bytes, *, delta: int = 1) -> bool:
        """Subtract ``delta`` from the int64 in ``key``."""
        return bool(platform.cache_dec(key, delta, self.timeout, self.name))

    def mul(self, key: str | bytes, *, value: int = 2) -> bool:
        """Multiply the int64 in ``key`` by ``value``."""
        return bool(platform.cache_mul(key, value, self.timeout, self.name))

    def div(self, key: str | bytes, *, value: int = 2) -> bool:
        """Divide the int64 in ``key`` by ``value`` (truncating; by 0 gives 0)."""
        return bool(platform.cache_div(key, value, self.timeout, self.name))
