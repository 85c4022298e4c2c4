"""HeldSignals: signals with no handler kept for a later wait(), within a bound."""

from __future__ import annotations

import logging

import pytest

from uwsgisig.runtime.master.held import HELD_LIMIT, HeldSignals
from uwsgisig.runtime.wire.frames import ANY_SIGNAL

pytestmark = pytest.mark.timeout(30)


def take_everything(held: HeldSignals) -> list[int]:
    taken = []
    while (num := held.take(ANY_SIGNAL)) is not None:
        taken.append(num)
    return taken


def test_the_default_bound_is_held_limit() -> None:
    held = HeldSignals()
    assert held.limit == HELD_LIMIT
    assert len(held) == 0
    assert held.dropped == 0


def test_signals_are_held_up_to_the_bound_without_a_drop() -> None:
    held = HeldSignals(limit=3)
    for num in (1, 2, 3):
        held.hold(num)
    assert len(held) == 3
    assert held.dropped == 0
    assert take_everything(held) == [1, 2, 3]


def test_past_the_bound_the_oldest_signal_is_dropped_and_counted() -> None:
    held = HeldSignals(limit=3)
    for num in (1, 2, 3, 4, 5):
        held.hold(num)
    assert len(held) == 3
    assert held.dropped == 2
    assert take_everything(held) == [3, 4, 5]


def test_drops_log_at_one_ten_a_hundred_a_thousand(caplog: pytest.LogCaptureFixture) -> None:
    held = HeldSignals(limit=1)
    held.hold(0)
    with caplog.at_level(logging.WARNING, logger="uwsgisig"):
        for drop in range(1, 1201):
            held.hold(drop % 256)
    assert held.dropped == 1200
    records = [r for r in caplog.records if r.name == "uwsgisig"]
    assert [r.levelno for r in records] == [logging.WARNING] * 4
    counts = [r.args[2] for r in records]  # type: ignore[index]
    assert counts == [1, 10, 100, 1000]
    first = records[0].getMessage()
    assert first == (
        "signal 0 had no handler and no wait() took it: dropped (1 held at most; 1 dropped so far)"
    )
    assert records[1].getMessage().startswith("signal 9 had no handler")


def test_no_drop_no_log_line(caplog: pytest.LogCaptureFixture) -> None:
    held = HeldSignals(limit=5)
    with caplog.at_level(logging.DEBUG, logger="uwsgisig"):
        for num in range(5):
            held.hold(num)
    assert [r for r in caplog.records if r.name == "uwsgisig"] == []


def test_take_by_number_removes_the_oldest_copy_and_keeps_the_order() -> None:
    held = HeldSignals()
    for num in (4, 7, 4, 9):
        held.hold(num)
    assert held.take(4) == 4
    assert take_everything(held) == [7, 4, 9]


def test_take_of_a_number_not_held_returns_none_and_changes_nothing() -> None:
    held = HeldSignals()
    held.hold(4)
    assert held.take(5) is None
    assert len(held) == 1


def test_take_any_returns_the_oldest() -> None:
    held = HeldSignals()
    for num in (8, 3, 8):
        held.hold(num)
    assert held.take(ANY_SIGNAL) == 8
    assert held.take(ANY_SIGNAL) == 3
    assert len(held) == 1


def test_take_from_nothing_returns_none() -> None:
    held = HeldSignals()
    assert held.take(ANY_SIGNAL) is None
    assert held.take(3) is None


def test_take_all_removes_every_copy_of_a_number_and_counts_them() -> None:
    held = HeldSignals()
    for num in (5, 6, 5, 7, 5):
        held.hold(num)
    assert held.take_all(5) == 3
    assert take_everything(held) == [6, 7]


def test_take_all_of_a_number_not_held_is_zero() -> None:
    held = HeldSignals()
    held.hold(6)
    assert held.take_all(5) == 0
    assert len(held) == 1


def test_room_made_by_take_is_used_before_dropping() -> None:
    held = HeldSignals(limit=2)
    held.hold(1)
    held.hold(2)
    held.take(1)
    held.hold(3)
    assert held.dropped == 0
    assert take_everything(held) == [2, 3]
