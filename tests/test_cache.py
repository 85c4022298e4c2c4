"""uWSGI's caches: one store shared by every process of a runtime, uWSGI's rules for
set and update, expiry, the items bound, purge_lru, the compat spellings, the
high-level `Cache` under a real uWSGI, and bad options refused.

The engine's rules are tested on `CacheStore` with a fake clock; the sharing
between processes on a running runtime, each step waiting on a record."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import textwrap
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.servers import start_uwsgi, start_uwsgisig
from tests.test_attach import Attached
from uwsgisig import CacheConfigError, NotInRuntimeError, Runtime, compat, platform
from uwsgisig.caching import Cache
from uwsgisig.ini import read_ini
from uwsgisig.runtime.ipc.cache import DIRECT_KEY, CacheStore, MathOp, apply
from uwsgisig.runtime.model.caches import CacheSpec, cache_specs, parse_cache2

pytestmark = pytest.mark.timeout(90)


class Clock:
    """A clock the test moves: unix seconds."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock):
    """A store with caches for each rule; removed after the test."""
    made = CacheStore.create(
        cache_specs(
            100,
            [
                "name=few,items=3",
                "name=lru,items=3,purge_lru=1",
                "name=small,items=10,blocksize=100,keysize=600",
                "name=mathy,items=10,math_initial=10",
            ],
        ),
        clock=clock,
    )
    yield made
    made.remove()
    assert not os.path.exists(made.path)


# ---------------------------------------------------------------- the engine's rules


def test_set_stores_only_a_new_key_and_update_always_stores(store):
    cache = store.cache(None)
    assert cache.name == "default"  # --cache N is the first cache, the one without a name
    assert cache.set(b"k", b"v1") is True
    assert cache.set(b"k", b"v2") is False
    assert cache.get(b"k") == b"v1"
    assert cache.set(b"k", b"v3", update=True) is True
    assert cache.get(b"k") == b"v3"
    assert cache.set(b"new", b"x", update=True) is True
    assert cache.delete(b"k") is True
    assert cache.delete(b"k") is False
    assert cache.get(b"k") is None


def test_expired_items_read_as_absent_and_the_sweep_removes_them(store, clock):
    cache = store.cache("default")
    cache.set(b"short", b"1", 10)
    cache.set(b"forever", b"1", 0)
    clock.now += 9
    assert cache.get(b"short") == b"1"
    clock.now += 1
    assert cache.get(b"short") is None
    assert not cache.exists(b"short")
    assert cache.keys() == [b"forever"]
    assert cache.set(b"short", b"2") is True  # an expired key is free for set
    cache.set(b"again", b"1", 5)
    clock.now += 5
    assert len(cache) == 3  # expired, not yet swept
    assert store.sweep() == 1
    assert len(cache) == 2


def test_update_gives_a_new_expiry_and_math_keeps_the_old_one(store, clock):
    cache = store.cache("default")
    cache.set(b"k", b"1", 10)
    cache.set(b"k", b"2", 100, update=True)
    cache.math(b"n", MathOp.INC, 1, 10)
    cache.math(b"n", MathOp.INC, 1, 1000)  # an existing counter keeps its expiry
    clock.now += 50
    assert cache.get(b"k") == b"2"
    assert cache.num(b"n") == 0


def test_a_negative_expiry_stores_an_item_that_has_already_expired(store):
    cache = store.cache("default")
    assert cache.set(b"k", b"1", -1) is True  # uWSGI answers True, and never shows it
    assert cache.get(b"k") is None


def test_a_full_cache_refuses_new_keys_updates_existing_ones_and_logs(store, caplog):
    cache = store.cache("few")
    with caplog.at_level(logging.WARNING, logger="uwsgisig"):
        assert [cache.set(b"k%d" % i, b"1") for i in range(4)] == [True, True, True, False]
    assert "cache 'few' is full (3 items)" in caplog.text
    assert cache.set(b"k0", b"2", update=True) is True
    assert cache.set(b"k9", b"2", update=True) is False
    assert cache.math(b"k9", MathOp.INC, 1) is False
    assert cache.delete(b"k0")
    assert cache.set(b"k9", b"1") is True


def test_a_full_cache_drops_expired_items_to_make_room(store, clock):
    cache = store.cache("few")
    cache.set(b"a", b"1", 5)
    cache.set(b"b", b"1")
    cache.set(b"c", b"1")
    assert cache.set(b"d", b"1") is False
    clock.now += 5
    assert cache.set(b"d", b"1") is True
    assert sorted(cache.keys()) == [b"b", b"c", b"d"]


def test_purge_lru_drops_the_least_recently_used_item(store, caplog):
    cache = store.cache("lru")
    for key in (b"a", b"b", b"c"):
        cache.set(key, b"1")
    assert cache.get(b"a") == b"1"  # a read is a use: b is now the oldest
    with caplog.at_level(logging.WARNING, logger="uwsgisig"):
        assert cache.set(b"d", b"1") is True
    assert sorted(cache.keys()) == [b"a", b"c", b"d"]
    assert "least recently used item of cache 'lru'" in caplog.text
    cache.set(b"c", b"2", update=True)  # a write is a use too
    cache.set(b"e", b"1")
    assert sorted(cache.keys()) == [b"c", b"d", b"e"]
    cache.delete(b"d")
    cache.clear()
    assert cache.keys() == []
    assert [cache.set(k, b"1") for k in (b"x", b"y", b"z")] == [True, True, True]


@pytest.mark.parametrize(
    ("key", "value", "stored"),
    [
        (b"k", b"x" * 100, True),
        (b"k", b"x" * 101, False),  # longer than blocksize
        (b"k", b"", False),  # uWSGI refuses an empty value
        (b"", b"x", False),  # and an empty key
        (b"K" * DIRECT_KEY, b"x", True),
        (b"K" * (DIRECT_KEY + 1), b"x", True),  # beyond LMDB's own key limit
        (b"K" * 600, b"x", True),  # the cache's keysize
        (b"K" * 601, b"x", False),
    ],
)
def test_keys_up_to_keysize_and_values_up_to_blocksize(store, key, value, stored):
    cache = store.cache("small")
    assert cache.set(key, value) is stored
    assert cache.get(key) == (value if stored else None)
    assert cache.keys() == ([key] if stored else [])


def test_long_keys_that_share_a_prefix_are_kept_apart(store):
    cache = store.cache("small")
    first, second = b"P" * 590 + b"1", b"P" * 590 + b"2"
    cache.set(first, b"one")
    cache.set(second, b"two")
    assert (cache.get(first), cache.get(second)) == (b"one", b"two")
    assert cache.delete(first)
    assert cache.get(second) == b"two"
    assert cache.keys() == [second]


def test_named_caches_are_kept_apart(store):
    store.cache("default").set(b"k", b"default")
    store.cache("few").set(b"k", b"few")
    assert store.cache("default").get(b"k") == b"default"
    assert store.cache("few").get(b"k") == b"few"
    store.cache("few").clear()
    assert store.cache("default").get(b"k") == b"default"
    assert store.cache("nosuch") is None


def test_math_follows_uwsgi(store):
    cache = store.cache("default")
    assert cache.math(b"n", MathOp.INC, 1)
    assert cache.get(b"n") == b"\x01" + b"\0" * 7
    for op, delta in ((MathOp.INC, 5), (MathOp.DEC, 2), (MathOp.MUL, 2), (MathOp.DIV, 2)):
        cache.math(b"n", op, delta)
    assert cache.num(b"n") == 4
    cache.math(b"n", MathOp.DIV, 0)
    assert cache.num(b"n") == 0  # uWSGI: x / 0 is 0
    cache.math(b"d", MathOp.DEC, 1)
    assert cache.num(b"d") == -1
    cache.set(b"s", b"1")
    cache.math(b"s", MathOp.INC, 1)
    assert cache.num(b"s") == 50  # b"1" is 0x31, zero-padded: as uWSGI 2.0.31 answers
    assert cache.num(b"missing") == 0
    mathy = store.cache("mathy")
    mathy.math(b"m", MathOp.INC, 1)
    assert mathy.num(b"m") == 11
    assert apply(MathOp.INC, 2**63 - 1, 1) == -(2**63)
    assert apply(MathOp.DIV, -7, 2) == -3


def test_a_writer_killed_inside_a_transaction_does_not_wedge_the_others(store):
    cache = store.cache("default")
    pid = os.fork()
    if pid == 0:
        try:
            env = store.env()  # the child's own environment
            txn = env.begin(write=True)
            txn.put(b"half", b"written", db=store.handles("default")[1])
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert cache.set(b"after", b"1") is True
    assert cache.get(b"half") is None
    store.sweep()  # frees the dead reader's slot, too


def test_the_store_is_a_private_directory_in_memory(store):
    mode = os.stat(store.path).st_mode
    assert stat.S_IMODE(mode) == 0o700
    if os.access("/dev/shm", os.W_OK):
        assert store.path.startswith("/dev/shm/")


# ---------------------------------------------------------------- shared by processes

SHARED = """
from uwsgisig.caching import Cache

cache = Cache("shared", timeout=0)
cache.set("from-master", "imported")   # the master, at import: the caches exist already

@Signal(1).register_handler(target="worker1")
def write(num):
    record("wrote", cache.set("from-worker1", "w1"))

@Signal(2).register_handler(target="mule1")
def read_in_mule(num):
    record("mule-read", cache["from-worker1"], cache["from-master"])
    cache.set("from-mule", "m1")

@Signal(3).register_handler(target="spooler")
def read_in_spooler(num):
    record("spooler-read", cache["from-mule"], cache["from-worker1"])
    cache.set("from-spooler", "s")

@Signal(4).register_handler(target="worker2")
def read_in_worker2(num):
    record("worker2-read", cache["from-spooler"], sorted(cache.keys) == sorted(
        ["from-master", "from-worker1", "from-mule", "from-spooler"]))
"""


def test_values_are_shared_by_the_master_workers_mules_and_the_spooler(start_app):
    app = start_app(SHARED, workers=2, mules=1, spooler=True, cache2=["name=shared,items=10"])
    app.handle.signal(1)
    assert app.wait_records("wrote", 1)[0][1] == "True"
    app.handle.signal(2)
    assert app.wait_records("mule-read", 1)[0][1:3] == ["w1", "imported"]
    app.handle.signal(3)
    assert app.wait_records("spooler-read", 1)[0][1:3] == ["m1", "w1"]
    app.handle.signal(4)
    assert app.wait_records("worker2-read", 1)[0][1:3] == ["s", "True"]


CONCURRENT = """
import uwsgi

def hammer():
    for i in range(200):
        assert uwsgi.cache_set(f"{who()}-{i}", b"x", 0, "many")
        uwsgi.cache_inc("counter", 1, 0, "many")
    record("done")

@Signal(1).register_handler(target="workers")
def in_workers(num):
    hammer()

@Signal(2).register_handler(target="mules")
def in_mules(num):
    hammer()

@Signal(3).register_handler(target="worker1")
def count(num):
    record("count", len(uwsgi.cache_keys("many")), uwsgi.cache_num("counter", "many"))
"""


def test_processes_writing_at_once_lose_nothing(start_app):
    compat.install()
    try:
        app = start_app(CONCURRENT, workers=3, mules=2, cache2=["name=many,items=2000"])
        app.handle.signal(1)
        app.handle.signal(2)
        app.wait_records("done", 5, timeout=60)
        app.handle.signal(3)
        assert app.wait_records("count", 1)[0][1:3] == [str(5 * 200 + 1), str(5 * 200)]
    finally:
        compat.uninstall()


KILLED = """
from uwsgisig.caching import Cache

cache = Cache(timeout=0)

@Signal(1).register_handler(target="worker1")
def churn(num):
    record("churning")
    i = 0
    while True:  # writes for ever: killed inside a transaction, most likely
        uwsgi_update = cache.incr("churn")
        i += 1

@Signal(2).register_handler(target="worker2")
def after(num):
    record("after", cache.set("after", "1"), cache["after"], cache.incr("churn"))
"""


def test_a_process_killed_mid_use_does_not_wedge_the_others(start_app):
    app = start_app(KILLED, workers=2, cache=10)
    app.handle.signal(1)
    churner = int(app.wait_records("churning", 1)[0][-1])
    os.kill(churner, signal.SIGKILL)
    app.handle.signal(2)
    assert app.wait_records("after", 1, timeout=30)[0][1:4] == ["True", "1", "True"]


ATTACHED = """
from uwsgisig.caching import Cache

cache = Cache("web", timeout=0)

def put(value):
    cache.set("from-attached", value)

@Signal(5).register_handler(target="worker1")
def read(num):
    record("forked-read", cache["from-attached"])
"""


def test_an_attached_worker_reaches_the_same_caches(start_app, tmp_path):
    app = start_app(ATTACHED, workers=1, attach=1, cache2=["name=web,items=10"])
    attached = Attached(tmp_path / "app0.py", app.handle.config.attach_socket)
    try:
        assert attached.id == 2
        attached.command("call put hello")
        app.handle.signal(5)
        assert app.wait_records("forked-read", 1)[0][1] == "hello"
    finally:
        attached.close()


# ---------------------------------------------------------------- uWSGI's spellings

COMPAT = """
import json

import uwsgi

RESULTS = os.path.join(os.path.dirname(OUT), "results.json")

def attempt(call):
    try:
        return repr(call())
    except Exception as exc:
        return type(exc).__name__

CALLS = {
    "get missing": lambda: uwsgi.cache_get("nope"),
    "set new": lambda: uwsgi.cache_set("k", b"v1"),
    "set existing": lambda: uwsgi.cache_set("k", b"v2"),
    "get k": lambda: uwsgi.cache_get("k"),
    "update existing": lambda: uwsgi.cache_update("k", b"v3"),
    "get k again": lambda: uwsgi.cache_get("k"),
    "update new": lambda: uwsgi.cache_update("k2", b"x"),
    "exists": lambda: uwsgi.cache_exists("k"),
    "exists missing": lambda: uwsgi.cache_exists("nope"),
    "del": lambda: uwsgi.cache_del("k"),
    "del missing": lambda: uwsgi.cache_del("k"),
    "str value": lambda: uwsgi.cache_set("s", "h\\u00e9llo"),
    "str value get": lambda: uwsgi.cache_get("s"),
    "bytes key": lambda: uwsgi.cache_set(b"bk", b"1"),
    "bytes key as str": lambda: uwsgi.cache_get("bk"),
    "int key": lambda: uwsgi.cache_set(1, b"1"),
    "int value": lambda: uwsgi.cache_set("iv", 1),
    "bytearray value": lambda: uwsgi.cache_set("ba", bytearray(b"x")),
    "None value": lambda: uwsgi.cache_set("nv", None),
    "empty value": lambda: uwsgi.cache_set("ev", b""),
    "empty key": lambda: uwsgi.cache_set("", b"x"),
    "bytes cache name": lambda: uwsgi.cache_get("k2", b"default"),
    "unknown cache get": lambda: uwsgi.cache_get("k2", "nosuch"),
    "unknown cache set": lambda: uwsgi.cache_set("k2", b"1", 0, "nosuch"),
    "unknown cache clear": lambda: uwsgi.cache_clear("nosuch"),
    "unknown cache keys": lambda: uwsgi.cache_keys("nosuch"),
    "empty cache name": lambda: uwsgi.cache_get("k2", ""),
    "named default": lambda: uwsgi.cache_get("k2", "default"),
    "named other": lambda: uwsgi.cache_set("k2", b"other", 0, "other"),
    "other get": lambda: uwsgi.cache_get("k2", "other"),
    "64k value": lambda: uwsgi.cache_set("big", b"x" * 65536),
    "64k+1 value": lambda: uwsgi.cache_set("big1", b"x" * 65537),
    "key 2048": lambda: uwsgi.cache_set("K" * 2048, b"1"),
    "key 2048 get": lambda: uwsgi.cache_get("K" * 2048),
    "key 2049": lambda: uwsgi.cache_set("K" * 2049, b"1"),
    "float expires": lambda: uwsgi.cache_set("fe", b"1", 1.5),
    "keyword expires": lambda: uwsgi.cache_set("kw", b"1", expires=1),
    "inc new": lambda: uwsgi.cache_inc("n"),
    "num": lambda: uwsgi.cache_num("n"),
    "get n": lambda: uwsgi.cache_get("n"),
    "inc 5 dec 2 mul div": lambda: (uwsgi.cache_inc("n", 5), uwsgi.cache_dec("n", 2),
                                    uwsgi.cache_mul("n"), uwsgi.cache_div("n")),
    "num after": lambda: uwsgi.cache_num("n"),
    "div 0": lambda: (uwsgi.cache_div("n", 0), uwsgi.cache_num("n")),
    "dec new": lambda: (uwsgi.cache_dec("nd"), uwsgi.cache_num("nd")),
    "num missing": lambda: uwsgi.cache_num("nonum"),
    "inc float": lambda: uwsgi.cache_inc("n", 1.5),
    "math_initial": lambda: (uwsgi.cache_inc("mi", 1, 0, "mathy"), uwsgi.cache_num("mi", "mathy")),
    "keys": lambda: sorted(uwsgi.cache_keys("other")),
    "clear": lambda: (uwsgi.cache_clear("other"), uwsgi.cache_keys("other")),
}

@Signal(1).register_handler(target="worker1")
def run(num):
    with open(RESULTS, "w") as file:
        json.dump({label: attempt(call) for label, call in CALLS.items()}, file)
    record("ran")
"""

# What uWSGI 2.0.31's module answers (measured: uwsgi --master --cache 100
# --cache2 name=other,items=10 --cache2 name=mathy,items=3,math_initial=10).
UWSGI_ANSWERS = {
    "get missing": "None",
    "set new": "True",
    "set existing": "None",
    "get k": "b'v1'",
    "update existing": "True",
    "get k again": "b'v3'",
    "update new": "True",
    "exists": "True",
    "exists missing": "None",
    "del": "True",
    "del missing": "None",
    "str value": "True",
    "str value get": "b'h\\xc3\\xa9llo'",
    "bytes key": "True",
    "bytes key as str": "b'1'",
    "int key": "TypeError",
    "int value": "TypeError",
    "bytearray value": "TypeError",
    "None value": "TypeError",
    "empty value": "None",
    "empty key": "None",
    "bytes cache name": "TypeError",
    "unknown cache get": "None",
    "unknown cache set": "None",
    "unknown cache clear": "None",
    "unknown cache keys": "CacheConfigError",  # a ValueError, as uWSGI's
    "empty cache name": "b'x'",
    "named default": "b'x'",
    "named other": "True",
    "other get": "b'other'",
    "64k value": "True",
    "64k+1 value": "None",
    "key 2048": "True",
    "key 2048 get": "b'1'",
    "key 2049": "None",
    "float expires": "TypeError",
    "keyword expires": "TypeError",
    "inc new": "True",
    "num": "1",
    "get n": "b'\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00'",
    "inc 5 dec 2 mul div": "(True, True, True, True)",
    "num after": "4",
    "div 0": "(True, 0)",
    "dec new": "(True, -1)",
    "num missing": "0",
    "inc float": "TypeError",
    "math_initial": "(True, 11)",
    "keys": "[b'k2']",
    "clear": "(True, [])",
}


def test_the_compat_module_answers_as_uwsgi_does(start_app, tmp_path):
    compat.install()
    try:
        app = start_app(
            COMPAT,
            workers=1,
            cache=100,
            cache2=["name=other,items=10", "name=mathy,items=3,math_initial=10"],
        )
        app.handle.signal(1)
        app.wait_records("ran", 1)
        results = json.loads((tmp_path / "results.json").read_text())
    finally:
        compat.uninstall()
    assert results == UWSGI_ANSWERS
    assert issubclass(CacheConfigError, ValueError)
    assert "cache_get" not in compat.NOT_IMPLEMENTED


def test_outside_a_runtime_the_cache_calls_say_so():
    with pytest.raises(NotInRuntimeError, match="caches exist only in a running runtime"):
        platform.cache_get("k")
    with pytest.raises(NotInRuntimeError):
        Cache("any").set("k", "v")


# ---------------------------------------------------------------- the high-level API

HIGH_LEVEL = """
import json
import os

import uwsgisig
from uwsgisig.caching import Cache
from uwsgisig.hooks import postfork

def scenario():
    cache = Cache("mycache", timeout=0)
    results = {}
    results["set"] = cache.set("k", "v")
    results["set again"] = cache.set("k", "w")
    results["get"] = cache.get("k")
    results["item"] = cache["k"]
    results["bytes"] = cache.get("k", preserve_bytes=True).decode()
    results["contains"] = "k" in cache
    results["missing"] = cache.get("nope", default="dflt")
    results["setter"] = cache.get("lazy", setter=lambda key: f"made-{key}")
    results["after setter"] = cache.get("lazy")
    results["int value"] = cache.set("i", 42) and cache.get("i")
    cache["j"] = "via-setitem"
    results["setitem"] = cache["j"]
    del cache["j"]
    results["after del"] = cache.get("j")
    results["incr"] = [cache.incr("c"), cache.incr("c", delta=4), cache.decr("c", delta=2),
                       cache.mul("c", value=3), cache.div("c", value=2)]
    results["as_int"] = cache.get("c", as_int=True)
    results["keys"] = sorted(cache.keys)
    cache.clear()
    results["cleared"] = cache.keys
    other = Cache("other")
    results["other"] = [other.set("k", "o"), other.get("k"), Cache("mycache").get("k")]
    try:
        Cache("nosuch").keys
    except ValueError:
        results["nosuch keys"] = "ValueError"
    return results

@postfork
def run():
    if uwsgisig.worker_id() == 1:
        with open(os.environ["CACHE_RESULTS"] + ".tmp", "w") as file:
            json.dump(scenario(), file)
        os.rename(os.environ["CACHE_RESULTS"] + ".tmp", os.environ["CACHE_RESULTS"])

def application(environ, start_response):
    start_response("200 OK", [])
    return [b""]
"""

CACHES = ["--cache2", "name=mycache,items=20", "--cache2", "name=other,items=5"]


def run_scenario(tmp_path: Path, server_name: str) -> dict:
    workdir = tmp_path / server_name
    workdir.mkdir()
    app = workdir / "cache_app.py"
    app.write_text(textwrap.dedent(HIGH_LEVEL))
    results = workdir / "results.json"
    env = {"CACHE_RESULTS": str(results), "PYTHONPATH": str(Path(__file__).parent.parent)}
    args = ["--workers", "1", *CACHES]
    if server_name == "uwsgi":
        server = start_uwsgi(app, workdir, [*args, "--http-socket", "127.0.0.1:0"], env)
    else:
        server = start_uwsgisig(app, workdir, args, env)
    try:
        wait_for(results.exists, 30, f"{results} from {server_name}:\n{server.log_text()}")
        return json.loads(results.read_text())
    finally:
        server.stop()


def test_the_high_level_cache_gives_the_same_results_under_a_real_uwsgi(tmp_path):
    ours = run_scenario(tmp_path, "uwsgisig")
    theirs = run_scenario(tmp_path, "uwsgi")
    assert ours == theirs
    assert ours["set"] is True
    assert ours["set again"] is False
    assert ours["incr"] == [True] * 5
    assert ours["as_int"] == 4
    assert ours["nosuch keys"] == "ValueError"


# ---------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cache": -1}, "invalid --cache -1: the number of items of the default cache"),
        ({"cache": "10"}, "invalid --cache '10'"),
        ({"cache2": ["name=a"]}, "invalid --cache2 'name=a': items= is missing"),
        ({"cache2": ["items=3"]}, "invalid --cache2 'items=3': name= is missing"),
        ({"cache2": ["name=a,items=0"]}, "invalid items 0 for cache 'a'"),
        ({"cache2": ["name=a,items=x"]}, "items='x' is not a whole number"),
        ({"cache2": ["name=a,items=3,keysize=65535"]}, "an int from 1 to 65534"),
        ({"cache2": ["name=a,items=3,blocksize=0"]}, "invalid blocksize 0 for cache 'a'"),
        ({"cache2": ["name=a,items=3,store=/tmp/s"]}, "'store' is not a key uwsgisig takes"),
        ({"cache2": ["name=a/b,items=3"]}, "invalid cache name 'a/b'"),
        ({"cache2": ["name=a,items=3", "name=a,items=4"]}, "cache 'a' is defined twice"),
        ({"cache": 5, "cache2": ["name=default,items=4"]}, "cache 'default' is defined twice"),
        ({"cache2": "name=a,items=3"}, "give a list of --cache2 definitions"),
    ],
)  # fmt: skip
def test_bad_cache_options_are_refused_naming_the_value(options, message):
    with pytest.raises(CacheConfigError, match=message.replace("(", r"\(")):
        Runtime("app.py", **options)


def test_a_cache2_definition_reads_as_uwsgi_writes_it():
    spec = parse_cache2("name=sessions,items=100,blocksize=4096,keysize=64,lru=1,lazy=1")
    assert spec == CacheSpec("sessions", 100, blocksize=4096, keysize=64, purge_lru=True)
    assert parse_cache2("name=n,max_items=5,math_initial=-3").math_initial == -3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cache", "-2"], "invalid --cache -2"),
        (["--cache", "many"], "argument --cache: invalid int value: 'many'"),
        (["--cache2", "name=x,items=3,nodes=1.2.3.4"], "'nodes' is not a key uwsgisig takes"),
    ],
)
def test_bad_cache_options_on_the_command_line_exit_2(tmp_path, args, message):
    from tests.test_bad_input import uwsgisig_run

    result = uwsgisig_run(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_ini_cache_keys_become_options(tmp_path):
    ini = tmp_path / "app.ini"
    ini.write_text("[uwsgi]\ncache = 100\ncache2 = name=a,items=5\ncache2 = name=b,items=6\n")
    assert read_ini(str(ini)).argv == [
        "--cache", "100", "--cache2", "name=a,items=5", "--cache2", "name=b,items=6"
    ]  # fmt: skip


def test_the_cache_directory_is_removed_when_the_runtime_stops(start_app):
    app = start_app(
        """
        import uwsgisig
        from uwsgisig.runtime.model.process import CURRENT

        @Signal(1).register_handler(target="worker1")
        def where(num):
            record("path", CURRENT.caches.path)
        """,
        cache=3,
    )
    app.handle.signal(1)
    path = app.wait_records("path", 1)[0][1]
    assert os.path.isdir(path)
    app.handle.stop()
    assert not os.path.exists(path)


def test_the_stats_list_each_cache_and_its_items(start_app, tmp_path):
    from tests.test_stats import read_stats

    app = start_app(
        """
        from uwsgisig.caching import Cache

        @Signal(1).register_handler(target="worker1")
        def fill(num):
            record("filled", Cache("s", timeout=0).set("a", "1"), Cache("s").set("b", "2"))
        """,
        cache2=["name=s,items=7,blocksize=512"],
        stats=tmp_path / "stats.sock",
    )
    app.handle.signal(1)
    app.wait_records("filled", 1)
    assert read_stats(tmp_path / "stats.sock")["caches"] == [
        {"name": "s", "keysize": 2048, "max_items": 7, "blocksize": 512, "items": 2,
         "purge_lru": False}
    ]  # fmt: skip
