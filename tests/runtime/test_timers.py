"""Timer schedules: drift-free grid, fire-once catch-up, iterations, the heap."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uwsgisig.errors import SignalNumberError, UwsgisigError
from uwsgisig.runtime.schedule.events import (
    EventSources,
    arm,
    ms_timer_event,
    rb_timer_event,
    timer_event,
)
from uwsgisig.runtime.schedule.timers import ScheduleError, Timer, TimerHeap, TimerKind

pytestmark = pytest.mark.timeout(30)

START = 1000.0


def heap_of(*timers: Timer) -> TimerHeap:
    heap = TimerHeap()
    for t in timers:
        heap.add(t)
    return heap


def test_first_tick_is_due_one_period_after_start() -> None:
    heap = heap_of(arm(timer_event(5, 2), START))

    assert heap.next_due() == START + 2
    assert heap.pop_due(START + 1.999) == []
    assert heap.pop_due(START + 2) == [5]


def test_timer_ticks_on_start_plus_n_period_grid() -> None:
    heap = heap_of(arm(timer_event(5, 1.5), START))

    dues = []
    for _ in range(5):
        due = heap.next_due()
        assert due is not None
        dues.append(due)
        assert heap.pop_due(due) == [5]

    assert dues == [START + n * 1.5 for n in range(1, 6)]


def test_late_processing_does_not_shift_the_next_tick() -> None:
    heap = heap_of(arm(timer_event(5, 1), START))

    assert heap.pop_due(START + 1.9) == [5]  # processed 0.9 s late

    assert heap.next_due() == START + 2


def test_timers_shorter_than_a_millisecond_are_refused() -> None:
    with pytest.raises(ScheduleError, match="must be at least 1 millisecond, the shortest"):
        ms_timer_event(5, 0.1)
    with pytest.raises(ScheduleError, match=r"must be at least 0\.001 seconds"):
        timer_event(5, 1e-9)
    assert ms_timer_event(5, 1).period == 0.001


def test_tiny_period_does_not_accumulate_float_error() -> None:
    # The pure schedule stays exact below what a caller may ask for.
    made = Timer(5, 0.0001, 0, START, TimerKind.MS_TIMER)
    heap = heap_of(made)

    for _ in range(10_000):
        due = heap.next_due()
        assert due is not None
        heap.pop_due(due)

    assert heap.next_due() == made.start + 10_001 * made.period


def test_period_below_the_clocks_float_resolution_still_advances() -> None:
    made = Timer(5, 1e-300, 0, 1e6, TimerKind.TIMER)
    heap = heap_of(made)

    assert heap.pop_due(1e6 + 1) == [5]

    next_due = heap.next_due()
    assert next_due is not None
    assert next_due > 1e6 + 1


def test_stall_fires_once_then_stays_on_grid() -> None:
    heap = heap_of(arm(timer_event(5, 1), START))

    assert heap.pop_due(START + 5.5) == [5]  # ticks 1-5 were missed: one signal

    assert heap.next_due() == START + 6
    assert heap.pop_due(START + 5.9) == []
    assert heap.pop_due(START + 6) == [5]


def test_tick_due_exactly_now_fires_and_next_is_strictly_after_now() -> None:
    heap = heap_of(arm(timer_event(5, 1), START))

    assert heap.pop_due(START + 3) == [5]

    assert heap.next_due() == START + 4


def test_a_tick_never_fires_twice() -> None:
    heap = heap_of(arm(timer_event(5, 1), START))

    assert heap.pop_due(START + 1.5) == [5]
    assert heap.pop_due(START + 1.5) == []
    assert heap.pop_due(START + 1.99) == []


def test_rb_timer_with_three_iterations_fires_exactly_three_times() -> None:
    heap = heap_of(arm(rb_timer_event(7, 1, 3), START))

    fired = [heap.pop_due(START + n) for n in range(1, 10)]

    assert fired == [[7], [7], [7], [], [], [], [], [], []]
    assert len(heap) == 0
    assert heap.next_due() is None


def test_rb_timer_counts_fired_ticks_not_missed_grid_points() -> None:
    heap = heap_of(arm(rb_timer_event(7, 1, 3), START))

    assert heap.pop_due(START + 50) == [7]  # a long stall: still only one
    assert heap.pop_due(START + 51) == [7]
    assert heap.pop_due(START + 52) == [7]
    assert heap.pop_due(START + 53) == []


def test_one_shot_rb_timer_fires_once() -> None:
    heap = heap_of(arm(rb_timer_event(30, 40, 1), START))

    assert heap.pop_due(START + 40) == [30]
    assert len(heap) == 0


def test_timer_with_zero_iterations_never_finishes() -> None:
    heap = heap_of(arm(rb_timer_event(7, 1, 0), START))

    for n in range(1, 101):
        assert heap.pop_due(START + n) == [7]

    assert len(heap) == 1


def test_ms_timer_period_is_in_milliseconds() -> None:
    made = arm(ms_timer_event(9, 250), START)

    assert made.period == 0.25
    assert made.kind is TimerKind.MS_TIMER


@pytest.mark.parametrize(
    ("made", "kind", "period", "iterations"),
    [
        (arm(timer_event(1, 2), START), TimerKind.TIMER, 2.0, 0),
        (arm(rb_timer_event(1, 2), START), TimerKind.RB_TIMER, 2.0, 0),
        (arm(rb_timer_event(1, 0.5, 4), START), TimerKind.RB_TIMER, 0.5, 4),
        (arm(ms_timer_event(1, 1500), START), TimerKind.MS_TIMER, 1.5, 0),
    ],
)
def test_helpers_mirror_the_uwsgi_calls(
    made: Timer, kind: TimerKind, period: float, iterations: int
) -> None:
    assert (made.kind, made.period, made.iterations, made.start) == (
        kind,
        period,
        iterations,
        START,
    )


def test_start_defaults_to_the_monotonic_clock_now() -> None:
    sources = EventSources()  # the master's: its clock defaults to time.monotonic
    before = time.monotonic()
    sources.add(timer_event(1, 1))
    after = time.monotonic()

    due = sources.timers.next_due()  # start + 1 period
    assert due is not None
    assert before + 1 <= due <= after + 1


def test_timer_is_a_frozen_value() -> None:
    made = arm(timer_event(1, 1), START)

    with pytest.raises(AttributeError):
        made.period = 2.0  # type: ignore[misc]
    assert made == arm(timer_event(1, 1), START)


def test_heap_fires_due_timers_in_due_order() -> None:
    heap = heap_of(
        arm(timer_event(1, 3), START),
        arm(timer_event(2, 1), START),
        arm(timer_event(3, 2), START),
    )

    assert heap.pop_due(START + 3) == [2, 3, 1]


def test_timers_due_at_the_same_time_fire_in_the_order_added() -> None:
    heap = heap_of(
        arm(timer_event(9, 1), START),
        arm(timer_event(4, 1), START),
        arm(timer_event(6, 1), START),
    )

    assert heap.pop_due(START + 1) == [9, 4, 6]
    assert heap.pop_due(START + 2) == [9, 4, 6]


def test_next_due_is_the_earliest_tick() -> None:
    heap = heap_of(arm(timer_event(1, 5), START), arm(timer_event(2, 3), START + 1))

    assert heap.next_due() == START + 4
    assert heap.timeout(START + 1) == 3.0
    assert heap.timeout(START + 10) == 0.0


def test_empty_heap_has_no_due_time() -> None:
    heap = TimerHeap()

    assert len(heap) == 0
    assert heap.next_due() is None
    assert heap.timeout(START) is None
    assert heap.pop_due(START) == []


def test_thousand_concurrent_timers_each_tick_on_their_own_grid() -> None:
    periods = [0.01 * (1 + i % 100) for i in range(1000)]  # 0.01 s to 1 s
    heap = heap_of(*(arm(timer_event(i % 256, p), START) for i, p in enumerate(periods)))
    counts = [0] * 256

    steps = 0
    began = time.perf_counter()
    while True:
        due = heap.next_due()
        assert due is not None
        if due > START + 2.0:
            break
        for signum in heap.pop_due(due):
            counts[signum] += 1
        steps += 1
    elapsed = time.perf_counter() - began

    expected = [0] * 256
    for i, p in enumerate(periods):
        expected[i % 256] += math.floor(2.0 / p + 1e-9)
    assert counts == expected
    assert len(heap) == 1000
    assert elapsed < 5.0


@pytest.mark.parametrize("period", [0, -1, -0.5, math.nan, math.inf, -math.inf])
def test_period_not_a_finite_positive_number_is_rejected(period: float) -> None:
    with pytest.raises(ScheduleError, match=r"invalid timer period .*finite number of seconds > 0"):
        arm(timer_event(1, period), START)


@pytest.mark.parametrize("period", [True, False, "1", None, [1], 1j])
def test_period_that_is_not_an_int_or_float_is_rejected(period: object) -> None:
    with pytest.raises(ScheduleError) as caught:
        arm(timer_event(1, period), START)  # type: ignore[arg-type]

    assert repr(period) in str(caught.value)
    assert "int or float" in str(caught.value)


@pytest.mark.parametrize("ms", [0, -5, math.nan, True, "10"])
def test_ms_timer_interval_must_be_positive_milliseconds(ms: object) -> None:
    with pytest.raises(ScheduleError, match="milliseconds") as caught:
        arm(ms_timer_event(1, ms), START)  # type: ignore[arg-type]

    assert repr(ms) in str(caught.value)


@pytest.mark.parametrize("iterations", [-1, True, 1.5, "3", None])
def test_iterations_must_be_an_int_of_at_least_zero(iterations: object) -> None:
    with pytest.raises(ScheduleError, match="iterations") as caught:
        arm(rb_timer_event(1, 1, iterations), START)  # type: ignore[arg-type]

    assert repr(iterations) in str(caught.value)
    assert "0 means forever" in str(caught.value)


@pytest.mark.parametrize("signum", [-1, 256, True, "5"])
def test_signal_number_must_be_0_to_255(signum: object) -> None:
    with pytest.raises(SignalNumberError, match="0 to 255"):
        arm(timer_event(signum, 1), START)  # type: ignore[arg-type]


@pytest.mark.parametrize("start", [math.nan, math.inf, "now", True])
def test_start_must_be_a_finite_time(start: object) -> None:
    with pytest.raises(ScheduleError, match="start"):
        arm(timer_event(1, 1), start)  # type: ignore[arg-type]


def test_schedule_error_is_a_value_error_and_a_package_error() -> None:
    assert issubclass(ScheduleError, ValueError)
    assert issubclass(ScheduleError, UwsgisigError)


# Properties ------------------------------------------------------------------

periods = st.floats(min_value=0.001, max_value=100, allow_nan=False, allow_infinity=False)
starts = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
# Gaps between two looks of the loop, in periods: short waits and long stalls.
gaps = st.lists(st.floats(min_value=0, max_value=7.5), min_size=1, max_size=60)


def _on_grid(made: Timer, due: float) -> bool:
    tick = round((due - made.start) / made.period)
    return tick >= 1 and due == made.due_time(tick)


@settings(max_examples=200, deadline=None)
@given(period=periods, start=starts, gaps=gaps)
def test_ticks_stay_on_the_grid_and_never_repeat(
    period: float, start: float, gaps: list[float]
) -> None:
    made = arm(timer_event(1, period), start)
    heap = heap_of(made)
    now = start
    fired_dues: list[float] = []

    for gap in gaps:
        now += gap * period
        due = heap.next_due()
        assert due is not None
        fired = heap.pop_due(now)
        if due <= now:
            assert fired == [1]  # one signal per look, however long the stall
            fired_dues.append(due)
        else:
            assert fired == []
        next_due = heap.next_due()
        assert next_due is not None
        assert next_due > now
        assert _on_grid(made, next_due)

    assert all(_on_grid(made, d) for d in fired_dues)
    assert fired_dues == sorted(set(fired_dues))


@settings(max_examples=200, deadline=None)
@given(
    period=periods,
    start=starts,
    gaps=st.lists(st.floats(min_value=0.05, max_value=0.95), min_size=1, max_size=80),
)
def test_without_stalls_every_grid_point_fires_once(
    period: float, start: float, gaps: list[float]
) -> None:
    made = arm(timer_event(1, period), start)
    heap = heap_of(made)
    now = start
    fired = 0

    for gap in gaps:
        now += gap * period
        fired += len(heap.pop_due(now))

    assert fired == made.next_tick_after(now) - 1  # every grid point passed so far
    assert heap.next_due() == made.due_time(made.next_tick_after(now))


@settings(max_examples=200, deadline=None)
@given(
    period=periods,
    iterations=st.integers(min_value=1, max_value=20),
    gaps=st.lists(st.floats(min_value=0, max_value=10), min_size=0, max_size=40),
)
def test_rb_timer_fires_exactly_its_iterations_whatever_the_stalls(
    period: float, iterations: int, gaps: list[float]
) -> None:
    heap = heap_of(arm(rb_timer_event(3, period, iterations), START))
    now = START
    fired = 0

    for gap in [*gaps, *([1.5] * (iterations + 1))]:  # then enough looks to finish
        now += gap * period
        fired += len(heap.pop_due(now))

    assert fired == iterations
    assert len(heap) == 0
