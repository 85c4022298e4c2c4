"""Flow control: credit owed to senders, paid back while the backlog allows.

The state machine at the end checks the liveness invariant of
``uwsgisig/runtime/master/flow.py``: a master that calls `Flow.payments` on
every pass pays every sender out of credit once the backlog is down to
``limit // 2``, however the backlog got there (consumers drain it without
telling the master), and the credit it hands out bounds the backlog.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from uwsgisig.runtime.master.flow import CREDIT_BATCH, RAISE_WINDOW, Flow

pytestmark = pytest.mark.timeout(30)


class Backlog:
    """A measure that counts how often the master asked for it."""

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self.asked = 0

    def __call__(self) -> int:
        self.asked += 1
        return self.value


def test_the_default_batch_is_a_quarter_of_the_window() -> None:
    flow: Flow[str] = Flow(100)
    assert flow.window == RAISE_WINDOW
    assert flow.batch == CREDIT_BATCH == RAISE_WINDOW // 4


def test_a_new_flow_grants_and_owes_nothing() -> None:
    flow: Flow[str] = Flow(100, window=8, batch=2)
    assert flow.granting
    assert flow.owed("a") == 0
    assert not flow.is_blocked("a")


def test_raised_frames_add_up_to_what_is_owed() -> None:
    flow: Flow[str] = Flow(100, window=8, batch=2)
    flow.raised("a", 3)
    flow.raised("a", 2)
    flow.raised("b", 1)
    assert flow.owed("a") == 5
    assert flow.owed("b") == 1


def test_a_sender_is_blocked_once_its_whole_window_is_owed() -> None:
    flow: Flow[str] = Flow(100, window=8, batch=2)
    flow.raised("a", 7)
    assert not flow.is_blocked("a")
    flow.raised("a", 1)
    assert flow.is_blocked("a")


def test_with_nothing_owed_there_is_nothing_to_pay_and_no_measure() -> None:
    flow: Flow[str] = Flow(10, window=8, batch=2)
    flow.granting = False
    backlog = Backlog(1000)
    assert flow.payments(backlog) == []
    assert backlog.asked == 0
    assert flow.granting


def test_payments_pay_senders_owed_a_batch_and_keep_smaller_debts() -> None:
    flow: Flow[str] = Flow(100, window=8, batch=3)
    flow.raised("a", 3)
    flow.raised("b", 2)
    flow.raised("c", 8)
    backlog = Backlog(0)
    assert sorted(flow.payments(backlog)) == [("a", 3), ("c", 8)]
    assert backlog.asked == 1
    assert flow.owed("a") == 0
    assert flow.owed("b") == 2
    assert flow.owed("c") == 0
    assert flow.payments(Backlog(0)) == []  # "b" still owes less than a batch


def test_payments_stop_at_the_limit() -> None:
    flow: Flow[str] = Flow(10, window=8, batch=1)
    flow.raised("a", 4)
    assert flow.payments(Backlog(10)) == []
    assert not flow.granting
    assert flow.owed("a") == 4


def test_payments_resume_only_at_half_the_limit() -> None:
    flow: Flow[str] = Flow(10, window=8, batch=1)
    flow.raised("a", 4)
    flow.payments(Backlog(12))
    for backlog in (9, 7, 6):
        assert flow.payments(Backlog(backlog)) == []
        assert not flow.granting
    assert flow.payments(Backlog(5)) == [("a", 4)]
    assert flow.granting


def test_payments_go_on_between_half_and_the_limit_while_granting() -> None:
    flow: Flow[str] = Flow(10, window=8, batch=1)
    flow.raised("a", 2)
    assert flow.payments(Backlog(9)) == [("a", 2)]
    assert flow.granting


def test_a_blocked_sender_is_paid_once_the_backlog_drains_silently() -> None:
    flow: Flow[str] = Flow(10, window=4, batch=2)
    for sender in ("a", "b"):
        flow.raised(sender, 4)
    backlog = Backlog(10)
    assert flow.payments(backlog) == []
    assert flow.is_blocked("a")
    assert flow.is_blocked("b")
    backlog.value = 5  # consumers took signals; nobody told the master
    assert sorted(flow.payments(backlog)) == [("a", 4), ("b", 4)]
    assert not flow.is_blocked("a")
    assert not flow.is_blocked("b")


def test_reset_gives_a_new_process_a_full_window() -> None:
    flow: Flow[str] = Flow(10, window=4, batch=2)
    flow.raised("a", 4)
    flow.raised("b", 1)
    flow.payments(Backlog(10))
    flow.reset("a")
    assert flow.owed("a") == 0
    assert not flow.is_blocked("a")
    assert flow.owed("b") == 1
    flow.reset("never-seen")  # a slot that never raised: nothing to forget


def test_once_every_debt_is_reset_granting_is_on_again() -> None:
    flow: Flow[str] = Flow(10, window=4, batch=2)
    flow.raised("a", 4)
    flow.payments(Backlog(10))
    assert not flow.granting
    flow.reset("a")
    assert flow.payments(Backlog(10)) == []
    assert flow.granting


@pytest.mark.parametrize(("window", "batch"), [(8, 0), (8, 9), (1, 2), (4, -1)])
def test_a_batch_outside_one_to_the_window_is_refused(window: int, batch: int) -> None:
    with pytest.raises(
        ValueError, match=rf"^invalid credit batch {batch}: must be from 1 to the window$"
    ):
        Flow(10, window=window, batch=batch)


@pytest.mark.parametrize(("window", "batch"), [(8, 1), (8, 8), (1, 1)])
def test_a_batch_from_one_to_the_window_is_accepted(window: int, batch: int) -> None:
    assert Flow(10, window=window, batch=batch).batch == batch


class FlowSchedule(RuleBasedStateMachine):
    """Senders, consumers and a master, interleaved in any order.

    A sender holds a balance of credit (its window less what it spent, plus
    what it was paid) and writes RAISE frames the master reads on its next
    pass; read signals join the backlog, which consumers drain at any time
    without a word to the master. The master's pass is what ``Master._flush``
    does: read, then ``payments(backlog)``, then hand the credit over.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flow: Flow[int] = Flow(1)
        self.senders = 0
        self.balance: list[int] = []
        self.in_flight: list[int] = []
        self.backlog = 0
        self.asked = 0

    @initialize(
        limit=st.integers(1, 60),
        window=st.integers(1, 12),
        senders=st.integers(1, 4),
        data=st.data(),
    )
    def start(self, limit: int, window: int, senders: int, data: st.DataObject) -> None:
        batch = data.draw(st.integers(1, window), label="batch")
        self.flow = Flow(limit, window=window, batch=batch)
        self.senders = senders
        self.balance = [window] * senders
        self.in_flight = [0] * senders

    @precondition(lambda self: self.senders > 0)
    @rule(data=st.data())
    def send(self, data: st.DataObject) -> None:
        sender = data.draw(st.integers(0, self.senders - 1), label="sender")
        count = data.draw(st.integers(1, self.flow.window), label="count")
        count = min(count, self.balance[sender])
        self.balance[sender] -= count
        self.in_flight[sender] += count

    @precondition(lambda self: self.backlog > 0)
    @rule(data=st.data())
    def drain(self, data: st.DataObject) -> None:
        self.backlog -= data.draw(st.integers(1, self.backlog), label="drained")

    @precondition(lambda self: self.senders > 0)
    @rule()
    def master_pass(self) -> None:
        for sender, count in enumerate(self.in_flight):
            if count:
                self.flow.raised(sender, count)
                self.backlog += count
                self.in_flight[sender] = 0

        def measure() -> int:
            self.asked += 1
            return self.backlog

        owed = [self.flow.owed(s) for s in range(self.senders)]
        # The backlog is measured only when a payment may be due: something is
        # owed and either credit is held back or a batch is owed to someone.
        may_pay = any(owed) and (not self.flow.granting or max(owed) >= self.flow.batch)
        asked_before = self.asked
        for sender, amount in self.flow.payments(measure):
            assert amount >= self.flow.batch
            self.balance[sender] += amount
        assert self.asked - asked_before == (1 if may_pay else 0)

        for sender in range(self.senders):
            assert self.flow.is_blocked(sender) == (self.balance[sender] == 0)
        if self.backlog <= self.flow.limit // 2:
            blocked = [s for s in range(self.senders) if self.balance[s] == 0]
            assert blocked == [], f"senders {blocked} stay blocked at backlog {self.backlog}"

    @invariant()
    def credit_is_conserved(self) -> None:
        for sender in range(self.senders):
            total = self.balance[sender] + self.in_flight[sender] + self.flow.owed(sender)
            assert total == self.flow.window

    @invariant()
    def credit_bounds_the_backlog(self) -> None:
        queued = self.backlog + sum(self.in_flight)
        assert queued <= self.flow.limit + self.senders * self.flow.window


FlowSchedule.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestFlowSchedule = FlowSchedule.TestCase
