"""The spooler process and its spool directory, with real forked processes."""

from __future__ import annotations

import pytest

from tests.conftest import jobs_in, spooled, wait_for
from uwsgisig import NotInRuntimeError, lowlevel, spooler
from uwsgisig.runtime.ipc.spool import SpoolDir, SpooledJob

pytestmark = pytest.mark.timeout(60)


RECORDING_HANDLER = """
from uwsgisig import spooler

@spooler.handler
def run(job):
    record("job", job["name"])
"""


def test_jobs_run_in_order_with_their_fields_and_are_deleted(start_app, tmp_path):
    spool_dir = tmp_path / "spool"
    app = start_app(
        """
        from uwsgisig import spooler

        @spooler.handler
        def run(job):
            fields = sorted(f"{key}={value!r}" for key, value in job.items()
                            if key != "spooler_task_name")
            record("job", ",".join(fields).replace(" ", ""), job["spooler_task_name"])

        @Signal(1).register_handler(target="worker1")
        def go(num):
            for i in range(5):
                spooler.spool({"n": str(i)}, body=b"\\x00raw", kind="text")
    """,
        workers=1,
        spooler=spool_dir,
    )
    app.handle.signal(1)
    jobs = app.wait_records("job", 5)
    assert [words[1] for words in jobs] == [
        f"body=b'\\x00raw',kind='text',n='{i}'" for i in range(5)
    ]
    assert {words[3] for words in jobs} == {"spooler"}
    assert all(words[2].startswith(str(spool_dir)) for words in jobs)
    wait_for(lambda: not jobs_in(spool_dir), what="the spool directory to empty")


def test_spooled_jobs_survive_a_restart_of_the_runtime(start_app, tmp_path):
    spool_dir = tmp_path / "spool"
    first = start_app(
        """
        from uwsgisig import spooler

        @spooler.handler
        def run(job):
            record("job", job["name"])
            block()  # the runtime stops while this job runs

        @Signal(1).register_handler(target="worker1")
        def go(num):
            for i in range(5):
                spooler.spool(name=f"j{i}")
            record("spooled")
    """,
        workers=1,
        spooler=spool_dir,
    )
    first.handle.signal(1)
    first.wait_records("spooled", 1)
    assert first.wait_records("job", 1)[0][1] == "j0"
    first.handle.stop()
    assert len(SpoolDir(spool_dir).pending()) == 5

    second = start_app(RECORDING_HANDLER, workers=1, spooler=spool_dir)
    jobs = second.wait_records("job", 6)
    assert [words[1] for words in jobs] == ["j0", "j0", "j1", "j2", "j3", "j4"]
    wait_for(lambda: not SpoolDir(spool_dir).pending(), what="the spool to empty")


def test_a_job_spooled_outside_the_runtime_runs_when_it_starts(start_app, tmp_path):
    spool_dir = tmp_path / "spool"
    path = spooler.spool({"name": "early"}, spooler=spool_dir)
    assert path.startswith(str(spool_dir))
    app = start_app(RECORDING_HANDLER, workers=1, spooler=spool_dir)
    assert app.wait_records("job", 1)[0][1:3] == ["early", "spooler"]


def test_a_failing_job_is_logged_and_retried_after_the_frequency(start_app, tmp_path):
    spool_dir = tmp_path / "spool"
    app = start_app(
        """
        import time
        from uwsgisig import spooler

        @spooler.handler
        def run(job):
            tries = len(open(OUT).readlines()) if os.path.exists(OUT) else 0
            record("try", job["name"], f"{time.monotonic():.3f}")
            if job["name"] == "raises" and tries == 0:
                raise RuntimeError("flaky")
            if job["name"] == "retry" and tries == 1:
                return spooler.SPOOL_RETRY
            return spooler.SPOOL_OK

        @Signal(1).register_handler(target="worker1")
        def go(num):
            spooler.spool(name="raises")
            spooler.spool(name="retry")
    """,
        workers=1,
        spooler=spool_dir,
        spooler_frequency=0.3,
    )
    app.handle.signal(1)
    tries = app.wait_records("try", 4)
    assert [words[1] for words in tries] == ["raises", "retry", "raises", "retry"]
    assert float(tries[2][2]) - float(tries[0][2]) >= 0.25
    assert "spool handler raised on job" in app.log.read_text()
    assert "RuntimeError: flaky" in app.log.read_text()
    wait_for(lambda: not SpoolDir(spool_dir).pending(), what="the spool to empty")


def test_a_job_with_at_waits_until_then(start_app, tmp_path):
    spool_dir = tmp_path / "spool"
    app = start_app(
        """
        import time
        from uwsgisig import spooler

        @spooler.handler
        def run(job):
            record("job", job["name"], f"{time.time():.3f}")

        @Signal(1).register_handler(target="worker1")
        def go(num):
            at = time.time() + 0.5
            spooler.spool(name="later", at=at)
            spooler.spool(name="now")
            record("at", f"{at:.3f}")
    """,
        workers=1,
        spooler=spool_dir,
    )
    app.handle.signal(1)
    at = float(app.wait_records("at", 1)[0][1])
    jobs = app.wait_records("job", 2)
    assert [words[1] for words in jobs] == ["now", "later"]
    assert float(jobs[1][2]) >= at


def test_a_file_that_is_not_a_job_is_set_aside(start_app, tmp_path):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "job-00000000000000000001-1-00000000").write_text("{not json")
    spooler.spool({"name": "good"}, spooler=spool_dir)
    app = start_app(RECORDING_HANDLER, workers=1, spooler=spool_dir)
    assert app.wait_records("job", 1)[0][1] == "good"
    assert (spool_dir / "job-00000000000000000001-1-00000000.bad").exists()
    assert "is not a spool job" in app.log.read_text()


def test_the_spooler_still_runs_its_signal_handlers(start_app, tmp_path):
    app = start_app(
        """
        @Signal(4).register_handler(target="spooler")
        def handler(num):
            record("signal", num)
    """,
        workers=1,
        spooler=tmp_path / "spool",
    )
    app.handle.signal(4)
    assert app.wait_records("signal", 1)[0][1:3] == ["4", "spooler"]


def test_bad_jobs_are_refused_before_anything_is_written(tmp_path):
    spool_dir = tmp_path / "spool"
    with pytest.raises(TypeError, match="invalid spool job key 1: keys are str"):
        spooler.spool({1: "x"}, spooler=spool_dir)  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"invalid spool job value \(1, 2\) \(tuple\) at 'n'"):
        spooler.spool({"n": (1, 2)}, spooler=spool_dir)
    with pytest.raises(TypeError, match=r"at 'deep'\[0\]\['when'\]: values are str, bytes"):
        spooler.spool({"deep": [{"when": object()}]}, spooler=spool_dir)
    with pytest.raises(ValueError, match="invalid retries -1: give a whole number >= 0"):
        spooler.spool({"n": 1}, retries=-1, spooler=spool_dir)
    with pytest.raises(TypeError, match="body is bytes, not str"):
        spooler.spool({}, body="text", spooler=spool_dir)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid at 'soon'"):
        spooler.spool({}, at="soon", spooler=spool_dir)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid priority -1: give a whole number >= 0"):
        lowlevel.send_to_spooler({"a": "b"}, spooler=str(spool_dir), priority=-1)
    with pytest.raises(NotInRuntimeError, match="no spool directory"):
        spooler.spool({"a": "b"})
    assert not spool_dir.exists() or not SpoolDir(spool_dir).pending()


def test_spool_dir_round_trips_text_and_bytes(tmp_path):
    spool = SpoolDir(tmp_path)
    first = spooled(spool, {"text": "żółw", "raw": b"\x00\xff"}, at=12.5)
    second = spooled(spool, {"n": "2"})
    assert spool.pending() == [first, second]
    assert spool.load(first) == SpooledJob({"text": "żółw", "raw": b"\x00\xff"}, at=12.5)
    assert not [entry for entry in tmp_path.iterdir() if entry.name.startswith(".")]
