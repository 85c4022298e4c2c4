"""Controlling the runtime from its own code: reload, stop, workers(), harakiri."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import assert_all_gone, wait_for
from uwsgisig import NotInRuntimeError, compat, control

pytestmark = pytest.mark.timeout(90)


def test_reload_from_a_handler_replaces_the_workers(start_app):
    app = start_app(
        """
        from uwsgisig import control

        @Signal(1).register_handler(target="worker1")
        def ask(num):
            control.reload()
        """,
        workers=2,
    )
    before = {who: pid for who, pid in app.pids_by_who().items() if who.startswith("worker")}
    app.handle.signal(1)
    wait_for(
        lambda: not set(app.pids_by_who().values()) & set(before.values()), 20, "the reload"
    )


def test_stop_from_a_mule_stops_everything(start_app):
    app = start_app(
        """
        from uwsgisig import control

        @Signal(2).register_handler(target="mule1")
        def ask(num):
            control.stop()
        """,
        mules=1,
    )
    pids = set(app.handle.pids())
    app.handle.signal(2)
    assert_all_gone(pids)


def test_workers_gives_the_stats_servers_figures(start_app):
    app = start_app(
        """
        from uwsgisig import control

        @Signal(3).register_handler(target="worker2")
        def look(num):
            for worker in control.workers():
                record("worker", worker["id"], worker["pid"], worker["status"],
                       worker["signals"], worker["respawn_count"])
        """,
        workers=2,
    )
    app.handle.signal(3)
    rows = app.wait_records("worker", 2)
    by_who = app.pids_by_who()
    assert [(int(r[1]), int(r[2])) for r in rows] == [
        (1, by_who["worker1"]),
        (2, by_who["worker2"]),
    ]
    assert rows[0][3] == "idle"
    assert rows[1][3] == "sig3"  # it is the one running signal 3
    assert rows[1][5] == "1"


def test_harakiri_kills_a_handler_that_runs_too_long_and_the_worker_comes_back(start_app):
    app = start_app(
        """
        import time

        @Signal(4).register_handler(target="worker1")
        def stuck(num):
            record("stuck", num)
            time.sleep(60)

        @Signal(5).register_handler(target="worker1")
        def fine(num):
            record("fine", num)
        """,
        harakiri=1,
    )
    old = app.pids_by_who()["worker1"]
    app.handle.signal(4)
    app.wait_records("stuck", 1)
    app.handle.signal(5)  # queued behind the stuck one: its replacement runs it
    app.wait_records("fine", 1, timeout=30)
    log = app.log.read_text()
    assert f"HARAKIRI: worker 1 (pid {old}) was in handler app0:stuck of signal 4" in log
    assert "past --harakiri 1 s: killing it" in log
    assert app.records("fine")[0][-1] != str(old)


def test_the_harakiri_decorator_and_user_harakiri(start_app):
    app = start_app(
        """
        import time
        from uwsgisig import control

        @control.harakiri(1)
        def too_slow():
            time.sleep(60)

        @control.harakiri(30)
        def quick():
            return "done"

        @Signal(6).register_handler(target="mule1")
        def run(num):
            record("quick", quick())
            too_slow()
        """,
        mules=1,
    )
    old = app.pids_by_who()["mule1"]
    app.handle.signal(6)
    assert app.wait_records("quick", 1)[0][1] == "done"
    wait_for(lambda: "the harakiri it set itself: killing it" in app.log.read_text(), 30,
             "the harakiri")
    wait_for(lambda: app.pids_by_who().get("mule1") not in (None, old), 20, "a new mule 1")


def test_uwsgidecorators_harakiri_and_control_under_the_compat_module(start_app):
    compat.install()
    try:
        app = start_app(
            """
            import uwsgi
            from uwsgidecorators import harakiri

            @harakiri(30)
            def guarded():
                return len(uwsgi.workers())

            @Signal(7).register_handler(target="worker1")
            def run(num):
                record("workers", guarded(), uwsgi.total_requests())
            """,
            workers=2,
        )
        app.handle.signal(7)
        assert app.wait_records("workers", 1)[0][1:3] == ["2", "0"]
    finally:
        compat.uninstall()
        sys.modules.pop("uwsgidecorators", None)


def test_control_outside_a_runtime_says_so():
    with pytest.raises(NotInRuntimeError):
        control.reload()
    with pytest.raises(NotInRuntimeError):
        control.workers()
    with pytest.raises(ValueError, match="invalid harakiri -1"):
        control.set_user_harakiri(-1)
