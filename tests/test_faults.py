"""Faults are survived as uWSGI survives them: raising handlers, dying children,
a dying master, stop and reload signals. No process is ever left behind."""

from __future__ import annotations

import itertools
import os
import signal
import time

import pytest

from tests.conftest import assert_all_gone, children_of, pid_alive, wait_for

pytestmark = pytest.mark.timeout(60)

DONE = 200


# Signal 1 parks worker 1 in a handler and reports it with signal 201.
PARK_WORKER1 = """
@Signal(1).register_handler(target="worker1")
def park(num):
    Signal(201).send()
    block()
"""


def test_handler_that_raises_is_logged_and_the_worker_goes_on(start_app):
    app = start_app(
        """
        @Signal(5).register_handler(target="worker1")
        def explode(num):
            raise RuntimeError("boom from the handler")

        @Signal(6).register_handler(target="worker1")
        def after(num):
            record("after", num)
            Signal(200).send()
        """
    )
    worker = app.pids_by_who()["worker1"]
    app.handle.signal(5)
    app.handle.signal(6)
    app.handle.wait(DONE, timeout=10)
    log = app.log.read_text()
    assert "handler <function explode" in log
    assert f"of signal 5 raised in worker 1 (pid {worker})" in log
    assert "RuntimeError: boom from the handler" in log  # the traceback
    assert app.records("after")[0][-1] == str(worker)  # the same process went on


def test_killed_worker_is_reaped_and_respawned_and_serves_signals(start_app):
    app = start_app(
        """
        @Signal(7).register_handler(target="worker2")
        def handler(num):
            record("ran", num)
            Signal(200).send()
        """,
        workers=2,
    )
    old = app.pids_by_who()["worker2"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: app.pids_by_who()["worker2"] not in (0, old), 10, "worker 2 respawned")
    app.handle.wait_ready(10)
    new = app.pids_by_who()["worker2"]
    assert not pid_alive(old)  # reaped, not a zombie
    app.handle.signal(7)
    app.handle.wait(DONE, timeout=10)
    assert app.records("ran")[0][-1] == str(new)
    assert f"worker 2 (pid {old}) exited with signal SIGKILL: respawning" in app.log.read_text()


def test_signal_queued_for_a_dead_worker_is_run_by_its_replacement(start_app):
    app = start_app(
        """
        @Signal(1).register_handler(target="worker1")
        def park(num):
            Signal(201).send()
            block()

        @Signal(2).register_handler(target="worker1")
        def later(num):
            record("later", num)
            Signal(200).send()
        """
    )
    old = app.pids_by_who()["worker1"]
    app.handle.signal(1)
    app.handle.wait(201, timeout=10)
    app.handle.signal(2)  # waits in worker 1's socket: worker 1 is parked
    os.kill(old, signal.SIGKILL)
    app.handle.wait(DONE, timeout=10)
    assert app.records("later")[0][-1] != str(old)


def test_child_that_dies_at_start_is_respawned_with_growing_delays(start_app, tmp_path):
    starts = tmp_path / "starts"
    app = start_app(
        f"""
        import time

        @uwsgisig.postfork
        def fail_three_times():
            if uwsgisig.worker_id() != 1:
                return
            with open({str(starts)!r}, "a") as file:
                file.write(f"{{time.monotonic()}}\\n")
            with open({str(starts)!r}) as file:
                if len(file.readlines()) <= 3:
                    os._exit(1)  # dies at start (a hook that raises is only logged)
        """
    )
    times = [float(line) for line in starts.read_text().split()]
    assert len(times) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # 0.1 s, then 0.2 s, then 0.4 s: never a tight respawn loop.
    assert gaps[0] >= 0.09
    assert gaps[1] >= 0.19
    assert gaps[2] >= 0.39
    assert "died" in app.log.read_text()
    assert app.handle.processes()[1].ready


def test_master_killed_takes_every_child_with_it(start_app):
    app = start_app(
        PARK_WORKER1,
        workers=2,
        mules=1,
        spooler=True,
    )
    pids = set(app.pids_by_who().values())
    children = children_of(app.handle.pid)
    assert len(children) == 4
    app.handle.signal(1)
    app.handle.wait(201, timeout=10)  # worker 1 is busy in a handler
    os.kill(app.handle.pid, signal.SIGKILL)
    assert_all_gone(pids | children)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGQUIT])
def test_stop_signal_stops_the_whole_tree(start_app, signum):
    app = start_app(
        PARK_WORKER1,
        workers=2,
        mules=1,
        stop_timeout=60.0,
    )
    pids = set(app.pids_by_who().values())
    app.handle.signal(1)
    app.handle.wait(201, timeout=10)
    os.kill(app.handle.pid, signum)
    # A stop that had to wait for the kill would take the 60 s stop timeout:
    # stop() would give up after 30 s, SIGKILL the master and return -9.
    assert app.handle.stop(timeout=30) == 0
    assert_all_gone(pids)
    assert "killing it" not in app.log.read_text()


def test_child_that_ignores_sigterm_is_killed_after_the_stop_timeout(start_app):
    app = start_app(
        """
        import signal

        @Signal(1).register_handler(target="worker1")
        def stubborn(num):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            Signal(201).send()
            block()
        """,
        stop_timeout=0.5,
    )
    pids = set(app.pids_by_who().values())
    app.handle.signal(1)
    app.handle.wait(201, timeout=10)
    started = time.monotonic()
    assert app.handle.stop(timeout=10) == 0
    elapsed = time.monotonic() - started
    assert_all_gone(pids)
    assert elapsed >= 0.5  # not killed before its stop timeout
    assert "ignored SIGTERM for 0.5 s: killing it" in app.log.read_text()


def test_sighup_reloads_workers_after_they_finish_their_handler(start_app):
    app = start_app(
        """
        @Signal(1).register_handler(target="worker1")
        def park(num):
            Signal(201).send()
            block()
            record("finished", num)
        """,
        workers=2,
        mules=1,
    )
    before = app.pids_by_who()
    app.handle.signal(1)
    app.handle.wait(201, timeout=10)
    app.handle.reload()
    # Worker 2 was idle: it is replaced at once. Worker 1 finishes first.
    wait_for(lambda: app.pids_by_who()["worker2"] not in (0, before["worker2"]), 10, "worker 2")
    assert app.pids_by_who()["worker1"] == before["worker1"]
    assert app.records("finished") == []
    app.release()
    app.wait_records("finished", 1)
    wait_for(lambda: app.pids_by_who()["worker1"] not in (0, before["worker1"]), 10, "worker 1")
    app.handle.wait_ready(10)
    after = app.pids_by_who()
    assert after["mule1"] == before["mule1"]  # mules are not reloaded
    assert app.records("finished")[0][-1] == str(before["worker1"])
    assert not pid_alive(before["worker1"])
    assert not pid_alive(before["worker2"])


def test_a_raise_frame_past_255_is_refused_by_the_master_which_goes_on(start_app):
    from uwsgisig.runtime.wire.frames import Op

    app = start_app(
        """
        @Signal(7).register_handler(target="worker1")
        def handler(num):
            record("ran", num)
        """
    )
    app.handle._link.send(Op.RAISE, 300)  # what no checked sender can send
    app.handle.signal(7)
    app.wait_records("ran", 1)
    wait_for(lambda: "raised signal 300: signals are 0-255" in app.log.read_text(), 10, "log")


def test_a_post_fork_hook_that_raises_is_logged_and_the_next_hooks_still_run(start_app):
    # uWSGI 2.0.31 prints the traceback and keeps the worker, but skips the
    # hooks after the one that raised; here each hook runs on its own.
    app = start_app(
        """
        @uwsgisig.postfork
        def broken():
            raise RuntimeError("hook failed")

        @uwsgisig.postfork
        def fine():
            record("fine")

        @Signal(3).register_handler(target="worker1")
        def serves(num):
            record("served", num)
        """
    )
    assert len(app.wait_records("fine", 1)) == 1
    app.handle.signal(3)
    app.wait_records("served", 1)
    log = app.log.read_text()
    assert "post-fork hook app0:broken raised in worker 1 (pid" in log
    assert "RuntimeError: hook failed" in log  # the traceback, through the logger
    assert "respawning" not in log
