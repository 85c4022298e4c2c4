"""The Signal API in one process: numbers, registration, descriptions, bad input."""

from __future__ import annotations

import pytest

import uwsgisig
from uwsgisig import (
    REGISTERED_SIGNALS,
    Farm,
    Mule,
    NoSignalAvailableError,
    NotInRuntimeError,
    Signal,
    SignalAlreadyRegisteredError,
    SignalDescription,
    SignalNumberError,
    TargetError,
    UwsgisigError,
    get_available_num,
    get_last_received,
    lowlevel,
)

pytestmark = pytest.mark.timeout(30)


def handler(num: int) -> None:
    pass


def test_signal_without_a_number_takes_the_lowest_free_one():
    lowlevel.register_signal(0, "worker", handler)
    first, second = Signal(), Signal()
    assert (int(first), int(second)) == (1, 2)
    assert get_available_num() == 3


def test_signal_number_is_usable_as_an_int():
    sig = Signal(42)
    assert int(sig) == 42
    assert [10, 20, 30, 40, 50][Signal(3)] == 40  # __index__
    assert sig == Signal(42)
    assert repr(sig) == "Signal(42)"


@pytest.mark.parametrize("bad", [-1, 256, 1000, "1", 1.0, None.__class__, True])
def test_bad_signal_number_is_refused_with_its_value_and_the_range(bad):
    with pytest.raises(SignalNumberError) as info:
        Signal(bad)
    assert repr(bad) in str(info.value)
    assert "0 to 255" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, UwsgisigError)


def test_all_256_numbers_taken_raises_no_signal_available():
    taken = [Signal() for _ in range(256)]
    assert sorted(int(s) for s in taken) == list(range(256))
    with pytest.raises(NoSignalAvailableError, match="0-255"):
        Signal()
    with pytest.raises(NoSignalAvailableError):
        get_available_num()


def test_register_handler_records_a_description_and_calls_the_callback():
    called = []
    sig = Signal(7)

    @sig.register_handler(target="mules", callback=called.append)
    def on_seven(num: int) -> None:
        pass

    assert called == [sig]
    assert sig.registered()
    assert lowlevel.signal_registered(7)
    assert REGISTERED_SIGNALS[7] == SignalDescription(7, "mules", on_seven)
    assert REGISTERED_SIGNALS[7].func is on_seven


def test_bare_decorator_registers_for_the_first_free_worker():
    sig = Signal(8)

    @sig
    def on_eight(num: int) -> None:
        pass

    assert REGISTERED_SIGNALS[8].target == "worker"
    assert on_eight.__name__ == "on_eight"  # the decorator returns the function itself


def test_unregistered_signal_is_not_registered():
    assert not Signal(9).registered()
    assert 9 not in REGISTERED_SIGNALS


def test_registering_a_number_twice_raises_and_keeps_the_first():
    sig = Signal(10)
    sig.register_handler()(handler)
    with pytest.raises(SignalAlreadyRegisteredError, match="signal 10"):
        sig.register_handler(target="workers")(print)
    assert REGISTERED_SIGNALS[10].func is handler
    assert REGISTERED_SIGNALS[10].target == "worker"


@pytest.mark.parametrize(
    ("target", "text"),
    [
        (None, "worker"),
        ("", "worker"),
        ("worker", "worker"),
        ("worker0", "worker"),  # canonical: the same target
        ("worker3", "worker3"),
        ("workers", "workers"),
        ("active-workers", "active-workers"),
        ("mule", "mule"),
        ("mule0", "mule"),
        ("mule2", "mule2"),
        ("mules", "mules"),
        ("spooler", "spooler"),
        ("farm_images", "farm_images"),
        ("farm1", "farm1"),
    ],
)
def test_every_target_form_of_the_seeds_is_accepted(target, text):
    Signal(11).register_handler(target=target)(handler)
    assert REGISTERED_SIGNALS[11].target == text


def test_mule_and_farm_objects_are_targets():
    mule = Mule(2)
    farm = Farm("images", mules=[1, 2])
    Signal(12).register_handler(target=mule)(handler)
    Signal(13).register_handler(target=farm)(handler)
    assert REGISTERED_SIGNALS[12].target == "mule2"
    assert REGISTERED_SIGNALS[13].target == "farm_images"
    assert [m.id for m in farm.mules] == [1, 2]


@pytest.mark.parametrize(
    "bad", ["wrker", "worker-1", "workers2", "farm0", "farm_", "mule 1", "WORKER", 5, 1.5, object]
)
def test_bad_target_is_refused_with_its_value_and_the_allowed_forms(bad):
    with pytest.raises(TargetError) as info:
        Signal(14).register_handler(target=bad)
    message = str(info.value)
    assert repr(bad) in message
    assert "'workers'" in message or "farms count from 1" in message
    assert not Signal(14).registered()


def test_bad_target_loses_nothing_registered_before():
    Signal(15).register_handler(target="workers")(handler)
    with pytest.raises(TargetError):
        Signal(16).register_handler(target="nobody")(handler)
    assert REGISTERED_SIGNALS[15].target == "workers"
    assert not lowlevel.signal_registered(16)


def test_non_callable_handler_is_refused():
    with pytest.raises(TypeError, match="callable"):
        lowlevel.register_signal(17, "worker", "not a function")


@pytest.mark.parametrize("bad", [0, -1, True, "1", 1.5])
def test_bad_mule_id_is_refused(bad):
    with pytest.raises(TargetError, match="mule id"):
        Mule(bad)


@pytest.mark.parametrize("name", ["", "has space", "semi;colon", 3])
def test_bad_farm_name_is_refused(name):
    with pytest.raises(TargetError, match="farm name"):
        Farm(name, mules=[1])


def test_farm_declared_twice_with_other_mules_is_refused():
    Farm("mail", mules=[1])
    Farm("mail", mules=[1])  # the same declaration again is fine
    with pytest.raises(TargetError, match="'mail'"):
        Farm("mail", mules=[2])


def test_send_and_wait_outside_a_runtime_say_so():
    with pytest.raises(NotInRuntimeError, match="signal 20"):
        Signal(20).send()
    with pytest.raises(NotInRuntimeError):
        Signal(20).wait(timeout=0.1)


def test_ids_outside_a_runtime_are_zero():
    assert uwsgisig.worker_id() == 0
    assert uwsgisig.mule_id() == 0
    assert uwsgisig.masterpid() == 0
    assert lowlevel.numproc() == 0
    assert not lowlevel.in_farm()
    assert get_last_received() is None
