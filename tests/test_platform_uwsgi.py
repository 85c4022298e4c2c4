"""`uwsgisig.platform.uwsgi` against a stand-in ``uwsgi`` module that records each call.

The real server runs in test_under_uwsgi.py and test_uwsgi_remote.py; these
tests pin down the mapping itself: what is passed on, what is refused, and
the waiting `mule_msg` does where uWSGI would drop a message.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

import pytest

from uwsgisig import MessageQueueFullError, ScheduleError, SignalAlreadyRegisteredError
from uwsgisig.platform import embedded


class FakeUwsgi(types.ModuleType):
    """Records calls; ``answers`` sets what a call returns (a list: one answer per call)."""

    def __init__(self) -> None:
        super().__init__("uwsgi")
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.answers: dict[str, Any] = {"signal_registered": None, "signal_received": -1}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def call(*args: Any) -> Any:
            self.calls.append((name, args))
            answer = self.answers.get(name)
            return answer.pop(0) if isinstance(answer, list) else answer

        return call


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeUwsgi, types.ModuleType]:
    stand_in = FakeUwsgi()
    monkeypatch.setitem(sys.modules, "uwsgi", stand_in)
    module = importlib.import_module("uwsgisig.platform.uwsgi")
    monkeypatch.setattr(module, "uwsgi", stand_in)
    return stand_in, module


@pytest.mark.timeout(10)
def test_both_engines_offer_the_same_calls(fake):
    _, module = fake
    assert set(module.__all__) == set(embedded.__all__)
    for name in module.__all__:
        assert hasattr(module, name), name


@pytest.mark.timeout(10)
def test_signal_calls_are_passed_on_after_checks(fake):
    stand_in, module = fake
    module.register_signal(17, "workers", print)
    module.signal(17)
    module.signal(18, "127.0.0.1:3031")
    assert stand_in.calls == [
        ("signal_registered", (17,)),
        ("register_signal", (17, "workers", print)),
        ("signal", (17,)),
        ("signal", (18, "127.0.0.1:3031")),
    ]
    stand_in.answers["signal_registered"] = True
    with pytest.raises(SignalAlreadyRegisteredError, match="signal 17"):
        module.register_signal(17, "workers", print)
    with pytest.raises(ValueError, match="'workerz'"):
        module.register_signal(19, "workerz", print)
    with pytest.raises(ValueError, match="256"):
        module.signal(256)


@pytest.mark.timeout(10)
def test_signal_received_is_none_until_a_wait_returned(fake):
    stand_in, module = fake
    assert module.signal_received() is None
    stand_in.answers["signal_received"] = 0
    assert module.signal_received() == 0


@pytest.mark.timeout(10)
def test_timers_take_whole_seconds(fake):
    stand_in, module = fake
    module.add_timer(5, 2)
    module.add_rb_timer(6, 3.0, 4)
    module.add_ms_timer(7, 2000)
    assert stand_in.calls == [
        ("add_timer", (5, 2)),
        ("add_rb_timer", (6, 3, 4)),
        ("add_timer", (7, 2)),
    ]
    with pytest.raises(NotImplementedError, match=r"0\.5 seconds.*whole seconds"):
        module.add_timer(5, 0.5)
    with pytest.raises(NotImplementedError, match="1500 milliseconds"):
        module.add_ms_timer(5, 1500)
    with pytest.raises(ScheduleError):
        module.add_timer(5, -1)


@pytest.mark.timeout(10)
def test_cron_fields_are_uwsgis_and_a_crontab_is_spelled_in_them(fake):
    stand_in, module = fake
    module.add_cron(3, minute=None, hour=-2)
    module.add_crontab(4, "*/5 3 * * mon")
    module.add_crontab(5, "@hourly")
    assert stand_in.calls == [
        ("add_cron", (3, -1, -2, -1, -1, -1)),
        ("add_cron", (4, -5, 3, -1, -1, 1)),
        ("add_cron", (5, 0, -1, -1, -1, -1)),
    ]
    with pytest.raises(NotImplementedError, match=r"'1,2 \* \* \* \*'"):
        module.add_crontab(6, "1,2 * * * *")
    with pytest.raises(NotImplementedError, match="one value"):
        module.check_crontab("0-5 * * * *")  # refused before a signal number is taken
    module.check_crontab("*/5 * * * *")
    with pytest.raises(ScheduleError, match="61"):
        module.add_cron(3, minute=61)


@pytest.mark.timeout(10)
def test_mule_msg_waits_for_room_where_uwsgi_drops(fake):
    stand_in, module = fake
    stand_in.answers["mule_msg"] = [False, False, True]
    assert module.mule_msg("hi", 2) is True
    assert stand_in.calls == [("mule_msg", (b"hi", 2))] * 3
    stand_in.calls.clear()
    stand_in.answers["mule_msg"] = [False] * 100
    with pytest.raises(MessageQueueFullError, match="mule 0"):
        module.mule_msg(b"x", timeout=0.02)
    assert 1 < len(stand_in.calls) < 100  # it kept trying until the deadline


@pytest.mark.timeout(10)
def test_a_farm_name_goes_to_farm_msg(fake):
    stand_in, module = fake
    module.mule_msg(b"job", "pool")
    assert stand_in.calls == [("farm_msg", ("pool", b"job"))]


@pytest.mark.timeout(10)
def test_what_uwsgi_cannot_do_is_refused_naming_it(fake):
    _, module = fake
    with pytest.raises(NotImplementedError, match=r"signal_wait\(timeout=...\)"):
        module.signal_wait(3, timeout=1)
    with pytest.raises(NotImplementedError, match=r"farm_get_msg\(timeout=...\)"):
        module.farm_get_msg(timeout=1)
    with pytest.raises(NotImplementedError, match="mule id"):
        module.declare_program(None, print)


@pytest.mark.timeout(10)
def test_messages_are_dispatched_to_offloaded_calls_or_the_hook(fake):
    stand_in, module = fake
    seen: list[object] = []

    def offloaded(word: str) -> None:
        seen.append(("call", word))

    stand_in.answers["mule_msg"] = True
    name = module.register_offload(offloaded)
    module.set_message_hook(lambda message: seen.append(("hook", message)))
    hook = stand_in.__dict__["mule_msg_hook"]
    module.call_offloaded(name, ("a",), {}, mule=1)
    (_, (packed, mule)) = stand_in.calls[-1]
    assert mule == 1
    hook(packed)
    hook(b"plain")
    assert seen == [("call", "a"), ("hook", b"plain")]


@pytest.mark.timeout(10)
def test_spool_jobs_are_bytes_for_uwsgi_and_come_back_as_they_went_in(fake):
    stand_in, module = fake
    stand_in.answers["spool"] = b"/spool/uwsgi_spoolfile_1"
    job = {"to": "ops", "tries": 3, "cc": ["a", b"\xff"], "meta": {"on": True}}
    assert module.spool(job, body=b"B", at=12.5) == "/spool/uwsgi_spoolfile_1"
    ((call, (sent,)),) = stand_in.calls
    assert call == "spool"
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in sent.items())
    assert sent[b"at"] == b"12"
    jobs: list[dict[str, Any]] = []
    module.set_spool_handler(jobs.append)
    run_job = stand_in.__dict__["spooler"]
    assert run_job({**sent, "spooler_task_name": b"uwsgi_spoolfile_1"}) == -2  # None: SPOOL_OK
    assert jobs == [{**job, "body": b"B", "spooler_task_name": b"uwsgi_spoolfile_1"}]
    assert run_job({b"to": b"ops"}) == -2  # another writer's job: uWSGI's bytes values
    assert jobs[-1] == {"to": b"ops"}
    with pytest.raises(NotImplementedError, match="retries"):
        module.spool(job, retries=3)
    module.set_spool_handler(lambda job: 1 / 0)
    assert stand_in.__dict__["spooler"]({b"to": b"ops"}) == -1  # raised: SPOOL_RETRY


@pytest.mark.timeout(10)
def test_the_cluster_and_unique_schedules_are_refused_not_dropped(fake):
    stand_in, module = fake
    for target in ("cluster", "subscribed"):
        with pytest.raises(NotImplementedError, match=f"the '{target}' target.*delivers nothing"):
            module.register_signal(5, target, print)
    with pytest.raises(NotImplementedError, match=r"unique.*uWSGI 2\.0 has no cluster"):
        module.add_timer(5, 2, unique=True)
    with pytest.raises(NotImplementedError, match="unique"):
        module.add_crontab(5, "* * * * *", unique=True)
    with pytest.raises(NotImplementedError, match="unique"):
        module.check_unique()
    with pytest.raises(NotImplementedError, match="raising a signal on the cluster"):
        module.signal_cluster(5)
    assert stand_in.calls == []  # nothing reached uWSGI
