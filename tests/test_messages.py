"""Mule and farm messages between real forked processes."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest

from tests.conftest import wait_for
from uwsgisig import (
    Farm,
    MessageQueueFullError,
    MessageTooLargeError,
    Mule,
    NotInRuntimeError,
    TargetError,
)
from uwsgisig.runtime.ipc.messages import MAX_MESSAGE_SIZE, MessageQueue, PostOffice, as_message

pytestmark = pytest.mark.timeout(90)

DONE = 200  # no handler anywhere: the test waits for it


def test_ten_thousand_farm_messages_arrive_exactly_once_on_both_mules(start_app):
    app = start_app(
        """
        import time
        farm = Farm("pool", mules=[1, 2])
        seen = []

        @Mule.on_message
        def take(message):
            record("took", message.decode())
            # Stay busy a moment now and then, so the other mule gets a share.
            if int(message) % 500 == 0:
                time.sleep(0.01)

        @Signal(1).register_handler(target="worker1")
        def send(num):
            for i in range(10_000):
                farm.send(str(i))
            record("sent")
    """,
        workers=1,
    )
    app.handle.signal(1)
    took = app.wait_records("took", 10_000, timeout=60)
    numbers = Counter(words[1] for words in took)
    assert len(numbers) == 10_000
    assert set(numbers.values()) == {1}
    by_mule = Counter(words[2] for words in took)
    assert set(by_mule) == {"mule1", "mule2"}
    assert min(by_mule.values()) >= 100


def test_process_identity_in_workers_and_mules(start_app):
    app = start_app(
        """
        Farm("pool", mules=[1, 2])
        Mule(3)

        def report(num):
            record(
                "id",
                lowlevel.mule_id(),
                lowlevel.worker_id(),
                lowlevel.in_farm(),
                lowlevel.in_farm("pool"),
                lowlevel.in_farm("other"),
                Farm("pool").is_mine,
                Mule.get_current_id(),
            )

        Signal(1).register_handler(target="mules")(report)
        Signal(2).register_handler(target="workers")(report)
    """,
        workers=2,
    )
    app.handle.signal(1)
    app.handle.signal(2)
    lines = {words[-2]: words[1:-2] for words in app.wait_records("id", 5)}
    assert lines == {
        "mule1": ["1", "0", "True", "True", "False", "True", "1"],
        "mule2": ["2", "0", "True", "True", "False", "True", "2"],
        "mule3": ["3", "0", "False", "False", "False", "False", "3"],
        "worker1": ["0", "1", "False", "False", "False", "False", "0"],
        "worker2": ["0", "2", "False", "False", "False", "False", "0"],
    }


def test_a_message_to_a_mule_goes_to_that_mule_and_text_is_utf8(start_app):
    app = start_app(
        """
        Mule(3)

        @Mule.on_message
        def take(message):
            record("took", "h" + message.hex())

        @Signal(1).register_handler(target="worker1")
        def send(num):
            Mule(2).send("żółw")
            Mule(2).send(b"\\x00\\xff")
            lowlevel.mule_msg(b"", 3)
            lowlevel.mule_msg("any")  # the first free mule
    """,
        workers=1,
    )
    app.handle.signal(1)
    took = Counter((words[1], words[2]) for words in app.wait_records("took", 4))
    anywhere = [who for (message, who) in took if message == "h" + b"any".hex()]
    assert len(anywhere) == 1
    assert anywhere[0] in {"mule1", "mule2", "mule3"}
    del took[("h" + b"any".hex(), anywhere[0])]
    assert took == Counter(
        {("h" + "żółw".encode().hex(), "mule2"): 1, ("h00ff", "mule2"): 1, ("h", "mule3"): 1}
    )


def test_programmed_mule_gets_messages_and_still_runs_signal_handlers(start_app):
    app = start_app(
        """
        def main():
            record("started")
            while True:
                message = Mule.get_message(timeout=30)
                record("got", message.decode())

        Mule(1, loop=main)

        @Signal(5).register_handler(target="mule1")
        def meanwhile(num):
            record("signal", num)
            Signal(201).send()

        @Signal(1).register_handler(target="worker1")
        def send(num):
            Mule(1).send("after-signal")
    """,
        workers=1,
    )
    app.wait_records("started", 1)
    app.handle.signal(5)
    assert app.handle.wait(201, timeout=10) == 201
    app.handle.signal(1)
    got = app.wait_records("got", 1)
    assert got[0][1:3] == ["after-signal", "mule1"]
    assert app.records("signal")[0][1:3] == ["5", "mule1"]


def test_get_message_returns_none_after_its_timeout(start_app):
    app = start_app(
        """
        import time

        def main():
            started = time.monotonic()
            message = Mule.get_message(timeout=0.3)
            record("waited", message, round(time.monotonic() - started, 1))
            Farm.get_message(timeout=0.1)
            record("farm-waited")
            while True:
                Mule.get_message()

        Farm("pool", mules=[1])
        Mule(1, loop=main)
    """,
        workers=1,
    )
    waited = app.wait_records("waited", 1)[0]
    assert waited[1] == "None"
    assert float(waited[2]) >= 0.3  # it waited its whole timeout
    app.wait_records("farm-waited", 1)


def test_farm_get_message_takes_farm_messages_only(start_app):
    app = start_app(
        """
        farm = Farm("pool", mules=[1])

        def main():
            record("farm", Farm.get_message(timeout=30).decode())
            record("mule", Mule.get_message(timeout=30).decode())
            while True:
                Mule.get_message()

        Mule(1, loop=main)

        @Signal(1).register_handler(target="worker1")
        def send(num):
            Mule(1).send("to-mule")
            farm.send("to-farm")
    """,
        workers=1,
    )
    app.handle.signal(1)
    assert app.wait_records("farm", 1)[0][1] == "to-farm"
    assert app.wait_records("mule", 1)[0][1] == "to-mule"


def test_too_large_message_is_refused_and_nothing_queued_is_lost(start_app):
    app = start_app(
        f"""
        from uwsgisig import MessageTooLargeError

        @Mule.on_message
        def take(message):
            record("took", len(message))

        @Signal(1).register_handler(target="worker1")
        def send(num):
            Mule(1).send(b"a" * 10)
            try:
                Mule(1).send(b"a" * ({MAX_MESSAGE_SIZE} + 1))
            except MessageTooLargeError as exc:
                record("refused", exc.size, exc.limit)
            Mule(1).send(b"a" * {MAX_MESSAGE_SIZE})
    """,
        workers=1,
        mules=1,
    )
    app.handle.signal(1)
    assert app.wait_records("refused", 1)[0][1:3] == [
        str(MAX_MESSAGE_SIZE + 1),
        str(MAX_MESSAGE_SIZE),
    ]
    took = app.wait_records("took", 2)
    assert [words[1] for words in took] == ["10", str(MAX_MESSAGE_SIZE)]


def test_full_queue_makes_the_sender_wait_then_raise_and_loses_nothing(start_app):
    app = start_app(
        """
        from uwsgisig import MessageQueueFullError

        @Signal(3).register_handler(target="mule1")
        def park(num):
            record("parked")
            block()

        @Mule.on_message
        def take(message):
            record("took", message.decode())

        @Signal(1).register_handler(target="worker1")
        def fill(num):
            sent = 0
            try:
                while True:
                    Mule(1).send(f"{sent:08d}" + "x" * 4000, timeout=0.2)
                    sent += 1
            except MessageQueueFullError as exc:
                record("full", sent, "stayed-full" in str(exc).replace(" ", "-"))
    """,
        workers=1,
        mules=1,
    )
    app.handle.signal(3)
    app.wait_records("parked", 1)
    app.handle.signal(1)
    full = app.wait_records("full", 1, timeout=30)[0]
    sent = int(full[1])
    assert sent > 0
    assert full[2] == "True"
    app.release()
    took = app.wait_records("took", sent, timeout=30)
    assert [int(words[1][:8]) for words in took] == list(range(sent))


def test_bad_targets_are_refused_with_the_allowed_values(start_app):
    app = start_app(
        """
        from uwsgisig import TargetError

        Farm("pool", mules=[1, 2])

        @Signal(1).register_handler(target="worker1")
        def send(num):
            for bad in (lambda: Mule(3).send("x"), lambda: lowlevel.mule_msg("x", 7),
                        lambda: Farm("nope").send("x"), lambda: lowlevel.farm_msg("other", "x")):
                try:
                    bad()
                except TargetError as exc:
                    record("refused", str(exc).replace(" ", "_"))
    """,
        workers=1,
    )
    app.handle.signal(1)
    refused = [words[1].replace("_", " ") for words in app.wait_records("refused", 4)]
    assert "invalid mule id 3: this runtime has mules 1 to 2" in refused[0]
    assert "invalid mule id 7" in refused[1]
    assert "unknown farm 'nope': this runtime's farms are ['pool']" in refused[2]
    assert "unknown farm 'other'" in refused[3]


def test_a_mule_killed_while_holding_a_message_loses_only_that_message(start_app):
    app = start_app(
        """
        def main():
            while True:
                message = Mule.get_message().decode()
                record("took", message)
                if message == "hold":
                    block()

        Mule(1, loop=main)

        @Signal(1).register_handler(target="worker1")
        def send_hold(num):
            Mule(1).send("hold")

        @Signal(2).register_handler(target="worker1")
        def send_rest(num):
            for i in range(5):
                Mule(1).send(f"m{i}")
            record("sent")
    """,
        workers=1,
    )
    app.handle.signal(1)
    holder = int(app.wait_records("took", 1)[0][-1])
    app.handle.signal(2)
    app.wait_records("sent", 1)
    os.kill(holder, signal.SIGKILL)
    took = app.wait_records("took", 6, timeout=20)
    assert [words[1] for words in took] == ["hold", "m0", "m1", "m2", "m3", "m4"]
    assert all(int(words[-1]) != holder for words in took[1:])
    wait_for(lambda: "exited with signal SIGKILL" in app.log.read_text(), what="the reap log")


def test_sending_outside_a_runtime_is_an_error():
    with pytest.raises(NotInRuntimeError, match="messages are sent from a worker"):
        Mule(1).send("x")
    with pytest.raises(NotInRuntimeError, match="farm message"):
        Farm("pool").send("x")
    with pytest.raises(NotInRuntimeError, match="only in a mule"):
        Mule.get_message(timeout=0)
    with pytest.raises(NotInRuntimeError, match="only in a mule"):
        Farm.get_message(timeout=0)


def test_message_checks_before_anything_is_sent():
    assert as_message("é") == "é".encode()
    assert as_message(bytearray(b"ab")) == b"ab"
    assert len(as_message(b"x" * MAX_MESSAGE_SIZE)) == MAX_MESSAGE_SIZE
    with pytest.raises(MessageTooLargeError, match="65537 bytes is too large: the limit is 65536"):
        as_message(b"x" * (MAX_MESSAGE_SIZE + 1))
    with pytest.raises(TypeError, match="bytes or str, not int"):
        as_message(5)  # type: ignore[arg-type]
    with pytest.raises(MessageTooLargeError):
        Mule(1).send("x" * (MAX_MESSAGE_SIZE + 1))  # checked before the runtime is


def test_post_office_names_what_exists():
    post = PostOffice(2, {"pool": (1, 2)})
    try:
        assert post.to_mule(0) is post.shared
        assert post.to_mule(2) is post.mules[1]
        assert post.to_farm("pool") is post.farms["pool"]
        with pytest.raises(TargetError, match="mules 1 to 2"):
            post.to_mule(3)
        with pytest.raises(TargetError, match="give a mule id"):
            post.to_mule("1")  # type: ignore[arg-type]
        with pytest.raises(TargetError, match="farms are \\['pool'\\]"):
            post.to_farm("other")
    finally:
        for queue in post.all_queues():
            queue.write_end.close()
            queue.read_end.close()
    with pytest.raises(TargetError, match="has no mules"):
        PostOffice(0, {}).to_mule(1)


def queue_is_full(queue: MessageQueue, number: int) -> bool:
    try:
        queue.put(number.to_bytes(4, "little") * 1024, timeout=0.05)
    except MessageQueueFullError:
        return True
    return False


def test_queue_full_raises_after_the_timeout_and_keeps_every_queued_message():
    queue = MessageQueue("mule 1")
    sent = 0
    try:
        while not queue_is_full(queue, sent):
            sent += 1
        with pytest.raises(MessageQueueFullError, match="to mule 1 was not sent"):
            queue.put(b"one more", timeout=0.05)
        received = []
        while (message := queue.take()) is not None:
            received.append(int.from_bytes(message[:4], "little"))
        assert received == list(range(sent))
    finally:
        queue.write_end.close()
        queue.read_end.close()
