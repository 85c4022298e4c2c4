"""Benchmark cache get/set: uwsgisig's cache against a dict, raw LMDB and uWSGI's own cache.

Run by hand from the repository root::

    python bench/bench_cache.py            # N=200,000 operations per loop
    python bench/bench_cache.py --quick    # N=20,000: a few seconds plus the servers' starts

Every loop works on 1,000 keys of 16 bytes and values of 100 bytes (stored
first), reading (``get``) or writing (``set``: uWSGI's ``cache_update``,
which always writes; ``cache_set`` would do nothing on a key that exists) key
``i % 1000`` N times. The rows:

* ``dict``: a plain dict in this process, the ceiling;
* ``lmdb``: the `lmdb` package with uwsgisig's settings, one transaction per
  operation, in this process (N / 2 ops each in 2 forked processes for the
  2-process column);
* ``uwsgisig engine``: `uwsgisig.runtime.ipc.cache.Cache` called directly;
* ``uwsgisig worker``: a worker of a runtime (``Runtime(..., cache2=...)``)
  calls ``uwsgi.cache_get`` / ``uwsgi.cache_update`` of the compat module,
  the platform's calls, as an app written for uWSGI does;
* ``uWSGI worker``: the same app code in a worker of a real
  ``uwsgi --master --cache2 name=bench,...`` (2.0.31, the ``test`` extra).

The "1 process" columns run one loop; "2 processes" run one loop in each of
two processes at once (they start together behind a file barrier) and give
the sum of their rates. Each figure is the best of the rounds (3, 1 with
``--quick``). Every wait has a timeout; everything started is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from common import FORK, table

from uwsgisig import Runtime, compat
from uwsgisig.runtime.ipc.cache import LMDB_OPTIONS, CacheStore, private_directory
from uwsgisig.runtime.model.caches import parse_cache2

KEYS = [f"key-{i:012d}".encode() for i in range(1000)]
VALUE = b"v" * 100
CACHE = "name=bench,items=2000,blocksize=4096"
START_TIMEOUT = 30.0  # seconds, for a server to run its loops
now = time.perf_counter

# The app both servers run: worker N times its loops and writes the rates.
APP = """
import json, os, time
import uwsgi
import uwsgisig
from uwsgisig.hooks import postfork

N = int(os.environ["BENCH_N"])
OUT = os.environ["BENCH_OUT"]
WORKERS = int(os.environ["BENCH_WORKERS"])
KEYS = [f"key-{i:012d}".encode() for i in range(1000)]
VALUE = b"v" * 100

def barrier(name):
    open(os.path.join(OUT, f"{name}-{uwsgisig.worker_id()}"), "w").close()
    deadline = time.monotonic() + 20
    while len([f for f in os.listdir(OUT) if f.startswith(name + "-")]) < WORKERS:
        if time.monotonic() > deadline:
            raise TimeoutError(name)
        time.sleep(0.0005)

def loops():
    for key in KEYS:
        uwsgi.cache_update(key, VALUE, 0, "bench")
    barrier("get")
    start = time.perf_counter()
    for i in range(N):
        uwsgi.cache_get(KEYS[i % 1000], "bench")
    get = N / (time.perf_counter() - start)
    barrier("set")
    start = time.perf_counter()
    for i in range(N):
        uwsgi.cache_update(KEYS[i % 1000], VALUE, 0, "bench")
    put = N / (time.perf_counter() - start)
    with open(os.path.join(OUT, f"result-{uwsgisig.worker_id()}.json"), "w") as file:
        json.dump({"get": get, "set": put}, file)

@postfork
def run():
    if uwsgisig.worker_id():
        loops()

def application(environ, start_response):
    start_response("200 OK", [])
    return [b""]
"""


def loop_rates(get: Callable[[bytes], object], put: Callable[[bytes, bytes], object], n: int):
    """(gets/s, sets/s) of N operations each, on the 1,000 keys."""
    for key in KEYS:
        put(key, VALUE)
    start = now()
    for i in range(n):
        get(KEYS[i % 1000])
    gets = n / (now() - start)
    start = now()
    for i in range(n):
        put(KEYS[i % 1000], VALUE)
    return gets, n / (now() - start)


def dict_rates(n: int) -> tuple[float, float]:
    data: dict[bytes, bytes] = {}
    return loop_rates(data.get, data.__setitem__, n)


def open_lmdb(path: str):
    import lmdb

    env = lmdb.open(
        path,
        map_size=64 << 20,
        max_dbs=2,
        **LMDB_OPTIONS,
    )
    return env, env.open_db(b"bench")


def lmdb_rates(path: str, n: int) -> tuple[float, float]:
    env, db = open_lmdb(path)

    def get(key: bytes) -> object:
        with env.begin(db=db) as txn:
            return txn.get(key)

    def put(key: bytes, value: bytes) -> None:
        with env.begin(write=True, db=db) as txn:
            txn.put(key, value)

    try:
        return loop_rates(get, put, n)
    finally:
        env.close()


def lmdb_two_processes(n: int) -> tuple[float, float]:
    """Two forked processes, each its own environment on one directory, N/2 ops each."""
    path = private_directory()
    try:
        open_lmdb(path)[0].close()
        results = FORK.Queue()
        children = [FORK.Process(target=_lmdb_child, args=(path, n // 2, results)) for _ in "ab"]
        for child in children:
            child.start()
        rates = [results.get(timeout=START_TIMEOUT) for _ in children]
        for child in children:
            child.join(5)
            if child.is_alive():
                child.kill()
                child.join(5)
        return sum(r[0] for r in rates), sum(r[1] for r in rates)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _lmdb_child(path: str, n: int, results) -> None:
    results.put(lmdb_rates(path, n))


def engine_rates(n: int) -> tuple[float, float]:
    store = CacheStore.create((parse_cache2(CACHE),))
    try:
        cache = store.cache("bench")
        assert cache is not None
        return loop_rates(cache.get, lambda k, v: cache.set(k, v, 0, update=True), n)
    finally:
        store.remove()


def collect(out: Path, workers: int, describe: Callable[[], str]) -> tuple[float, float]:
    deadline = time.monotonic() + START_TIMEOUT
    while len(list(out.glob("result-*.json"))) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no results in {START_TIMEOUT:g} s:\n{describe()}")
        time.sleep(0.02)
    rates = [json.loads(path.read_text()) for path in out.glob("result-*.json")]
    return sum(r["get"] for r in rates), sum(r["set"] for r in rates)


def uwsgisig_rates(directory: Path, workers: int, n: int) -> tuple[float, float]:
    out = fresh(directory / f"uwsgisig-{workers}")
    app = out.parent / "bench_app.py"
    os.environ.update(BENCH_N=str(n), BENCH_OUT=str(out), BENCH_WORKERS=str(workers))
    compat.install()
    try:
        log = out.parent / "uwsgisig.log"
        with Runtime(str(app), workers=workers, cache2=[CACHE], log_file=log).start():
            return collect(out, workers, lambda: log.read_text())
    finally:
        compat.uninstall()


def uwsgi_rates(directory: Path, workers: int, n: int) -> tuple[float, float] | None:
    binary = shutil.which("uwsgi") or str(Path(sys.executable).parent / "uwsgi")
    if not os.path.exists(binary):
        return None
    out = fresh(directory / f"uwsgi-{workers}")
    log = out.parent / f"uwsgi-{workers}.log"
    command = [
        binary, "--master", "--workers", str(workers), "--http-socket", "127.0.0.1:0",
        "--wsgi-file", str(out.parent / "bench_app.py"), "--cache2", CACHE,
        "--logto", str(log), "--home", sys.prefix,
    ]  # fmt: skip
    env = {**os.environ, "BENCH_N": str(n), "BENCH_OUT": str(out), "BENCH_WORKERS": str(workers)}
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        return collect(out, workers, lambda: log.read_text() if log.exists() else "")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def best(rounds: list[tuple[float, float] | None]) -> tuple[float, float] | None:
    known = [r for r in rounds if r is not None]
    if not known:
        return None
    return max(r[0] for r in known), max(r[1] for r in known)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=20,000 and 1 round")
    args = parser.parse_args()
    n, rounds = (20_000, 1) if args.quick else (200_000, 3)
    with tempfile.TemporaryDirectory(prefix="uwsgisig-bench-") as name:
        directory = Path(name)
        (directory / "bench_app.py").write_text(textwrap.dedent(APP))
        lmdb_dir = private_directory()
        try:
            rows = {
                "dict (this process)": ([dict_rates(n) for _ in range(rounds)], None),
                "lmdb, same settings": (
                    [lmdb_rates(lmdb_dir, n) for _ in range(rounds)],
                    [lmdb_two_processes(n) for _ in range(rounds)],
                ),
                "uwsgisig engine (this process)": ([engine_rates(n) for _ in range(rounds)], None),
                "uwsgisig worker (uwsgi.cache_*)": (
                    [uwsgisig_rates(directory, 1, n) for _ in range(rounds)],
                    [uwsgisig_rates(directory, 2, n) for _ in range(rounds)],
                ),
                "uWSGI 2.0.31 worker (uwsgi.cache_*)": (
                    [uwsgi_rates(directory, 1, n) for _ in range(rounds)],
                    [uwsgi_rates(directory, 2, n) for _ in range(rounds)],
                ),
            }
        finally:
            shutil.rmtree(lmdb_dir, ignore_errors=True)
    print(f"N={n:,} operations per loop, 1,000 keys, 100-byte values, best of {rounds}")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}\n")
    cells = []
    for label, (one, two) in rows.items():
        single, double = best(one), best(two) if two is not None else None
        cells.append([label, *rate_cells(single), *rate_cells(double)])
    headers = ["row", "get/s (1 proc)", "set/s (1 proc)", "get/s (2 procs)", "set/s (2 procs)"]
    print(table(headers, cells))
    return 0


def rate_cells(rates: tuple[float, float] | None) -> list[str]:
    if rates is None:
        return ["-", "-"]
    return [f"{rates[0]:,.0f}", f"{rates[1]:,.0f}"]


if __name__ == "__main__":
    sys.exit(main())
