"""Timers, cron and file monitors on a real runtime: they fire in the master and
their signals are routed like any other."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from uwsgisig import ScheduleError, Signal, TargetError
from uwsgisig.monitoring import register_file_monitor
from uwsgisig.scheduling import (
    register_cron,
    register_timer,
    register_timer_ms,
    register_timer_rb,
)

pytestmark = pytest.mark.timeout(60)

# How late a tick runs is not bounded here: on a loaded 2-core machine any
# bound flakes. That the schedule does not drift (tick N due at start + N *
# period, whatever the lateness) is proven with a fake clock in
# tests/runtime/test_timers.py; these tests check what causality guarantees.


def test_ms_timer_ticks_on_its_grid_never_early(start_app):
    app = start_app(
        """
        import time
        from uwsgisig.scheduling import register_timer_ms

        START = time.monotonic()

        @register_timer_ms(50, target="worker1")
        def tick(num):
            record("tick", time.monotonic() - START)
        """
    )
    ticks = [float(words[1]) for words in app.wait_records("tick", 12, timeout=10)[:12]]
    # Tick N is due at start + N * 50 ms and never runs before that.
    # START was taken at import, just before the timer was armed.
    for n, at in enumerate(ticks, start=1):
        assert at >= n * 0.05 - 0.005, (n, ticks)


def test_rb_timer_with_repeat_3_fires_exactly_3_times(start_app):
    app = start_app(
        """
        from uwsgisig.scheduling import register_timer_rb

        @register_timer_rb(0.05, 3, target="worker1")
        def three(num):
            record("three", num)

        @register_timer_rb(0.25, 1, target="worker1")
        def later(num):
            # Due after any 4th tick of `three` would be: that one would run first.
            record("later", num)
        """,
        workers=2,
    )
    app.wait_records("later", 1)
    assert len(app.records("three")) == 3
    assert {words[-2] for words in app.records("three")} == {"worker1"}


def test_timer_targeting_mules_runs_on_every_mule(start_app):
    app = start_app(
        """
        from uwsgisig.scheduling import register_timer_rb

        @register_timer_rb(0.05, 1, target="mules")
        def on_mules(num):
            record("mule-tick", num)
        """,
        workers=1,
        mules=3,
    )
    ticks = app.wait_records("mule-tick", 3)
    assert Counter(words[-2] for words in ticks) == Counter({"mule1": 1, "mule2": 1, "mule3": 1})


def test_plain_timer_ticks_every_period(start_app):
    app = start_app(
        """
        import time
        from uwsgisig.scheduling import register_timer

        START = time.monotonic()

        @register_timer(0.1, target="worker")
        def tick(num):
            record("tick", time.monotonic() - START)
        """,
        workers=2,
    )
    ticks = [float(words[1]) for words in app.wait_records("tick", 3)[:3]]
    for n, at in enumerate(ticks, start=1):
        assert at >= n * 0.1 - 0.005, (n, ticks)


def test_cron_for_every_minute_fires_when_the_runtime_starts(start_app):
    app = start_app(
        """
        from uwsgisig.scheduling import register_cron

        @register_cron(target="mule1")
        def every_minute(num):
            record("cron", num)

        @register_cron("* * * * *", target="worker1")
        def crontab_every_minute(num):
            record("crontab", num)
        """,
        mules=1,
    )
    assert app.wait_records("cron", 1)[0][-2] == "mule1"
    assert app.wait_records("crontab", 1)[0][-2] == "worker1"


def test_file_monitor_fires_on_create_modify_and_delete(start_app, tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    app = start_app(
        f"""
        from uwsgisig.monitoring import register_file_monitor

        @register_file_monitor({str(watched)!r}, target="worker")
        def changed(num):
            record("changed", num)
        """,
        workers=2,
    )
    target = watched / "file.txt"
    target.write_text("created")
    app.wait_records("changed", 1)
    with target.open("a") as file:
        file.write(" and appended")
    app.wait_records("changed", 2)
    target.unlink()
    app.wait_records("changed", 3)
    (watched / "sub").mkdir()
    assert len(app.wait_records("changed", 4)) == 4


def test_events_registered_by_a_child_after_fork_fire(start_app, tmp_path):
    watched = tmp_path / "late.txt"
    watched.write_text("")
    app = start_app(
        f"""
        from uwsgisig.scheduling import register_timer_rb

        late_timer = Signal(40)
        late_file = Signal(41)

        @late_timer.register_handler(target="worker1")
        def on_timer(num):
            record("late-timer", num)

        @late_file.register_handler(target="worker1")
        def on_file(num):
            record("late-file", num)

        @uwsgisig.postfork
        def arm():
            if uwsgisig.worker_id() == 1:
                lowlevel.add_rb_timer(40, 0.05, 2)
                lowlevel.add_file_monitor(41, {str(watched)!r})
                record("armed")
        """
    )
    app.wait_records("armed", 1)
    app.wait_records("late-timer", 2)
    watched.write_text("changed")
    app.wait_records("late-file", 1)


def test_child_asking_for_a_bad_event_gets_a_clear_error(start_app, tmp_path):
    app = start_app(
        f"""
        @uwsgisig.postfork
        def arm():
            if uwsgisig.worker_id() != 1:
                return
            for call in (
                lambda: lowlevel.add_timer(40, 0),
                lambda: lowlevel.add_cron(41, minute=61),
                lambda: lowlevel.add_file_monitor(42, {str(tmp_path / "missing")!r}),
            ):
                try:
                    call()
                except uwsgisig.ScheduleError as exc:
                    record("refused", type(exc).__name__)
        """
    )
    refused = app.wait_records("refused", 3)
    assert [words[1] for words in refused] == ["ScheduleError", "ScheduleError", "MonitorPathError"]


# ---------------------------------------------------------------- bad input, in one process


@pytest.mark.parametrize("period", [0, -1, "1", None, True, float("nan"), float("inf")])
def test_timer_with_a_bad_period_is_refused_naming_it(period):
    with pytest.raises(ScheduleError) as info:
        register_timer(period)
    assert repr(period) in str(info.value)


@pytest.mark.parametrize("period", [0, -5, "50"])
def test_ms_timer_with_a_bad_period_is_refused(period):
    with pytest.raises(ScheduleError, match=repr(period)):
        register_timer_ms(period)


@pytest.mark.parametrize("repeat", [-1, 1.5, "3"])
def test_rb_timer_with_a_bad_repeat_is_refused(repeat):
    with pytest.raises(ScheduleError, match=repr(repeat)):
        register_timer_rb(1, repeat)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"minute": 61}, "61"),
        ({"weekday": 8}, "8"),
        ({"hour": 24}, "24"),
        ({"day": 0}, "0"),
        ({"month": 13}, "13"),
        ({"minute": "5"}, "'5'"),
    ],
)
def test_cron_field_out_of_range_is_refused_naming_the_field(fields, named):
    with pytest.raises(ScheduleError) as info:
        register_cron(**fields)
    message = str(info.value)
    assert named in message
    assert next(iter(fields)) in message


@pytest.mark.parametrize("crontab", ["* * * *", "61 * * * *", "*/0 * * * *", "a b c d e", ""])
def test_unparsable_crontab_is_refused_naming_it(crontab):
    with pytest.raises(ScheduleError, match="crontab"):
        register_cron(crontab)


def test_missing_path_is_refused_naming_it(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        register_file_monitor(missing)


def test_bad_input_takes_no_signal_number():
    before = Signal()
    with pytest.raises(ScheduleError):
        register_timer(0)
    with pytest.raises(TargetError):
        register_timer(1, target="nobody")
    assert int(Signal()) == int(before) + 1


def test_existing_signal_as_target_gets_the_event_and_no_decorator():
    from uwsgisig.runtime.model import app

    signal = Signal(50)
    assert register_timer(5, target=signal) is None
    assert register_cron(hour=-2, target=signal) is None
    assert register_file_monitor(os.getcwd(), target=signal) is None
    assert [event.signum for event in app.DECLARED.events] == [50, 50, 50]
