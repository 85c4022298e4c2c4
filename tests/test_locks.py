"""User locks shared by every process: no lost update, a dead holder frees its lock,
threads of one process exclude each other, and uWSGI's spellings work."""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest

from uwsgisig import LockNumberError, NotInRuntimeError, compat
from uwsgisig.locking import Lock, lock
from uwsgisig.runtime.ipc.locks import SharedLocks

pytestmark = pytest.mark.timeout(90)

COUNTER = """
import time
from uwsgisig.locking import Lock

COUNT = os.path.join(os.path.dirname(OUT), "count")

def bump():
    # read, think, write: without the lock, processes overwrite each other
    with open(COUNT) as file:
        value = int(file.read() or 0)
    time.sleep(0.0001)
    with open(COUNT, "w") as file:
        file.write(str(value + 1))

@Signal(1).register_handler(target="workers")
def many(num):
    for _ in range(300):
        with Lock(1):
            bump()
    record("done", num)

@Signal(2).register_handler(target="mules")
def many_in_mules(num):
    for _ in range(300):
        with Lock(1):
            bump()
    record("done", num)
"""


def test_processes_incrementing_under_a_lock_never_lose_an_update(start_app, tmp_path):
    (tmp_path / "count").write_text("0")
    app = start_app(COUNTER, workers=3, mules=2, locks=1)
    app.handle.signal(1)
    app.handle.signal(2)
    app.wait_records("done", 5, timeout=60)
    assert (tmp_path / "count").read_text() == str(5 * 300)


def test_a_holder_that_dies_does_not_wedge_the_others(start_app):
    app = start_app(
        """
        from uwsgisig.locking import lock

        @Signal(3).register_handler(target="worker1")
        def hold_and_park(num):
            lock.acquire()
            record("holding", num)
            block()

        @Signal(4).register_handler(target="worker2")
        def probe(num):
            record("locked", lock.is_set)

        @Signal(5).register_handler(target="worker2")
        def take(num):
            with lock:
                record("took", num)
        """,
        workers=2,
    )
    app.handle.signal(3)
    holder = int(app.wait_records("holding", 1)[0][-1])
    app.handle.signal(4)
    assert app.wait_records("locked", 1)[0][1] == "True"  # another process sees it held
    os.kill(holder, signal.SIGKILL)
    app.handle.signal(5)
    assert len(app.wait_records("took", 1)) == 1  # the kernel released the dead one's lock


def test_threads_of_one_process_exclude_each_other(tmp_path):
    locks = SharedLocks(2)
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(200):
            locks.acquire(1)
            with guard:
                inside += 1
                most = max(most, inside)
            with guard:
                inside -= 1
            locks.release(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most == 1
    assert not locks.is_locked(1)


def test_uwsgidecorators_lock_runs_under_the_compat_module(start_app):
    compat.install()  # before the master imports the app, as --uwsgi-compat does
    try:
        app = start_app(
            """
            import uwsgi
            from uwsgidecorators import lock as locked

            @locked
            def critical():
                record("inside", uwsgi.is_locked(0))

            @Signal(6).register_handler(target="worker1")
            def run(num):
                critical()
                record("after", uwsgi.is_locked(0))
            """,
            workers=1,
        )
        app.handle.signal(6)
        assert app.wait_records("after", 1)[0][1] == "False"
        assert app.records("inside")[0][1] == "True"
    finally:
        compat.uninstall()
        sys.modules.pop("uwsgidecorators", None)


def test_a_lock_number_the_runtime_has_not_is_refused(start_app):
    app = start_app(
        """
        from uwsgisig.locking import Lock

        @Signal(7).register_handler(target="worker1")
        def bad(num):
            try:
                Lock(2).acquire()
            except ValueError as exc:
                record("refused", type(exc).__name__, str(exc).replace(" ", "_"))
        """,
        locks=1,
    )
    app.handle.signal(7)
    words = app.wait_records("refused", 1)[0]
    assert words[1] == "LockNumberError"
    assert words[2].replace("_", " ") == (
        "invalid lock number 2: this runtime has locks 0 to 1 (give more with --locks N)"
    )


def test_locks_outside_a_runtime_say_so():
    with pytest.raises(NotInRuntimeError, match="locks exist only in a worker"):
        lock.acquire()
    with pytest.raises(LockNumberError):
        SharedLocks(1).acquire(1)
    assert repr(Lock(3)) == "Lock(3)"
