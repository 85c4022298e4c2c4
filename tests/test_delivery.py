"""Delivery that survives faults: kills inside handlers, reloads under traffic,
stops, real-time signals, forking handlers, signals nobody takes, and a
sustained load with slow handlers. Every wait is on an event, and bounded.
"""

from __future__ import annotations

import mmap
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import (
    PREAMBLE,
    assert_all_gone,
    children_of,
    pid_alive,
    process_state,
    wait_for,
)

pytestmark = pytest.mark.timeout(90)

DONE = 200

HOLD = """
import time

def hold(name="go"):
    path = os.path.join(os.path.dirname(OUT), name)
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)
"""


def test_signals_a_worker_had_read_but_not_started_run_after_it_is_killed(start_app, tmp_path):
    app = start_app(
        HOLD
        + textwrap.dedent(
            """
        @Signal(3).register_handler(target="worker1")
        def busy(num):
            record("busy", num)
            hold()  # meanwhile signal 1 and five 2s queue up behind this one

        @Signal(1).register_handler(target="worker1")
        def park(num):
            record("parked", num)
            block()

        @Signal(2).register_handler(target="worker1")
        def later(num):
            record("later", num)
        """
        )
    )
    old = app.pids_by_who()["worker1"]
    app.handle.signal(3)
    app.wait_records("busy", 1)
    app.handle.signal(1)
    for _ in range(5):
        app.handle.signal(2)
    (tmp_path / "go").touch()  # the worker reads all six frames at once, then parks in 1
    app.wait_records("parked", 1)
    os.kill(old, signal.SIGKILL)
    later = app.wait_records("later", 5)
    assert {words[-1] for words in later} != {str(old)}
    assert all(words[-1] != str(old) for words in later)
    assert len(app.records("parked")) == 1  # the one it was running is lost, as in uWSGI


def test_a_worker_that_exits_every_third_call_loses_no_queued_signal(start_app):
    app = start_app(
        """
        calls = 0

        @Signal(4).register_handler(target="worker1")
        def fragile(num):
            global calls
            calls += 1
            record("ran", calls)
            if calls % 3 == 0:
                os._exit(3)
        """
    )
    for _ in range(15):
        app.handle.signal(4)
    app.wait_records("ran", 15, timeout=60)
    ran = app.records("ran")
    assert len(ran) == 15
    assert len({words[-1] for words in ran}) == 5  # five workers in turn, three signals each
    assert "exited with code 3: respawning" in app.log.read_text()


def test_shared_queue_signals_survive_workers_that_keep_dying(start_app):
    app = start_app(
        """
        calls = 0

        @Signal(4).register_handler(target="worker")
        def fragile(num):
            global calls
            calls += 1
            record("ran", num)
            if calls % 40 == 0:
                os._exit(3)
        """,
        workers=2,
    )
    for _ in range(200):
        app.handle.signal(4)
    app.wait_records("ran", 200, timeout=60)
    assert len(app.records("ran")) == 200


def test_reloads_during_traffic_lose_no_signal_for_any_worker(start_app, tmp_path):
    # Each round: both workers are busy in a handler while the RELOAD frame and
    # 100 more signals queue behind it; once free, each worker reads them all at
    # once, stops at RELOAD, and its replacement must run the 100.
    app = start_app(
        HOLD
        + textwrap.dedent(
            """
        @Signal(5).register_handler(target="workers")
        def everyone(num):
            record("ran", num)

        @Signal(6).register_handler(target="workers")
        def busy(num):
            record("busy", num)
            hold()
        """
        ),
        workers=2,
    )
    go = tmp_path / "go"
    rounds = 5
    for round_ in range(1, rounds + 1):
        before = app.pids_by_who()
        app.handle.signal(6)
        app.wait_records("busy", 2 * round_)
        app.handle.reload()
        wait_for(lambda r=round_: app.log.read_text().count("reloading") == r, 10, "RELOAD")
        for _ in range(100):
            app.handle.signal(5)
        go.touch()
        wait_for(
            lambda before=before: all(
                app.pids_by_who()[name] not in (0, before[name]) for name in ("worker1", "worker2")
            ),
            20,
            "both workers reloaded",
        )
        go.unlink()
    app.wait_records("ran", 200 * rounds, timeout=60)
    assert len(app.records("ran")) == 200 * rounds
    assert app.log.read_text().count("reloaded") == 2 * rounds


@pytest.mark.parametrize(
    "signum",
    [signal.SIGKILL, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGRTMAX],
    ids=lambda signum: f"signal {int(signum)}",
)
def test_a_child_killed_by_any_signal_is_respawned_with_its_queued_signals(start_app, signum):
    app = start_app(
        """
        @Signal(1).register_handler(target="mule1")
        def park(num):
            record("parked", num)
            block()

        @Signal(7).register_handler(target="mule1")
        def queued(num):
            record("ran", num)
        """,
        mules=1,
    )
    old = app.pids_by_who()["mule1"]
    app.handle.signal(1)
    app.wait_records("parked", 1)
    for _ in range(3):
        app.handle.signal(7)  # wait behind the parked handler
    os.kill(old, signum)
    ran = app.wait_records("ran", 3)
    assert all(words[-1] != str(old) for words in ran)
    # (Under pytest-timeout a child inherits its SIGALRM handler and exits with code 1.)
    assert f"mule 1 (pid {old}) exited with" in app.log.read_text()


def test_a_child_killed_by_a_real_time_signal_is_respawned(start_app):
    app = start_app(
        """
        @Signal(7).register_handler(target="worker1")
        def handler(num):
            record("ran", num)
        """
    )
    old = app.pids_by_who()["worker1"]
    rt = signal.SIGRTMIN + 1
    os.kill(old, rt)
    wait_for(lambda: app.pids_by_who()["worker1"] not in (0, old), 10, "worker 1 respawned")
    app.handle.signal(7)
    assert app.wait_records("ran", 1)[0][-1] != str(old)
    assert f"worker 1 (pid {old}) exited with signal {int(rt)}: respawning" in app.log.read_text()


def test_a_forked_copy_returning_into_the_loop_exits_and_a_forked_child_dies_with_the_tree(
    start_app,
):
    app = start_app(
        """
        import time

        @Signal(8).register_handler(target="worker1")
        def fork_and_return(num):
            if os.fork() == 0:
                record("copy", uwsgisig.worker_id())  # it returns into the loop next

        @Signal(9).register_handler(target="worker1")
        def fork_a_sleeper(num):
            if os.fork() == 0:
                record("sleeper", uwsgisig.worker_id())
                time.sleep(600)
                os._exit(0)

        @Signal(10).register_handler(target="worker1")
        def still_serving(num):
            record("served", num)
        """
    )
    worker = app.pids_by_who()["worker1"]
    app.handle.signal(8)
    copy = app.wait_records("copy", 1)[0]
    assert copy[1] == "0"  # in the copy, the process is no worker
    wait_for(lambda: not pid_alive(int(copy[-1])), 10, "the forked copy to exit")
    assert "returned into the signal loop" in app.log.read_text()
    app.handle.signal(9)
    sleeper = int(app.wait_records("sleeper", 1)[0][-1])
    for _ in range(20):
        app.handle.signal(10)
    served = app.wait_records("served", 20)
    assert {int(words[-1]) for words in served} == {worker}  # only the real worker serves
    app.handle.stop()
    assert_all_gone({sleeper, worker})


def test_graceful_stop_lets_handlers_finish_and_names_the_one_it_interrupts(start_app, tmp_path):
    app = start_app(
        HOLD
        + textwrap.dedent(
            """
        @Signal(1).register_handler(target="worker1")
        def stuck(num):
            record("stuck", num)
            block()

        @Signal(2).register_handler(target="worker2")
        def finishing(num):
            record("working", num)
            hold()
            record("finished", num)
        """
        ),
        workers=2,
        mules=1,
        graceful_stop=True,
        stop_timeout=3.0,
    )
    pids = set(app.pids_by_who().values())
    app.handle.signal(1)
    app.handle.signal(2)
    app.wait_records("stuck", 1)
    app.wait_records("working", 1)
    os.kill(app.handle.pid, signal.SIGTERM)
    wait_for(lambda: "SIGTERM: stopping gracefully" in app.log.read_text(), 10, "the stop")
    (tmp_path / "go").touch()
    app.wait_records("finished", 1)
    assert app.handle.stop(timeout=20) == 0
    assert_all_gone(pids)
    log = app.log.read_text()
    worker1 = [pid for pid in pids if f"worker 1 (pid {pid}) was still" in log]
    assert worker1, log
    assert "in handler app0:stuck of signal 1 after 3 s: killing it" in log
    assert "worker 2 (pid" not in log.split("SIGTERM")[1].split("killing")[0]


def test_signals_nobody_takes_are_held_up_to_a_bound_and_never_block_senders(start_app):
    app = start_app(
        """
        @Signal(1).register_handler(target="worker1")
        def ping(num):
            record("pong", num)
        """,
        queue_size=100,
        send_timeout=2.0,
    )
    for _ in range(3000):
        app.handle.signal(77)  # no handler, no waiter: far past the queue size
    app.handle.signal(1)
    # Nothing is wedged. (A reply by an unregistered signal could be held
    # before the wait for it, and push one more 77 out of the bound.)
    app.wait_records("pong", 1)
    log = app.log.read_text()
    assert "dropped (1024 held at most; 1 dropped so far)" in log
    assert "1000 dropped so far" in log
    for _ in range(1024):  # the newest 1024 are still held for a wait()
        assert app.handle.wait(77, timeout=10) == 77
    with pytest.raises(TimeoutError):
        app.handle.wait(77, timeout=0.2)


SUSTAINED = """
import mmap
import multiprocessing
import time

with open(os.path.join(os.path.dirname(OUT), "counts.bin"), "r+b") as file:
    COUNTS = memoryview(mmap.mmap(file.fileno(), 0)).cast("q")
LOCK = multiprocessing.get_context("fork").Lock()
N = {n}


def counted(slot):
    def handler(num):
        with LOCK:
            COUNTS[slot] += 1
            total = COUNTS[slot]
        if total % {slow_every} == 0:
            time.sleep(0.05)
    return handler


Signal(10).register_handler(target="worker")(counted(0))
Signal(11).register_handler(target="mule1")(counted(1))


@Signal(1).register_handler(target="worker1")
def flood_mule(num):
    for _ in range(N):
        Signal(11).send()


@Signal(2).register_handler(target="mule2")
def flood_workers(num):
    for _ in range(N):
        Signal(10).send()
"""


def test_sustained_two_sender_load_with_slow_handlers_finishes(start_app, tmp_path):
    n = 60_000
    counts_path = tmp_path / "counts.bin"
    counts_path.write_bytes(bytes(16))
    app = start_app(
        SUSTAINED.format(n=n, slow_every=6_000),
        workers=2,
        mules=2,
        queue_size=1000,  # small, so credit is held back and paid again many times
    )
    with counts_path.open("r+b") as file:
        counts = memoryview(mmap.mmap(file.fileno(), 0)).cast("q")
        app.handle.signal(1)
        app.handle.signal(2)
        wait_for(lambda: counts[0] == n and counts[1] == n, 80, f"{n} runs of each signal")
        assert (counts[0], counts[1]) == (n, n)
        counts.release()


def test_sigterm_to_the_process_group_stops_at_once_without_respawning(tmp_path):
    out = tmp_path / "out.txt"
    fifo = tmp_path / "release.fifo"
    os.mkfifo(fifo)
    app = tmp_path / "app.py"
    app.write_text(
        PREAMBLE.format(out=str(out), fifo=str(fifo))
        + textwrap.dedent(
            """
            @uwsgisig.postfork
            def started():
                record("started")
            """
        )
    )
    log = tmp_path / "log.txt"
    command = [sys.executable, "-m", "uwsgisig", "run", str(app), "--workers", "3", "--mules", "1"]
    proc = subprocess.Popen(
        [*command, "--stop-timeout", "30", "--log-file", str(log)],
        start_new_session=True,  # its own group, as under systemd or `timeout`
    )
    try:
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 4, 20, "start")
        pids = {int(line.split()[-1]) for line in out.read_text().splitlines()}
        children = children_of(proc.pid)
        os.killpg(proc.pid, signal.SIGTERM)
        # A stop that respawned children or waited for them would take the 30 s stop timeout.
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert_all_gone(pids | children)
    text = log.read_text()
    assert "respawning" not in text
    assert "killing it" not in text


def test_signals_raised_just_before_a_child_dies_are_all_delivered(start_app):
    # send() returned: each signal is in the master's queue (the child's ring),
    # even though the raiser exits the next instant without a word to anyone.
    app = start_app(
        """
        @Signal(20).register_handler(target="worker1")
        def raise_and_die(num):
            for _ in range(5000):
                Signal(21).send()
            os._exit(0)

        @Signal(21).register_handler(target="mule1")
        def counted(num):
            record("got", num)
        """,
        mules=1,
    )
    app.handle.signal(20)
    got = app.wait_records("got", 5000, timeout=60)
    assert len(got) == 5000
    wait_for(lambda: "worker 1 (pid" in app.log.read_text(), 10, "worker 1 respawned")


PING = """
@Signal(30).register_handler(target="worker")
def ping(num):
    Signal(201).send()  # no handler: it answers the handle's wait()
"""


def test_thousands_of_lone_signals_each_wake_the_sleeping_master(start_app):
    # Each ping finds the master asleep, about to sleep, or at the end of its
    # look at the rings: the bell rule of ipc/rings.py must wake it every time.
    app = start_app(PING, workers=2)
    for _ in range(3000):
        app.handle.signal(30)
        assert app.handle.wait(201, timeout=10) == 201


def test_after_a_burst_the_master_sleeps_and_a_lone_signal_rings_it_awake(start_app):
    # After work the master watches the rings for a moment before it sleeps.
    # It must then really sleep (a master that kept spinning would stay "R"),
    # and a signal sent while it sleeps must ring it awake, every time.
    app = start_app(PING, workers=2)
    master = app.handle.pid
    for _ in range(200):
        app.handle.signal(30)
    for _ in range(200):
        assert app.handle.wait(201, timeout=10) == 201
    for _ in range(300):
        wait_for(lambda: process_state(master) == "S", 10, "the master to sleep in poll")
        app.handle.signal(30)
        assert app.handle.wait(201, timeout=10) == 201


FLOOD = """
import time
from uwsgisig.scheduling import register_timer_ms

FLOODING = True


@Signal(10).register_handler(target="worker")
def quick(num):
    pass


@Signal(1).register_handler(target="mule1")
def flood(num):
    # Never stops: the master's rings are never quiet while this runs.
    record("flooding", num)
    while True:
        Signal(10).send()


@register_timer_ms(20, target="worker1")
def tick(num):
    record("tick", num)
"""


def test_a_master_flooded_by_a_sender_still_fires_timers_and_stops(start_app):
    # After work the master serves its rings alone for a while; a sender that
    # never pauses must not keep it from its timers and its POSIX signals
    # (tests/runtime/test_master_spin.py holds the bound on a fake clock).
    app = start_app(FLOOD, workers=2, mules=1)
    app.handle.signal(1)
    app.wait_records("flooding", 1)
    ticks = len(app.records("tick"))
    app.wait_records("tick", ticks + 5, timeout=20)
    assert app.handle.stop() == 0  # a clean stop, not one ended by SIGKILL
