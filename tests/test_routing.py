"""Every target of seeds 000/001 routes to the processes it names (real forked processes)."""

from __future__ import annotations

from collections import Counter

import pytest

pytestmark = pytest.mark.timeout(60)

DONE = 200  # no handler anywhere: the test waits for it


def who_ran(app, word: str) -> Counter[str]:
    return Counter(words[-2] for words in app.records(word))


def test_worker_target_runs_once_on_some_worker(start_app):
    app = start_app(
        """
        @Signal(1).register_handler(target="worker")
        def handler(num):
            record("ran", num)
            Signal(200).send()
    """,
        workers=2,
    )
    for _ in range(6):
        app.handle.signal(1)
    for _ in range(6):
        assert app.handle.wait(DONE, timeout=10) == DONE
    ran = app.records("ran")
    assert len(ran) == 6
    workers = app.pids_by_who()
    # Each run is on a live worker, named by the pid that process really has.
    assert {(words[-2], int(words[-1])) for words in ran} <= {
        ("worker1", workers["worker1"]),
        ("worker2", workers["worker2"]),
    }


def test_worker_target_skips_a_busy_worker(start_app):
    app = start_app(
        """
        @Signal(1).register_handler(target="worker1")
        def park(num):
            record("parked", num)
            Signal(201).send()
            block()
            record("unparked", num)

        @Signal(2).register_handler(target="worker")
        def work(num):
            record("work", num)
            Signal(200).send()
    """,
        workers=2,
    )
    app.handle.signal(1)
    assert app.handle.wait(201, timeout=10) == 201
    for _ in range(10):
        app.handle.signal(2)
    for _ in range(10):
        app.handle.wait(DONE, timeout=10)
    assert who_ran(app, "work") == Counter({"worker2": 10})
    app.release()
    app.wait_records("unparked", 1)


def test_workers_target_runs_on_every_worker(start_app):
    app = start_app(
        """
        @Signal(3).register_handler(target="workers")
        def handler(num):
            record("ran", num)
            Signal(200).send()
    """,
        workers=3,
    )
    app.handle.signal(3)
    for _ in range(3):
        app.handle.wait(DONE, timeout=10)
    pids = app.pids_by_who()
    ran = app.records("ran")
    assert sorted(words[-2] for words in ran) == ["worker1", "worker2", "worker3"]
    assert {int(words[-1]) for words in ran} == {pids["worker1"], pids["worker2"], pids["worker3"]}


@pytest.mark.parametrize("n", [1, 2])
def test_worker_n_target_runs_only_on_worker_n(start_app, n):
    app = start_app(
        f"""
        @Signal(4).register_handler(target="worker{n}")
        def handler(num):
            record("ran", num)
            Signal(200).send()
    """,
        workers=2,
    )
    for _ in range(5):
        app.handle.signal(4)
    for _ in range(5):
        app.handle.wait(DONE, timeout=10)
    assert who_ran(app, "ran") == Counter({f"worker{n}": 5})
    assert {int(w[-1]) for w in app.records("ran")} == {app.pids_by_who()[f"worker{n}"]}


def test_worker0_is_the_first_available_worker(start_app):
    app = start_app(
        """
        @Signal(1).register_handler(target="worker2")
        def park(num):
            record("parked", num)
            block()

        @Signal(4).register_handler(target="worker0")
        def handler(num):
            record("ran", num)
            Signal(200).send()
    """,
        workers=2,
    )
    app.handle.signal(1)
    app.wait_records("parked", 1)
    for _ in range(5):
        app.handle.signal(4)
    for _ in range(5):
        app.handle.wait(DONE, timeout=10)
    assert who_ran(app, "ran") == Counter({"worker1": 5})  # worker 2 is busy: it takes none
    app.release()


def test_active_workers_runs_on_every_ready_worker(start_app):
    app = start_app(
        """
        @Signal(5).register_handler(target="active-workers")
        def handler(num):
            record("ran", num)
            Signal(200).send()
    """,
        workers=2,
    )
    app.handle.signal(5)
    app.handle.wait(DONE, timeout=10)
    app.handle.wait(DONE, timeout=10)
    assert who_ran(app, "ran") == Counter({"worker1": 1, "worker2": 1})


@pytest.mark.parametrize("target", ["mule", "mule0"])
def test_mule_target_runs_on_a_mule_never_a_worker(start_app, target):
    app = start_app(
        f'''
        @Signal(6).register_handler(target="{target}")
        def handler(num):
            record("ran", num)
            Signal(200).send()
    ''',
        workers=2,
        mules=2,
    )
    for _ in range(6):
        app.handle.signal(6)
    for _ in range(6):
        app.handle.wait(DONE, timeout=10)
    ran = who_ran(app, "ran")
    assert sum(ran.values()) == 6
    assert set(ran) <= {"mule1", "mule2"}


def test_mule_target_skips_a_busy_mule(start_app):
    app = start_app(
        """
        @Signal(1).register_handler(target="mule1")
        def park(num):
            Signal(201).send()
            block()

        @Signal(6).register_handler(target="mule")
        def handler(num):
            record("ran", num)
            Signal(200).send()
    """,
        mules=2,
    )
    app.handle.signal(1)
    app.handle.wait(201, timeout=10)
    for _ in range(5):
        app.handle.signal(6)
    for _ in range(5):
        app.handle.wait(DONE, timeout=10)
    assert who_ran(app, "ran") == Counter({"mule2": 5})
    app.release()


def test_mules_target_runs_on_every_mule(start_app):
    app = start_app(
        """
        @Signal(7).register_handler(target="mules")
        def handler(num):
            record("ran", num)
            Signal(200).send()
    """,
        workers=1,
        mules=3,
    )
    app.handle.signal(7)
    for _ in range(3):
        app.handle.wait(DONE, timeout=10)
    assert who_ran(app, "ran") == Counter({"mule1": 1, "mule2": 1, "mule3": 1})


def test_mule_n_and_mule_object_targets(start_app):
    app = start_app("""
        second = Mule(2)

        @Signal(8).register_handler(target="mule1")
        def first(num):
            record("first", num)
            Signal(200).send()

        @Signal(9).register_handler(target=second)
        def by_object(num):
            record("second", num)
            Signal(200).send()
    """)
    for _ in range(3):
        app.handle.signal(8)
        app.handle.signal(9)
    for _ in range(6):
        app.handle.wait(DONE, timeout=10)
    assert who_ran(app, "first") == Counter({"mule1": 3})
    assert who_ran(app, "second") == Counter({"mule2": 3})


def test_farm_targets_run_on_one_mule_of_that_farm(start_app):
    app = start_app(
        """
        Mule(1)
        images = Farm("images", mules=[2, 3])
        Farm("mail", mules=[1])

        @Signal(10).register_handler(target="farm_images")
        def by_name(num):
            record("name", num)
            Signal(200).send()

        @Signal(11).register_handler(target="farm2")
        def by_position(num):
            record("position", num)
            Signal(200).send()

        @Signal(12).register_handler(target=images)
        def by_object(num):
            record("object", num)
            Signal(200).send()
    """,
        workers=1,
    )
    for _ in range(8):
        for num in (10, 11, 12):
            app.handle.signal(num)
    for _ in range(24):
        app.handle.wait(DONE, timeout=10)
    assert set(who_ran(app, "name")) <= {"mule2", "mule3"}
    assert sum(who_ran(app, "name").values()) == 8
    assert who_ran(app, "position") == Counter({"mule1": 8})  # farm2 is "mail"
    assert set(who_ran(app, "object")) <= {"mule2", "mule3"}
    assert sum(who_ran(app, "object").values()) == 8


def test_farm_from_the_command_line_options(start_app):
    app = start_app(
        """
        @Signal(10).register_handler(target=Farm("cli"))
        def handler(num):
            record("ran", num, lowlevel.in_farm("cli"), lowlevel.in_farm())
            Signal(200).send()
    """,
        mules=2,
        farms=["cli:2"],
    )
    for _ in range(3):
        app.handle.signal(10)
    for _ in range(3):
        app.handle.wait(DONE, timeout=10)
    assert {tuple(words[2:5]) for words in app.records("ran")} == {("True", "True", "mule2")}


def test_spooler_target_runs_on_the_spooler(start_app):
    app = start_app(
        """
        @Signal(13).register_handler(target="spooler")
        def handler(num):
            record("ran", num)
            Signal(200).send()
    """,
        workers=2,
        spooler=True,
    )
    app.handle.signal(13)
    app.handle.wait(DONE, timeout=10)
    assert who_ran(app, "ran") == Counter({"spooler": 1})
    assert int(app.records("ran")[0][-1]) == app.pids_by_who()["spooler"]


def test_signal_sent_by_a_worker_reaches_a_mule(start_app):
    app = start_app(
        """
        @Signal(14).register_handler(target="worker1")
        def relay(num):
            Signal(15).send()

        @Signal(15).register_handler(target="mules")
        def handler(num):
            record("ran", num)
            Signal(200).send()
    """,
        workers=2,
        mules=2,
    )
    app.handle.signal(14)
    app.handle.wait(DONE, timeout=10)
    app.handle.wait(DONE, timeout=10)
    assert who_ran(app, "ran") == Counter({"mule1": 1, "mule2": 1})


def test_handler_is_called_with_the_signal_number(start_app):
    app = start_app("""
        @Signal(42)
        def handler(num):
            record("got", num, type(num).__name__)
            Signal(200).send()
    """)
    app.handle.signal(42)
    app.handle.wait(DONE, timeout=10)
    assert app.records("got")[0][1:3] == ["42", "int"]


def test_signal_raised_by_the_app_at_import_is_delivered(start_app):
    app = start_app("""
        @Signal(16).register_handler(target="worker")
        def handler(num):
            record("ran", num)
            Signal(200).send()

        Signal(16).send()
    """)
    app.handle.wait(DONE, timeout=10)
    assert len(app.records("ran")) == 1


def test_ids_are_right_in_each_process(start_app):
    app = start_app(
        """
        @uwsgisig.postfork
        def report():
            record("ids", uwsgisig.worker_id(), uwsgisig.mule_id(), uwsgisig.masterpid(),
                   lowlevel.numproc())
    """,
        workers=2,
        mules=1,
    )
    lines = app.wait_records("ids", 3)
    master = app.pids_by_who()["master"]
    assert sorted(tuple(words[1:5]) for words in lines) == [
        ("0", "1", str(master), "2"),
        ("1", "0", str(master), "2"),
        ("2", "0", str(master), "2"),
    ]


def test_postfork_hook_runs_in_every_child_before_signals(start_app):
    app = start_app(
        """
        state = {"forked": False}

        @uwsgisig.postfork
        def after_fork():
            state["forked"] = True
            record("hook")

        @Signal(17).register_handler(target="workers")
        def handler(num):
            record("ran", state["forked"])
            Signal(200).send()
    """,
        workers=2,
        mules=1,
    )
    app.handle.signal(17)
    app.handle.wait(DONE, timeout=10)
    app.handle.wait(DONE, timeout=10)
    assert Counter(words[-2] for words in app.records("hook")) == Counter(
        {"worker1": 1, "worker2": 1, "mule1": 1}
    )
    assert {words[1] for words in app.records("ran")} == {"True"}
