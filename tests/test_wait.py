"""wait(), unregistered signals, registration after fork, and the no-loss promise."""

from __future__ import annotations

from collections import Counter

import pytest

pytestmark = pytest.mark.timeout(60)

DONE = 200


def test_unregistered_signal_goes_to_the_waiting_process(start_app):
    app = start_app(
        """
        @Signal(1).register_handler(target="worker2")
        def waiter(num):
            # Not an unregistered signal: this process's own wait would take it.
            record("waiting")
            got = lowlevel.signal_wait(timeout=10)
            record("woke", got, lowlevel.signal_received())
            Signal(200).send()
    """,
        workers=2,
    )
    app.handle.signal(1)
    app.wait_records("waiting", 1)
    app.handle.signal(77)
    app.handle.wait(DONE, timeout=10)
    assert [words[1:4] for words in app.records("woke")] == [["77", "77", "worker2"]]


def test_unregistered_signal_wakes_exactly_one_waiter(start_app):
    app = start_app(
        """
        @Signal(1).register_handler(target="workers")
        def waiter(num):
            Signal(201).send()
            try:
                got = lowlevel.signal_wait(77, timeout=3)
            except TimeoutError:
                got = "timeout"
            record("woke", got)
            Signal(200).send()
    """,
        workers=2,
    )
    app.handle.signal(1)
    app.handle.wait(201, timeout=10)
    app.handle.wait(201, timeout=10)
    app.handle.signal(77)
    app.handle.wait(DONE, timeout=10)
    app.handle.wait(DONE, timeout=10)
    assert sorted(words[1] for words in app.records("woke")) == ["77", "timeout"]


def test_unclaimed_signal_waits_in_the_master_until_someone_waits(start_app):
    app = start_app("""
    """)
    app.handle.signal(90)
    app.handle.signal(91)
    assert app.handle.wait(timeout=10) == 90
    assert app.handle.wait(timeout=10) == 91


@pytest.mark.parametrize("role", ["worker", "mule"])
def test_wait_sees_only_signals_routed_to_it(start_app, role):
    # As uWSGI's signal_wait(): a registered signal runs on its target, and a
    # process waiting for that number elsewhere keeps waiting.
    app = start_app(
        f"""
        @Signal(40).register_handler(target="{role}2")
        def elsewhere(num):
            record("ran", num)
            Signal(202).send()

        @Signal(1).register_handler(target="{role}1")
        def waiter(num):
            try:
                got = Signal(40).wait(timeout=2)
            except TimeoutError:
                got = "timeout"
            record("woke", got)
            Signal(200).send()

        @Signal(6).register_handler(target="{role}1")
        def inside_the_wait(num):
            Signal(201).send()
    """,
        **({"workers": 2} if role == "worker" else {"mules": 2}),
    )
    app.handle.signal(1)
    app.handle.signal(6)  # behind signal 1 on the waiter's socket: runs inside its wait
    app.handle.wait(201, timeout=10)
    app.handle.signal(40)
    app.handle.wait(202, timeout=10)
    app.handle.wait(DONE, timeout=10)
    assert [words[1:3] for words in app.records("ran")] == [["40", f"{role}2"]]
    assert [words[1:3] for words in app.records("woke")] == [["timeout", f"{role}1"]]


def test_workers_signal_runs_on_every_worker_and_ends_a_wait_for_it(start_app):
    app = start_app(
        """
        @Signal(41).register_handler(target="workers")
        def everyone(num):
            record("ran", num)
            Signal(202).send()

        @Signal(1).register_handler(target="worker1")
        def waiter(num):
            got = Signal(41).wait(timeout=10)
            record("woke", got)
            Signal(200).send()

        @Signal(6).register_handler(target="worker1")
        def inside_the_wait(num):
            Signal(201).send()
    """,
        workers=3,
    )
    app.handle.signal(1)
    app.handle.signal(6)
    app.handle.wait(201, timeout=10)
    app.handle.signal(41)
    for _ in range(3):
        app.handle.wait(202, timeout=10)
    app.handle.wait(DONE, timeout=10)
    assert sorted(words[2] for words in app.records("ran")) == ["worker1", "worker2", "worker3"]
    assert [words[1:3] for words in app.records("woke")] == [["41", "worker1"]]


def test_unregistered_signal_never_answers_a_waiting_mule(start_app):
    app = start_app(
        """
        @Signal(1).register_handler(target="mule1")
        def waiter(num):
            try:
                got = lowlevel.signal_wait(timeout=2)
            except TimeoutError:
                got = "timeout"
            record("woke", got)
            Signal(200).send()

        @Signal(6).register_handler(target="mule1")
        def inside_the_wait(num):
            Signal(201).send()
    """,
        mules=1,
    )
    app.handle.signal(1)
    app.handle.signal(6)
    app.handle.wait(201, timeout=10)
    app.handle.signal(77)  # no handler: for the worker pool, held until one waits
    app.handle.wait(DONE, timeout=10)
    # The mule's bare wait() ran signal 6's handler and returned 6: never 77.
    assert [words[1:3] for words in app.records("woke")] == [["6", "mule1"]]
    assert app.handle.wait(77, timeout=10) == 77


def test_wait_runs_registered_handlers_meanwhile_and_keeps_waiting(start_app):
    app = start_app(
        """
        @Signal(6).register_handler(target="worker1")
        def other(num):
            record("other", num)
            Signal(202).send()

        @Signal(1).register_handler(target="worker1")
        def waiter(num):
            Signal(201).send()
            got = lowlevel.signal_wait(88, timeout=10)
            record("woke", got)
            Signal(200).send()
    """,
        workers=1,
    )
    app.handle.signal(1)
    app.handle.wait(201, timeout=10)
    app.handle.signal(6)
    app.handle.wait(202, timeout=10)
    app.handle.signal(88)
    app.handle.wait(DONE, timeout=10)
    assert [words[:2] for words in app.records("other")] == [["other", "6"]]
    assert [words[1] for words in app.records("woke")] == ["88"]


def test_wait_times_out_with_timeout_error_and_loses_nothing(start_app):
    app = start_app("""
        @Signal(1).register_handler(target="worker1")
        def waiter(num):
            try:
                lowlevel.signal_wait(99, timeout=0.2)
            except TimeoutError as exc:
                record("timeout", type(exc).__name__)
            Signal(200).send()
    """)
    app.handle.signal(1)
    app.handle.wait(DONE, timeout=10)
    assert app.records("timeout")[0][1] == "TimeoutError"
    # The worker no longer waits: a later 99 stays for whoever waits next.
    app.handle.signal(99)
    assert app.handle.wait(99, timeout=10) == 99


def test_controller_wait_times_out():
    from uwsgisig import Runtime

    with Runtime(None).start() as handle, pytest.raises(TimeoutError, match="signal 33"):
        handle.wait(33, timeout=0.1)


def test_handler_registered_after_fork_runs_only_where_it_was_registered(start_app):
    app = start_app(
        """
        @uwsgisig.postfork
        def late():
            if uwsgisig.worker_id() == 2:
                def handler(num):
                    record("late", num)
                    Signal(200).send()
                lowlevel.register_signal(30, "worker", handler)
                Signal(201).send()
    """,
        workers=2,
    )
    app.handle.wait(201, timeout=10)
    for _ in range(6):
        app.handle.signal(30)
    for _ in range(6):
        app.handle.wait(DONE, timeout=10)
    assert Counter(words[-2] for words in app.records("late")) == Counter({"worker2": 6})


def test_registering_after_fork_a_number_taken_elsewhere_raises(start_app):
    app = start_app(
        """
        @uwsgisig.postfork
        def late():
            try:
                lowlevel.register_signal(31, "worker", print)
            except ValueError as exc:
                record("refused", type(exc).__name__)
            else:
                record("accepted")
    """,
        workers=2,
    )
    lines = app.wait_records("refused", 1) and app.wait_records("accepted", 1)
    assert len(lines) == 1
    assert [words[1] for words in app.records("refused")] == ["SignalAlreadyRegisteredError"]


def test_registering_after_fork_for_a_missing_mule_raises(start_app):
    app = start_app(
        """
        @uwsgisig.postfork
        def late():
            try:
                lowlevel.register_signal(32, "mule3", print)
            except ValueError as exc:
                record("refused", str(exc).replace(" ", "_"))
    """,
        workers=1,
    )
    refused = app.wait_records("refused", 1)
    assert "mule3" in refused[0][1]


def test_burst_of_20000_loses_nothing(start_app):
    app = start_app(
        """
        import collections
        counts = collections.Counter()

        @Signal(1).register_handler(target="worker1")
        def burst(num):
            for _ in range(20000):
                Signal(2).send()
            Signal(201).send()

        @Signal(2).register_handler(target="worker")
        def count(num):
            counts[num] += 1

        @Signal(4).register_handler(target="workers")
        def report(num):
            record("count", counts[2])
            Signal(200).send()
    """,
        workers=2,
    )
    app.handle.signal(1)
    app.handle.wait(201, timeout=30)

    # Every signal is in the master now; the workers may still be draining them.
    # Ask both for their counts until they add up, then once more: nothing extra.
    def total() -> int:
        before = len(app.records("count"))
        app.handle.signal(4)
        app.handle.wait(DONE, timeout=30)
        app.handle.wait(DONE, timeout=30)
        return sum(int(words[1]) for words in app.records("count")[before:])

    rounds = [total()]
    while rounds[-1] < 20000:
        assert len(rounds) < 1000, f"the counts stopped short: {rounds[-5:]}"
        rounds.append(total())
    rounds.append(total())
    assert rounds[-1] == 20000


def test_full_queue_makes_send_raise_and_keeps_what_was_queued(start_app):
    app = start_app(
        """
        @Signal(2).register_handler(target="worker2")
        def park(num):
            record("parked", num)
            block()

        @Signal(50).register_handler(target="worker2")
        def queued(num):
            record("got", num)

        @Signal(1).register_handler(target="worker1")
        def flood(num):
            sent = 0
            try:
                while True:
                    Signal(50).send()  # worker 2 is parked: each one stays queued
                    sent += 1
            except uwsgisig.SignalQueueFullError as exc:
                record("full", sent, str(exc).split(":")[0].replace(" ", "_"))

        @Signal(3).register_handler(target="worker1")
        def send_again(num):
            Signal(202).send()
    """,
        workers=2,
        queue_size=100,
        send_timeout=0.5,
    )
    app.handle.signal(2)
    app.wait_records("parked", 1)
    app.handle.signal(1)
    full = app.wait_records("full", 1, timeout=20)
    sent = int(full[0][1])
    assert full[0][2] == "signal_50_was_not_sent"
    assert sent >= 100
    assert app.records("got") == []
    # Every signal the flood queued is delivered once worker 2 is free again.
    app.release()
    app.wait_records("got", sent, timeout=30)
    app.handle.signal(3)  # once drained, the master grants credit again
    assert app.handle.wait(202, timeout=10) == 202
    assert len(app.records("got")) == sent
