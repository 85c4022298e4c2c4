"""What a cache is: uWSGI's ``--cache2 name=...,items=...`` and ``--cache N``, as values.

The caches themselves live in `runtime.ipc.cache`; this module only says
what each one holds, and refuses a definition it cannot honour before
anything starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from ...errors import CacheConfigError

__all__ = [
    "DEFAULT_BLOCKSIZE",
    "DEFAULT_CACHE",
    "DEFAULT_KEYSIZE",
    "MAX_KEYSIZE",
    "CacheSpec",
    "cache_specs",
    "check_unique",
    "default_cache",
    "parse_cache2",
]

DEFAULT_CACHE = "default"
"""The name uWSGI gives the cache of ``--cache N``."""
DEFAULT_BLOCKSIZE = 65536  # uWSGI's: the largest value a cache takes, in bytes
DEFAULT_KEYSIZE = 2048  # uWSGI's: the longest key, in bytes
MAX_KEYSIZE = 65534  # uWSGI refuses keysize >= 65535
INT64 = (-(2**63), 2**63 - 1)

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_TRUE = ("1", "true", "yes", "on", "")
_FALSE = ("0", "false", "no", "off")
# uWSGI's --cache2 keys that uwsgisig honours, by spelling -> field.
_KEYS = {
    "name": "name",
    "items": "items",
    "max_items": "items",
    "maxitems": "items",
    "blocksize": "blocksize",
    "keysize": "keysize",
    "key_size": "keysize",
    "purge_lru": "purge_lru",
    "lru": "purge_lru",
    "math_initial": "math_initial",
    "ignore_full": "ignore_full",
}
# Keys that change nothing here: expired items are always hidden when read
# (uWSGI's lazy_expire), and LMDB has no hash table to size.
_ACCEPTED = ("lazy_expire", "lazy", "hash", "hashsize", "hash_size")
_BOOLEANS = ("purge_lru", "ignore_full")


def _name(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise CacheConfigError(
            f"invalid cache name {value!r}: use letters, digits, '_', '.' or '-'"
        )


def _int_in(low: int, high: int | None, what: str) -> object:
    def check(instance: object, attribute: attrs.Attribute, value: int) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < low
            or (high is not None and value > high)
        ):
            bound = f"from {low} to {high}" if high is not None else f">= {low}"
            raise CacheConfigError(
                f"invalid {attribute.name} {value!r} for cache {instance_name(instance)}: "
                f"{what}, an int {bound}"
            )

    return check


def instance_name(instance: object) -> str:
    """The cache's name for a message, while it is being built."""
    return repr(getattr(instance, "name", "?"))


@attrs.frozen
class CacheSpec:
    """One cache: its name, how many items it holds and how big they may be.

    ``items`` is the most it holds; ``blocksize`` the largest value and
    ``keysize`` the longest key, in bytes. When it is full a new key is
    refused, or, with ``purge_lru``, the least recently used item makes
    room. ``math_initial`` is where ``cache_inc`` and friends start from;
    ``ignore_full`` keeps the "full" line out of the log.
    """

    name: str = attrs.field(validator=_name)
    items: int = attrs.field(validator=_int_in(1, None, "the most items it holds"))
    blocksize: int = attrs.field(
        default=DEFAULT_BLOCKSIZE, validator=_int_in(1, None, "the largest value in bytes")
    )
    keysize: int = attrs.field(
        default=DEFAULT_KEYSIZE, validator=_int_in(1, MAX_KEYSIZE, "the longest key in bytes")
    )
    purge_lru: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    math_initial: int = attrs.field(
        default=0, validator=_int_in(INT64[0], INT64[1], "the start of cache_inc and friends")
    )
    ignore_full: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))


def default_cache(items: int) -> CacheSpec:
    """uWSGI's ``--cache N``: the cache named ``default``, with ``items`` items."""
    if isinstance(items, bool) or not isinstance(items, int) or items < 1:
        raise CacheConfigError(
            f"invalid --cache {items!r}: the number of items of the default cache, an int >= 1"
        )
    return CacheSpec(DEFAULT_CACHE, items)


def parse_cache2(text: str) -> CacheSpec:
    """Parse uWSGI's ``--cache2`` syntax: ``name=NAME,items=N[,blocksize=B,keysize=K,...]``."""
    if not isinstance(text, str):
        raise CacheConfigError(f"invalid --cache2 {text!r}: give 'name=NAME,items=N'")
    fields: dict[str, object] = {}
    for pair in text.split(","):
        key, sep, value = pair.strip().partition("=")
        if key in _ACCEPTED:
            continue
        if key not in _KEYS or (not sep and key not in ("purge_lru", "lru", "ignore_full")):
            raise CacheConfigError(_bad_key(text, key))
        field = _KEYS[key]
        fields[field] = _value(text, field, value.strip())
    for needed in ("name", "items"):
        if needed not in fields:
            raise CacheConfigError(
                f"invalid --cache2 {text!r}: {needed}= is missing (write 'name=NAME,items=N')"
            )
    return CacheSpec(**fields)  # type: ignore[arg-type]


def _bad_key(text: str, key: str) -> str:
    allowed = ", ".join(sorted({*_KEYS, *_ACCEPTED}))
    return (
        f"invalid --cache2 {text!r}: {key!r} is not a key uwsgisig takes "
        f"(it takes {allowed}; uWSGI's store, nodes, sync, udp, bitmap and friends are not offered)"
    )


def _value(text: str, field: str, value: str) -> object:
    if field == "name":
        return value
    if field in _BOOLEANS:
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise CacheConfigError(f"invalid --cache2 {text!r}: {field}={value!r} is not 1 or 0")
    try:
        return int(value)
    except ValueError:
        raise CacheConfigError(
            f"invalid --cache2 {text!r}: {field}={value!r} is not a whole number"
        ) from None


def cache_specs(cache: int, cache2: Iterable[str | CacheSpec]) -> tuple[CacheSpec, ...]:
    """The caches of ``--cache N`` (0 for none) then each ``--cache2``, as uWSGI orders them."""
    if isinstance(cache, bool) or not isinstance(cache, int) or cache < 0:
        raise CacheConfigError(
            f"invalid --cache {cache!r}: the number of items of the default cache, "
            "an int >= 1 (0 for no default cache)"
        )
    if isinstance(cache2, (str, bytes)):
        raise CacheConfigError(f"invalid cache2 {cache2!r}: give a list of --cache2 definitions")
    first = (default_cache(cache),) if cache else ()
    return first + tuple(
        spec if isinstance(spec, CacheSpec) else parse_cache2(spec) for spec in cache2
    )


def check_unique(specs: tuple[CacheSpec, ...]) -> None:
    """Refuse two caches of one name (uWSGI would keep both and only ever use the first)."""
    names = [spec.name for spec in specs]
    for name in names:
        if names.count(name) > 1:
            raise CacheConfigError(f"cache {name!r} is defined twice: give each cache its own name")
