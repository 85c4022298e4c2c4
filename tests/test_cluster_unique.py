"""Once per cluster, on fake clocks: nodes whose clocks differ fire each tick of a unique
timer or cron once between them, as long as they differ by less than a lease's life; and
the agent's side of a lease, on a fake client."""

from __future__ import annotations

import collections
import json
import socket
import time
from datetime import datetime

import pytest

from uwsgisig.runtime.child.cluster import Agent
from uwsgisig.runtime.model.cluster import MIN_LEASE, ClusterSpec, lease_ttl, slot_of
from uwsgisig.runtime.schedule.cron import CronSpec
from uwsgisig.runtime.schedule.events import (
    CronEvent,
    EventSources,
    mid_period_offset,
    timer_event,
    unique_length,
)

pytestmark = pytest.mark.timeout(60)

SPEC = ClusterSpec("redis://127.0.0.1:6379/0", "test")
EPOCH = 1_800_000_000.25  # the true UNIX time the simulation starts at


class LeaseBook:
    """``SET key value NX PX ttl`` as Redis does it, on the true (simulated) time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.leases: dict[str, tuple[str, float]] = {}

    def take(self, key: str, node: str, ttl: float) -> bool:
        held = self.leases.get(key)
        if held is not None and held[1] > self.now:
            return False
        self.leases[key] = (node, self.now + ttl)
        return True


class Node:
    """A master's events, on a monotonic clock and a UNIX clock ``skew`` seconds off."""

    def __init__(self, name: str, skew: float, true_time: list[float], event: object) -> None:
        self.name = name
        self.skew = skew
        self.true_time = true_time
        self.events = EventSources(
            clock=lambda: self.true_time[0] - EPOCH,
            unix_clock=lambda: self.true_time[0] + self.skew,
            wall_clock=lambda: datetime.fromtimestamp(self.true_time[0] + self.skew),
        )
        self.events.add(event)  # type: ignore[arg-type]


def simulate(event: object, skews: dict[str, float], seconds: float, step: float = 0.05):
    """Run the nodes for ``seconds`` of true time: the slots each node fired, by slot."""
    true_time = [EPOCH]
    book = LeaseBook()
    nodes = [Node(name, skew, true_time, event) for name, skew in skews.items()]
    length = unique_length(event)  # type: ignore[arg-type]
    fired: dict[int, list[str]] = collections.defaultdict(list)
    while true_time[0] < EPOCH + seconds:
        true_time[0] += step
        book.now = true_time[0]
        for node in nodes:
            for signum in node.events.due():
                slot = slot_of(node.events.unix_clock(), length)
                key = SPEC.lease_key(signum, length, slot)
                if book.take(key, node.name, lease_ttl(length)):
                    fired[slot].append(node.name)
    return fired


@pytest.mark.parametrize(
    "skews",
    [
        {"a": 0.0, "b": 0.0, "c": 0.0},
        {"a": 0.0, "b": 0.4, "c": -0.3},  # less than half a period
        {"a": 0.0, "b": 7.0, "c": -12.5},  # many periods, less than a lease
    ],
)
def test_a_unique_timer_ticks_once_per_period_across_skewed_nodes(skews):
    fired = simulate(timer_event(9, 1.0, unique=True), skews, seconds=60)
    assert all(len(names) == 1 for names in fired.values()), fired
    slots = sorted(fired)
    assert len(slots) >= 60 - 13 - 1  # the skewed nodes name later or earlier periods
    assert slots == list(range(slots[0], slots[-1] + 1))  # none missed


def test_beyond_a_leases_life_a_skewed_node_fires_a_tick_again():
    skew = MIN_LEASE + 5
    fired = simulate(timer_event(9, 1.0, unique=True), {"a": 0.0, "late": -skew}, seconds=80)
    assert any(len(names) == 2 for names in fired.values())  # the documented bound


def test_unique_ticks_fall_in_the_middle_of_the_wall_clocks_periods():
    assert mid_period_offset(100.0, 1.0) == pytest.approx(0.5)
    assert mid_period_offset(100.7, 1.0) == pytest.approx(0.8)
    assert mid_period_offset(100.5, 1.0) == pytest.approx(1.0)  # the next middle, not now
    assert mid_period_offset(7.0, 10.0) == pytest.approx(8.0)


@pytest.mark.parametrize(
    "skews", [{"a": 0.0, "b": 0.0, "c": 0.0}, {"a": 0.0, "b": 20.0, "c": -9.0}]
)
def test_a_unique_cron_fires_once_per_matching_minute(skews):
    event = CronEvent(11, CronSpec.parse("*/2 * * * *"), unique=True)
    fired = simulate(event, skews, seconds=10 * 60 + 30, step=0.5)
    assert all(len(names) == 1 for names in fired.values()), fired
    minutes = sorted(fired)
    assert all(minute % 2 == 0 for minute in minutes)  # the spec's minutes only
    assert len(minutes) in (5, 6)


def test_a_tick_is_named_by_the_period_it_falls_in():
    assert slot_of(1000.5, 1.0) == 1000
    assert slot_of(1000.999, 1.0) == 1000
    assert slot_of(120.0, 60.0) == 2
    assert SPEC.lease_key(9, 1.0, 1000) == "uwsgisig:test:once:9:1:1000"
    assert SPEC.lease_key(11, 60.0, 2) == "uwsgisig:test:once:11:60:2"
    assert lease_ttl(1.0) == MIN_LEASE
    assert lease_ttl(60.0) == 180.0


class FakeClient:
    """Answers SET NX as a Redis that has the lease ``taken``."""

    def __init__(self, taken: bool) -> None:
        self.taken = taken
        self.sets: list[tuple[str, str, int]] = []

    def set(self, key: str, value: str, *, nx: bool, px: int) -> bool:
        assert nx
        self.sets.append((key, value, px))
        return not self.taken


def agent_with(client: FakeClient) -> tuple[Agent, socket.socket]:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return Agent(theirs, SPEC, "n1", client), mine


@pytest.mark.parametrize(("taken", "answer"), [(False, "won"), (True, "lost")])
def test_the_agent_leases_a_tick_and_says_whether_it_is_ours(taken, answer):
    client = FakeClient(taken)
    agent, master = agent_with(client)
    agent.on_message({"lease": 9, "length": 1.0, "slot": 1000, "at": time.time()})
    assert client.sets == [("uwsgisig:test:once:9:1:1000", "n1", int(MIN_LEASE * 1000))]
    assert json.loads(master.recv(100)) == {answer: 9}


def test_a_lease_asked_of_a_dead_agent_is_not_taken_late():
    client = FakeClient(False)
    agent, master = agent_with(client)
    agent.on_message({"lease": 9, "length": 1.0, "slot": 1000, "at": time.time() - 5})
    assert client.sets == []
    assert json.loads(master.recv(100)) == {"lost": 9}
