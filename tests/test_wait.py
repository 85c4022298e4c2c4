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


def test_wait_for_a_specific_number_gets_it_even_if_registered(start_app):
    app = start_app(
        """
        @Signal(5).register_handler(target="mule1")
        def on_mule(num):
            record("mule-ran", num)

        @Signal(1).register_handler(target="worker1")
        def waiter(num):
            got = Signal(5).wait(timeout=10)
            record("woke", got)
            Signal(200).send()

        @Signal(6).register_handler(target="worker1")
        def waiting(num):
            # Runs inside the wait: the master has the WAIT frame before this one.
            Signal(201).send()
    """,
        workers=1,
        mules=1,
    )
    app.handle.signal(1)
    app.handle.signal(6)  # behind signal 1 on worker 1's socket
    app.handle.wait(201, timeout=10)
    app.handle.signal(5)
    app.handle.wait(DONE, timeout=10)
    assert [words[1:3] for words in app.records("woke")] == [["5", "worker1"]]
    # As uWSGI's signal_wait() does, the waiter runs the handler itself; mule1 never sees it.
    assert [words[-2] for words in app.records("mule-ran")] == ["worker1"]


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
        @Signal(1).register_handler(target="worker1")
        def flood(num):
            sent = 0
            try:
                while True:
                    Signal(50).send()  # nobody waits: each one stays in the master
                    sent += 1
            except uwsgisig.SignalQueueFullError as exc:
                record("full", sent, str(exc).split(":")[0].replace(" ", "_"))

        @Signal(2).register_handler(target="worker1")
        def send_again(num):
            Signal(201).send()
    """,
        queue_size=100,
        send_timeout=0.5,
    )
    app.handle.signal(1)
    full = app.wait_records("full", 1, timeout=20)
    sent = int(full[0][1])
    assert full[0][2] == "signal_50_was_not_sent"
    assert sent >= 100
    # Every signal the flood queued is delivered: the first waiter takes them in order.
    for _ in range(sent):
        assert app.handle.wait(50, timeout=10) == 50
    with pytest.raises(TimeoutError):
        app.handle.wait(50, timeout=0.2)
    # Once drained, the master grants credit again: the same worker can send.
    app.handle.signal(2)
    assert app.handle.wait(201, timeout=10) == 201
