"""First available, with processes made busy: N slow signals on N idle processes
run side by side, as on uWSGI 2.0.31; a busy process takes nothing.

Each slow handler records that it started, then holds until the test creates
its ``go`` file, so "side by side" is an event: all N have started while none
may finish. Served one after another, only one would ever start.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(60)

SLOW = """
import time

GO = os.path.join(os.path.dirname(OUT), "go")


def hold():
    deadline = time.monotonic() + 30
    while not os.path.exists(GO) and time.monotonic() < deadline:
        time.sleep(0.005)


pool = Farm("pool", mules=[1, 2, 3])


@Signal(10).register_handler(target={target})
def slow(num):
    record("started", num)
    hold()
    record("finished", num)


@Signal(1).register_handler(target={raiser!r})
def raise_burst(num):
    for _ in range({count}):
        Signal(10).send()
"""

CASES = {
    "worker": ("'worker'", {"workers": 4, "mules": 3}, 4, "worker"),
    "worker0": ("'worker0'", {"workers": 3, "mules": 3}, 3, "worker"),
    "mule": ("'mule'", {"workers": 1, "mules": 3}, 3, "mule"),
    "farm_pool": ("'farm_pool'", {"workers": 1}, 3, "mule"),
    "farm1": ("'farm1'", {"workers": 1}, 3, "mule"),
    "Farm object": ("pool", {"workers": 1}, 3, "mule"),
}


def start_slow_app(start_app, target: str, options: dict, count: int, raiser: str):
    source = SLOW.format(target=target, raiser=raiser, count=count)
    return start_app(source, **options)


@pytest.mark.parametrize("raised_by", ["controller", "child", "one at a time"])
@pytest.mark.parametrize("case", list(CASES))
def test_n_slow_signals_on_n_idle_processes_run_side_by_side(start_app, tmp_path, case, raised_by):
    target, options, count, kind = CASES[case]
    # A child raising for workers is a mule, and the other way round: the
    # raiser stays out of the pool it fills.
    raiser = "mule1" if kind == "worker" else "worker1"
    app = start_slow_app(start_app, target, options, count, raiser)
    if raised_by == "controller":
        for _ in range(count):
            app.handle.signal(10)
    elif raised_by == "child":
        app.handle.signal(1)
    else:
        # Each signal alone in its write (the next is raised once it started)
        # goes to the queue's "single" socket, whose write wakes one idle
        # reader: never a busy one, and never nobody.
        for started in range(1, count + 1):
            app.handle.signal(10)
            app.wait_records("started", started, timeout=20)
    started = app.wait_records("started", count, timeout=20)
    assert app.records("finished") == []  # all of them run at once, none is done
    who = {words[-2] for words in started}
    assert len(who) == count
    assert all(name.startswith(kind) for name in who)
    (tmp_path / "go").touch()
    app.wait_records("finished", count)
    assert len(app.records("started")) == count


def test_a_busy_process_takes_nothing_from_its_shared_queue(start_app, tmp_path):
    app = start_app(
        """
        @Signal(2).register_handler(target="mule2")
        def park(num):
            record("parked", num)
            block()

        @Signal(10).register_handler(target="mule")
        def quick(num):
            record("ran", num)
        """,
        mules=3,
    )
    app.handle.signal(2)
    app.wait_records("parked", 1)
    for _ in range(40):
        app.handle.signal(10)
    ran = app.wait_records("ran", 40)
    assert {words[-2] for words in ran} <= {"mule1", "mule3"}
    app.release()


def test_more_slow_signals_than_processes_queue_and_none_is_dropped(start_app, tmp_path):
    target, _options, _, _ = CASES["worker"]
    app = start_slow_app(start_app, target, {"workers": 2}, 0, "worker1")
    for _ in range(5):
        app.handle.signal(10)
    started = app.wait_records("started", 2)
    assert len({words[-2] for words in started}) == 2  # both workers, one signal each
    (tmp_path / "go").touch()
    app.wait_records("finished", 5)
    assert len(app.records("started")) == 5


def test_lone_signals_raised_while_every_process_is_busy_all_run_once_they_are_free(
    start_app,
):
    # Written one per write while no reader waits: the wake of each finds
    # nobody, and every reader must still find them when it looks again.
    app = start_app(
        """
        @Signal(2).register_handler(target="worker1")
        def park_one(num):
            record("parked", num)
            block()

        @Signal(3).register_handler(target="worker2")
        def park_two(num):
            record("parked", num)
            block()

        @Signal(10).register_handler(target="worker")
        def quick(num):
            record("ran", num)
        """,
        workers=2,
    )
    app.handle.signal(2)
    app.handle.signal(3)
    app.wait_records("parked", 2)
    for _ in range(6):
        app.handle.signal(10)
        app.handle.processes()  # the master answered: it wrote the signal on its own
    assert app.records("ran") == []
    app.release()  # the FIFO's end frees both parked handlers
    assert len(app.wait_records("ran", 6)) == 6
