"""Spool jobs: values of every documented type come back as they went in; retries with an
exponential, jittered backoff (on a fake clock); dead letters with the reason beside them;
a job that kills its spooler counts as a failed try; files that dead writers left."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import spooled, wait_for
from uwsgisig import spooler
from uwsgisig.runtime.child.spooler import RETRY_CAP, Spooler, retry_delay
from uwsgisig.runtime.ipc.spool import SPOOL_IGNORE, SPOOL_OK, SPOOL_RETRY, SpoolDir
from uwsgisig.runtime.wire.jobs import decode_job, encode_job

pytestmark = pytest.mark.timeout(90)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
jobs = st.dictionaries(st.text(), values, max_size=6)


def same(a: object, b: object) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0 == True would pass ==)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)  # type: ignore[union-attr,index]
    return a == b


@given(jobs)
def test_every_documented_value_comes_back_as_it_went_in(job):
    assert same(decode_job(encode_job(job)), job)


@given(job=jobs)
def test_a_job_file_gives_back_its_job(tmp_path_factory, job):
    spool = SpoolDir(tmp_path_factory.mktemp("spool"))
    assert same(spool.load(spooled(spool, job, at=5.0)).message, job)


def test_floats_that_json_has_no_words_for_come_back_too(tmp_path):
    spool = SpoolDir(tmp_path)
    loaded = spool.load(spooled(spool, {"x": [math.inf, -math.inf, 1e-300, 0.1]}))
    assert loaded.message["x"] == [math.inf, -math.inf, 1e-300, 0.1]
    assert math.isnan(spool.load(spooled(spool, {"n": math.nan})).message["n"])  # type: ignore[arg-type]


def test_a_dict_that_looks_like_a_tag_is_still_a_dict(tmp_path):
    spool = SpoolDir(tmp_path)
    job = {"a": {"b": "not base64!"}, "c": {"d": {}}}
    assert spool.load(spooled(spool, job)).message == job


def test_jobs_of_the_first_file_format_are_still_read(tmp_path):
    old = tmp_path / "job-00000000000000000001-1-00000001"
    old.write_text('{"message": {"to": "ops"}, "binary": {"raw": "AP8="}, "at": 7}')
    loaded = SpoolDir(tmp_path).load(old)
    assert (loaded.message, loaded.at, loaded.retries) == ({"to": "ops", "raw": b"\0\xff"}, 7, None)


# ---------------------------------------------------------------- backoff


@given(
    failures=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0.001, max_value=600),
    rand=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_the_delay_doubles_is_capped_and_is_jittered_within_its_upper_half(failures, base, rand):
    full = min(base * 2 ** (failures - 1), RETRY_CAP)
    delay = retry_delay(failures, base, lambda: rand)
    assert full / 2 <= delay <= full


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Handler:
    """Answers from a list, one per call; raises what it is given to raise."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[float, dict]] = []
        self.clock: FakeClock | None = None

    def __call__(self, job: dict) -> object:
        assert self.clock is not None
        self.calls.append((self.clock.now, job))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def spooler_for(tmp_path: Path, handler: Handler, frequency: float = 10.0) -> Spooler:
    clock = FakeClock()
    handler.clock = clock
    return Spooler(SpoolDir(tmp_path), handler, frequency, clock=clock, rand=lambda: 1.0)


def run_until(spool: Spooler, until: float) -> None:
    """Run the spooler's loop on its fake clock, jumping over its waits, up to ``until``."""
    clock = spool.clock
    assert isinstance(clock, FakeClock)
    while clock.now <= until:
        wait = spool.run_next()
        clock.now += max(wait, 0.001) if wait else 0.0


def test_a_job_with_retries_is_tried_with_doubling_waits_then_buried(tmp_path):
    handler = Handler(RuntimeError("first"), SPOOL_RETRY, RuntimeError("third"), SPOOL_OK)
    spool = spooler_for(tmp_path, handler, frequency=10.0)
    path = spooled(spool.spool, {"to": "ops"}, retries=2)
    start = spool.clock()
    run_until(spool, start + 1000)
    # rand() = 1.0: the whole delay, 10 s then 20 s; the third failure was the last try.
    assert [round(at - start, 3) for at, _ in handler.calls] == [0, 10, 30]
    assert not path.exists()
    grave = tmp_path / "dead" / path.name
    assert spool.spool.load(grave).attempts == 3
    reason = (tmp_path / "dead" / f"{path.name}.traceback").read_text()
    assert "RuntimeError: third" in reason
    assert handler.answers == [SPOOL_OK]  # never asked again


def test_failures_are_counted_in_the_file_so_a_restart_goes_on_counting(tmp_path):
    handler = Handler(RuntimeError("once"))
    spool = spooler_for(tmp_path, handler)
    path = spooled(spool.spool, {"n": 1}, retries=5)
    spool.run_next()
    job = spool.spool.load(path)
    assert (job.attempts, job.retry_at) == (1, spool.clock() + 10)
    later = Handler(SPOOL_OK)
    restarted = spooler_for(tmp_path, later)
    restarted.clock.now = spool.clock.now  # type: ignore[attr-defined]
    restarted.run_next()  # it reads the retry time in the file...
    assert restarted.run_next() == pytest.approx(10)  # ...and waits for it
    assert later.calls == []
    restarted.clock.now += 10  # type: ignore[attr-defined]
    restarted.run_next()
    assert len(later.calls) == 1
    assert not path.exists()


def test_a_job_with_no_retries_is_tried_every_frequency_forever_as_in_uwsgi(tmp_path):
    handler = Handler(*[SPOOL_RETRY] * 5, RuntimeError("x"), None)
    spool = spooler_for(tmp_path, handler, frequency=3.0)
    path = spooled(spool.spool, {"n": 1})
    start = spool.clock()
    run_until(spool, start + 100)
    assert [round(at - start, 3) for at, _ in handler.calls] == [0, 3, 6, 9, 12, 15, 18]
    assert not path.exists()
    assert not (tmp_path / "dead").exists()


def test_spool_ignore_keeps_the_job_without_counting_a_failure(tmp_path):
    handler = Handler(SPOOL_IGNORE, SPOOL_IGNORE, SPOOL_OK)
    spool = spooler_for(tmp_path, handler, frequency=1.0)
    path = spooled(spool.spool, {"n": 1}, retries=0)
    run_until(spool, spool.clock() + 10)
    assert len(handler.calls) == 3
    assert not path.exists()
    assert not (tmp_path / "dead").exists()


def test_retries_zero_means_one_try(tmp_path):
    handler = Handler(SPOOL_RETRY)
    spool = spooler_for(tmp_path, handler)
    path = spooled(spool.spool, {"n": 1}, retries=0)
    run_until(spool, spool.clock() + 100)
    assert len(handler.calls) == 1
    assert (tmp_path / "dead" / path.name).exists()
    assert "returned -1" in (tmp_path / "dead" / f"{path.name}.traceback").read_text()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_job_its_spooler_died_in_counts_as_a_failed_try(tmp_path):
    spool_dir = SpoolDir(tmp_path)
    poison = spooled(spool_dir, {"n": 1}, retries=1)
    plain = spooled(spool_dir, {"n": 2})
    (tmp_path / f".running-{dead_pid()}").write_text(poison.name)
    handler = Handler(SPOOL_OK)
    spool = spooler_for(tmp_path, handler)
    spool.recover()
    assert spool.spool.load(poison).attempts == 1
    assert spool.run_next() == 0.0  # the other job runs now; the poison one waits
    assert [job["n"] for _, job in handler.calls] == [2]
    assert not plain.exists()
    # Its second death is its last try.
    (tmp_path / f".running-{dead_pid()}").write_text(poison.name)
    spool.recover()
    assert not poison.exists()
    assert "died while running it" in (tmp_path / "dead" / f"{poison.name}.traceback").read_text()


def test_a_live_spoolers_mark_is_left_alone(tmp_path):
    spool_dir = SpoolDir(tmp_path)
    job = spooled(spool_dir, {"n": 1}, retries=3)
    (tmp_path / f".running-{os.getppid()}").write_text(job.name)  # a live process
    spool = spooler_for(tmp_path, Handler())
    spool.recover()
    assert spool.spool.load(job).attempts == 0
    assert (tmp_path / f".running-{os.getppid()}").exists()


def test_temporary_files_of_dead_writers_are_removed_and_a_live_ones_kept(tmp_path, caplog):
    spool_dir = SpoolDir(tmp_path)
    dead = tmp_path / f".job-job-1-{dead_pid()}-00000001.tmp"
    dead.write_text("{half a jo")
    alive = tmp_path / f".job-job-2-{os.getpid()}-00000002.tmp"
    alive.write_text("{being writ")
    spool = Spooler(spool_dir, None, 1.0)
    spool.recover()
    assert not dead.exists()
    assert alive.exists()
    assert "removed 1 unfinished job file" in caplog.text


# ---------------------------------------------------------------- with real processes

POISON_APP = """
import time
from uwsgisig import spooler

@spooler.handler
def run(job):
    record("try", job["name"])
    if job["name"] == "poison":
        os._exit(3)  # kills the spooler
    return spooler.SPOOL_OK

@Signal(1).register_handler(target="worker1")
def go(num):
    spooler.spool(name="poison", retries=2)
    spooler.spool(name="fine", data={"list": [1, 2.5, None, True, b"raw"]})
"""


def test_a_poison_job_that_kills_its_spooler_ends_in_the_dead_letters(start_app, tmp_path):
    spool_dir = tmp_path / "spool"
    app = start_app(POISON_APP, workers=1, spooler=spool_dir, spooler_frequency=0.05)
    app.handle.signal(1)
    tries = app.wait_records("try", 4, timeout=60)
    assert [words[1] for words in tries].count("poison") == 3  # 1 try + 2 retries
    dead = spool_dir / "dead"
    wait_for(lambda: list(dead.glob("*.traceback")), 30, "the poison job's dead letter")
    (reason,) = dead.glob("*.traceback")
    assert "its spooler process died while running it" in reason.read_text()
    assert [words[1] for words in tries].count("fine") == 1
    assert not SpoolDir(spool_dir).pending()


def test_values_reach_the_handler_as_they_were_spooled(start_app, tmp_path):
    app = start_app(
        """
        from uwsgisig import spooler

        @spooler.handler
        def run(job):
            kinds = {key: type(value).__name__ for key, value in job.items()}
            record("kinds", ",".join(f"{k}={v}" for k, v in sorted(kinds.items())))
            record("values", repr(job["nested"]).replace(" ", ""))

        @Signal(1).register_handler(target="worker1")
        def go(num):
            spooler.spool(n=1, f=0.5, yes=True, none=None, text="t", raw=b"r",
                          nested={"a": [1, {"b": b"\\xff"}]})
        """,
        workers=1,
        spooler=tmp_path / "spool",
    )
    app.handle.signal(1)
    kinds = app.wait_records("kinds", 1)[0][1]
    assert kinds == (
        "f=float,n=int,nested=dict,none=NoneType,raw=bytes,spooler_task_name=str,"
        "text=str,yes=bool"
    )
    assert app.wait_records("values", 1)[0][1] == "{'a':[1,{'b':b'\\xff'}]}"


def test_spool_refuses_a_value_it_cannot_give_back_before_writing(tmp_path):
    with pytest.raises(TypeError, match=r"\(1, 2\) \(tuple\) at 'n'"):
        spooler.spool({"n": (1, 2)}, spooler=tmp_path)
    with pytest.raises(TypeError, match=r"dict key 1 is not a str"):
        spooler.spool({"n": {1: "x"}}, spooler=tmp_path)
    assert not list(tmp_path.iterdir())
