"""uWSGI's caches, shared by every process of a runtime, on LMDB.

**Files.** The master makes one LMDB environment before it forks, in a
private directory (mode 0700, under ``/dev/shm`` when it may write there,
else in the system's temporary directory), and removes it when it stops.
Each cache is one named database of that environment; a ``purge_lru`` cache
has a second one, its order of use (use stamp -> key).

**Processes.** An LMDB environment must not cross a fork: each process
opens its own, by path, the first time it uses a cache (`CacheStore.env`);
the copy a child inherits is set aside at fork and closed there. An
attached worker opens the directory the attach door names.

**Records.** An LMDB record is a header, then the value's bytes. The header
is the expiry (little-endian u64, unix seconds, 0 for never) and, in a
``purge_lru`` cache, the item's use stamp (u64). LMDB takes keys of 511
bytes at most, uWSGI 2048 (``keysize``): a key of up to `DIRECT_KEY` bytes is
the LMDB key itself; a longer one is stored under its first `DIRECT_KEY`
bytes followed by its BLAKE2b-256 digest (a length no direct key has), and
the record holds the whole key (u16 length, the key) after the header,
compared on every read. A key longer than the cache's ``keysize`` is refused.

**uWSGI's rules** (measured on uWSGI 2.0.31): ``set`` stores only a key that
is not there; ``update`` always stores; an empty key or value, a key longer
than ``keysize`` and a value longer than ``blocksize`` are refused. When
``items`` keys are stored, a new key is refused and a line is logged,
unless the cache has ``purge_lru``: then the least recently used item
(read or written) makes room. ``inc``/``dec``/``mul``/``div`` work on a
little-endian int64, starting from ``math_initial`` for a new key, and keep
an existing item's expiry.

**Expiry.** An item whose expiry has passed reads as absent in every call
(uWSGI's ``lazy_expire``). The master calls `CacheStore.sweep` every
`SWEEP_INTERVAL` seconds, as uWSGI's sweeper thread does, to free their
room; a set into a full cache first drops the expired items.

**A process killed mid-use.** LMDB's writer lock is a robust mutex: the next
writer takes it over and the dead writer's transaction is never seen. A dead
reader's slot is freed by the sweep's ``reader_check``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import lmdb

from ..model.caches import CacheSpec

__all__ = ["DIRECT_KEY", "SWEEP_INTERVAL", "Cache", "CacheStore", "MathOp"]

log = logging.getLogger("uwsgisig")

SWEEP_INTERVAL = 3.0  # seconds, uWSGI's --cache-expire-freq default
DIRECT_KEY = 478  # longest key stored as itself; longer: 478 bytes + a 32-byte digest
MEMORY_DIR = "/dev/shm"
PRIVATE_PREFIX = "uwsgisig-cache-"
MAX_READERS = 1024  # reader slots: one or two per process that reads
# In memory and never synced: a cache does not outlive its runtime.
LMDB_OPTIONS: dict[str, Any] = {
    "max_readers": MAX_READERS,
    "writemap": True,
    "sync": False,
    "metasync": False,
    "map_async": True,
    "readahead": False,
}
FULL_LOG_INTERVAL = 1.0  # seconds between two "cache is full" lines of one process

EXPIRY = struct.Struct("<Q")
EXPIRY_AND_STAMP = struct.Struct("<QQ")
KEY_LENGTH = struct.Struct("<H")
STAMP = struct.Struct(">Q")  # big-endian: the order of use sorts as LMDB keys
INT64 = struct.Struct("<q")
U64_MAX = 2**64 - 1


class MathOp:
    """The four operations of ``cache_inc``, ``cache_dec``, ``cache_mul``, ``cache_div``."""

    INC = "inc"
    DEC = "dec"
    MUL = "mul"
    DIV = "div"


def lmdb_key(key: bytes) -> bytes:
    """The LMDB key of ``key`` (see the module's docstring)."""
    if len(key) <= DIRECT_KEY:
        return key
    return key[:DIRECT_KEY] + hashlib.blake2b(key, digest_size=32).digest()


def as_int64(value: bytes) -> int:
    """A value as uWSGI's math reads it: its first 8 bytes, zero-padded, little-endian."""
    return INT64.unpack(value[:8].ljust(8, b"\0"))[0]


def apply(op: str, num: int, delta: int) -> int:
    """``num OP delta`` in int64, as uWSGI's C does (wraps; x / 0 is 0; truncates)."""
    if op == MathOp.INC:
        result = num + delta
    elif op == MathOp.DEC:
        result = num - delta
    elif op == MathOp.MUL:
        result = num * delta
    elif delta == 0:
        result = 0
    else:
        quotient = abs(num) // abs(delta)
        result = quotient if (num < 0) == (delta < 0) else -quotient
    return (result + 2**63) % 2**64 - 2**63


class Item(NamedTuple):
    """A stored item, decoded."""

    expiry: int
    stamp: int
    value: bytes


def map_size_for(specs: tuple[CacheSpec, ...]) -> int:
    """Room for every cache full, twice over (LMDB copies pages on write), plus 4 MiB."""
    total = 4 << 20
    for spec in specs:
        item = spec.blocksize + min(spec.keysize, DIRECT_KEY) + 64
        if spec.keysize > DIRECT_KEY:
            item += spec.keysize
        if item > 2000:  # a value that does not fit in a page takes whole pages
            item = -(-item // 4096) * 4096 + 64
        total += 2 * spec.items * (item + (48 if spec.purge_lru else 0))
    return -(-total // 4096) * 4096


def private_directory() -> str:
    """A new 0700 directory for the environment: in memory when ``/dev/shm`` is writable."""
    where = MEMORY_DIR if os.access(MEMORY_DIR, os.W_OK | os.X_OK) else None
    return tempfile.mkdtemp(prefix=PRIVATE_PREFIX, dir=where)


_STORES: weakref.WeakSet[CacheStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        store.forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


class CacheStore:
    """The caches of one runtime, in the LMDB environment at ``path``.

    `create` makes one (the master); `join` opens one by path (an attached
    worker). ``clock`` gives the time in unix seconds (tests pass a fake one).
    """

    def __init__(
        self,
        specs: tuple[CacheSpec, ...],
        path: str,
        *,
        clock: Callable[[], float] = time.time,
        owner: bool = False,
    ) -> None:
        self.specs = tuple(specs)
        self.path = path
        self.clock = clock
        self.map_size = map_size_for(self.specs)
        self.owner_pid = os.getpid() if owner else 0
        self._env: lmdb.Environment | None = None
        self._inherited: list[lmdb.Environment] = []
        self._dbs: dict[str, tuple[object, object | None]] = {}
        self._opening = threading.Lock()
        self.caches = {spec.name: Cache(self, spec) for spec in self.specs}
        _STORES.add(self)

    @classmethod
    def create(
        cls, specs: tuple[CacheSpec, ...], *, clock: Callable[[], float] = time.time
    ) -> CacheStore:
        """Make the environment in a new private directory; this process owns it."""
        store = cls(specs, private_directory(), clock=clock, owner=True)
        try:
            store.env()
        except BaseException:
            store.remove()
            raise
        return store

    @classmethod
    def join(
        cls, specs: tuple[CacheSpec, ...], path: str, *, clock: Callable[[], float] = time.time
    ) -> CacheStore:
        """Open the environment another process made at ``path``."""
        return cls(specs, path, clock=clock)

    def cache(self, name: str | None = None) -> Cache | None:
        """Cache ``name``; the first cache for None or ""; None if there is no such cache."""
        if not name:
            return self.caches[self.specs[0].name] if self.specs else None
        return self.caches.get(name)

    # ------------------------------------------------------------- environment

    def env(self) -> lmdb.Environment:
        """This process's environment, opened the first time it is needed."""
        env = self._env
        if env is None:
            with self._opening:
                env = self._env or self._open()
        return env

    def handles(self, name: str) -> tuple[lmdb.Environment, object, object | None]:
        """The environment, the cache's database and its order of use (None without LRU)."""
        return self.caches[name].handles()

    def _open(self) -> lmdb.Environment:
        for inherited in self._inherited:
            inherited.close()  # the parent's copy: LMDB refuses a second open of the files
        self._inherited.clear()
        env = lmdb.open(
            self.path,
            map_size=self.map_size,
            max_dbs=max(2 * len(self.specs), 1),
            create=bool(self.owner_pid),
            **LMDB_OPTIONS,
        )
        with env.begin(write=True) as txn:
            self._dbs = {
                spec.name: (
                    env.open_db(spec.name.encode(), txn=txn),
                    env.open_db(b"lru:" + spec.name.encode(), txn=txn) if spec.purge_lru else None,
                )
                for spec in self.specs
            }
        for cache in self.caches.values():
            cache.bind(env, *self._dbs[cache.name])
        self._env = env
        return env

    def forked(self) -> None:
        """In a child, after fork: set the parent's environment aside, open our own later."""
        if self._env is not None:
            self._inherited.append(self._env)
        self._env = None
        for cache in self.caches.values():
            cache.bind(None, None, None)
        self._opening = threading.Lock()
        self.owner_pid = 0  # the files are the master's

    # ------------------------------------------------------------- the master's

    def sweep(self) -> int:
        """Remove every expired item; free the slots of readers that died. Return the count."""
        removed = sum(cache.sweep() for cache in self.caches.values())
        self.env().reader_check()
        return removed

    def close(self) -> None:
        """Close this process's environment."""
        if self._env is not None:
            for cache in self.caches.values():
                cache.bind(None, None, None)
            self._env.close()
            self._env = None

    def remove(self) -> None:
        """Close and delete the files (the process that made them; nothing elsewhere)."""
        self.close()
        if self.owner_pid == os.getpid():
            shutil.rmtree(self.path, ignore_errors=True)
            self.owner_pid = 0


class Cache:
    """One cache of a `CacheStore`: uWSGI's calls, on bytes keys and values."""

    def __init__(self, store: CacheStore, spec: CacheSpec) -> None:
        self.store = store
        self.spec = spec
        self.name = spec.name
        self._header = EXPIRY_AND_STAMP if spec.purge_lru else EXPIRY
        self._swept_at = -1
        self._next_full_log = 0.0
        self._refused = 0
        self._env: lmdb.Environment | None = None
        self._db: object = None
        self._lru: object = None

    def bind(self, env: lmdb.Environment | None, db: object, lru: object) -> None:
        """Use ``env`` and these databases (None: this process has not opened them yet)."""
        self._env, self._db, self._lru = env, db, lru

    def handles(self) -> tuple[lmdb.Environment, object, object | None]:
        """This process's environment, the cache's database and its order of use."""
        if self._env is None:
            self.store.env()  # opens, and binds every cache
        assert self._env is not None
        return self._env, self._db, self._lru

    # ------------------------------------------------------------- reading

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key``, or None if it is absent or expired."""
        if not key:
            return None  # LMDB has no empty key, and uWSGI stores none
        if self.spec.purge_lru:
            return self._get_and_touch(key)
        env, db, _ = self.handles()
        if len(key) > DIRECT_KEY:
            with env.begin(db=db) as txn:
                item = self._live(key, txn.get(lmdb_key(key)), self._now())
            return None if item is None else item.value
        # The hot path: one read transaction, the value copied out of the map once.
        with env.begin(db=db, buffers=True) as txn:
            record = txn.get(key)
            if record is None:
                return None
            expiry = EXPIRY.unpack_from(record)[0]
            if expiry and expiry <= self.store.clock():  # an int <= t: the same as <= int(t)
                return None
            return bytes(record[EXPIRY.size :])

    def exists(self, key: bytes) -> bool:
        """Whether ``key`` holds a value that has not expired (its use is not counted)."""
        if not key:
            return False
        env, db, _ = self.handles()
        with env.begin(db=db) as txn:
            record = txn.get(lmdb_key(key))
        return self._live(key, record, self._now()) is not None

    def num(self, key: bytes) -> int:
        """The int64 in ``key``; 0 if it is absent or its value is not 8 bytes (uWSGI's)."""
        value = self.get(key)
        if value is None or len(value) != 8:
            return 0
        return INT64.unpack(value)[0]

    def keys(self) -> list[bytes]:
        """Every key that holds a value that has not expired."""
        env, db, _ = self.handles()
        now = self._now()
        found = []
        with env.begin(db=db) as txn:
            for lkey, record in txn.cursor():
                key = self._full_key(lkey, record)
                if self._live(key, record, now) is not None:
                    found.append(key)
        return found

    def __len__(self) -> int:
        """Items stored, expired ones not yet swept included."""
        env, db, _ = self.handles()
        with env.begin() as txn:
            return int(txn.stat(db)["entries"])

    # ------------------------------------------------------------- writing

    def set(self, key: bytes, value: bytes, expires: int = 0, *, update: bool = False) -> bool:
        """Store ``value``; unless ``update``, only where ``key`` holds nothing live.

        False if refused (exists, too big, full).
        """
        if not self._fits(key, value):
            return False
        with self._writing() as (txn, now):
            live = self._live_in(txn, key, now) is not None
            if live and not update:
                return False
            if not live and not self._make_room(txn, key, now):
                return False
            return self._put(txn, key, self._expiry(expires, now), value)
        return False  # LMDB's map is full (logged)

    def math(self, key: bytes, op: str, delta: int, expires: int = 0) -> bool:
        """``key = key OP delta`` on an int64; a new key starts from ``math_initial``."""
        if not key or len(key) > self.spec.keysize or self.spec.blocksize < 8:
            return False
        with self._writing() as (txn, now):
            old = self._live_in(txn, key, now)
            if old is None:
                if not self._make_room(txn, key, now):
                    return False
                num, expiry = apply(op, self.spec.math_initial, delta), self._expiry(expires, now)
            else:
                num, expiry = apply(op, as_int64(old.value), delta), old.expiry
            return self._put(txn, key, expiry, INT64.pack(num))
        return False  # LMDB's map is full (logged)

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; False if it held nothing live."""
        if not key:
            return False
        with self._writing() as (txn, now):
            return self._live_in(txn, key, now) is not None and self._remove(txn, lmdb_key(key))
        return False

    def clear(self) -> None:
        """Remove every item."""
        env, db, lru = self.handles()
        with env.begin(write=True) as txn:
            txn.drop(db, delete=False)
            if lru is not None:
                txn.drop(lru, delete=False)

    def sweep(self) -> int:
        """Remove the expired items; return how many."""
        with self._writing() as (txn, now):
            return self._drop_expired(txn, now)
        return 0

    # ------------------------------------------------------------- inside

    def _now(self) -> int:
        return int(self.store.clock())

    def _expiry(self, expires: int, now: int) -> int:
        if expires == 0:
            return 0
        return min(max(now + expires, 1), U64_MAX)  # negative: expired already, as in uWSGI

    def _fits(self, key: bytes, value: bytes) -> bool:
        spec = self.spec
        return 0 < len(key) <= spec.keysize and 0 < len(value) <= spec.blocksize

    def _writing(self) -> _Writing:
        return _Writing(self)

    def _decode(self, key: bytes, record: bytes) -> Item | None:
        header = self._header
        if self.spec.purge_lru:
            expiry, stamp = header.unpack_from(record)
        else:
            (expiry,), stamp = header.unpack_from(record), 0
        start = header.size
        if len(key) > DIRECT_KEY:
            (length,) = KEY_LENGTH.unpack_from(record, start)
            start += KEY_LENGTH.size
            if record[start : start + length] != key:
                return None  # another long key with the same prefix and digest
            start += length
        return Item(expiry, stamp, record[start:])

    def _live(self, key: bytes, record: bytes | None, now: int) -> Item | None:
        if record is None:
            return None
        item = self._decode(key, record)
        if item is None or (item.expiry and item.expiry <= now):
            return None
        return item

    def _full_key(self, lkey: bytes, record: bytes) -> bytes:
        if len(lkey) <= DIRECT_KEY:
            return lkey
        (length,) = KEY_LENGTH.unpack_from(record, self._header.size)
        start = self._header.size + KEY_LENGTH.size
        return record[start : start + length]

    def _live_in(self, txn: lmdb.Transaction, key: bytes, now: int) -> Item | None:
        """The live item of ``key`` in a write transaction; an expired one is removed."""
        record = txn.get(lmdb_key(key), db=self._db)
        if record is None:
            return None
        item = self._live(key, record, now)
        if item is None and self._decode(key, record) is not None:
            self._remove(txn, lmdb_key(key))
        return item

    def _put(self, txn: lmdb.Transaction, key: bytes, expiry: int, value: bytes) -> bool:
        db, lru = self._db, self._lru
        if len(key) <= DIRECT_KEY:
            lkey, head = key, b""
        else:
            lkey, head = lmdb_key(key), KEY_LENGTH.pack(len(key)) + key
        if lru is None:
            head = EXPIRY.pack(expiry) + head
        else:
            head = EXPIRY_AND_STAMP.pack(expiry, self._touch(txn, lkey, lru, db)) + head
        try:
            txn.put(lkey, head + value, db=db)
        except lmdb.MapFullError:
            raise _Refused from None
        return True

    def _remove(self, txn: lmdb.Transaction, lkey: bytes) -> bool:
        _, db, lru = self.handles()
        if lru is not None:
            record = txn.get(lkey, db=db)
            if record is not None:
                txn.delete(STAMP.pack(EXPIRY_AND_STAMP.unpack_from(record)[1]), db=lru)
        return bool(txn.delete(lkey, db=db))

    def _touch(self, txn: lmdb.Transaction, lkey: bytes, lru: object, db: object) -> int:
        """Give ``lkey`` the newest use stamp; return it."""
        record = txn.get(lkey, db=db)
        if record is not None:
            txn.delete(STAMP.pack(EXPIRY_AND_STAMP.unpack_from(record)[1]), db=lru)
        cursor = txn.cursor(db=lru)
        stamp = STAMP.unpack(cursor.key())[0] + 1 if cursor.last() else 1
        txn.put(STAMP.pack(stamp), lkey, db=lru)
        return stamp

    def _get_and_touch(self, key: bytes) -> bytes | None:
        with self._writing() as (txn, now):
            item = self._live_in(txn, key, now)
            if item is None:
                return None
            _, db, lru = self.handles()
            lkey = lmdb_key(key)
            record = bytearray(txn.get(lkey, db=db))
            EXPIRY_AND_STAMP.pack_into(record, 0, item.expiry, self._touch(txn, lkey, lru, db))
            txn.put(lkey, bytes(record), db=db)
            return item.value

    def _make_room(self, txn: lmdb.Transaction, key: bytes, now: int) -> bool:
        """Whether a new key fits: drop expired items, or the least recently used one."""
        _, db, lru = self.handles()
        if txn.stat(db)["entries"] < self.spec.items:
            return True
        if now != self._swept_at:  # at most one look a second, or when the clock moved
            self._swept_at = now
            if self._drop_expired(txn, now):
                return True
        if lru is not None:
            cursor = txn.cursor(db=lru)
            if cursor.first():
                txn.delete(cursor.value(), db=db)
                cursor.delete()
                self._log_full(f"the least recently used item of cache {self.name!r} was purged")
                return True
        self._log_full(f"cache {self.name!r} is full ({self.spec.items} items): {key!r} not stored")
        return False

    def _drop_expired(self, txn: lmdb.Transaction, now: int) -> int:
        _, db, _ = self.handles()
        expired = [
            lkey for lkey, record in txn.cursor(db=db) if 0 < EXPIRY.unpack_from(record)[0] <= now
        ]
        for lkey in expired:
            self._remove(txn, lkey)
        return len(expired)

    def _log_full(self, line: str) -> None:
        """Log as uWSGI does, but one line a second at most, with the count."""
        if self.spec.ignore_full:
            return
        self._refused += 1
        now = time.monotonic()
        if now < self._next_full_log:
            return
        more = f" ({self._refused} times since the last line)" if self._refused > 1 else ""
        log.warning("%s%s", line, more)
        self._refused = 0
        self._next_full_log = now + FULL_LOG_INTERVAL


class _Refused(Exception):
    """LMDB's map is full: the write is refused, the transaction aborted."""


class _Writing:
    """``with cache._writing() as (txn, now)``: a write transaction; a refusal returns False."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.txn: lmdb.Transaction | None = None

    def __enter__(self) -> tuple[lmdb.Transaction, int]:
        env = self.cache.handles()[0]
        self.txn = env.begin(write=True)
        return self.txn, self.cache._now()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        assert self.txn is not None
        if exc_type is None:
            self.txn.commit()
            return False
        self.txn.abort()
        if exc_type is _Refused:
            self.cache._log_full(f"cache {self.cache.name!r} has no room left in memory")
            return True  # swallowed: the caller's `with` returns None
        return False
