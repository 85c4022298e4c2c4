"""Programmed mules and offloaded calls, with real forked processes."""

from __future__ import annotations

import itertools

import pytest

from tests.conftest import wait_for
from uwsgisig import Farm, Mule, NotInRuntimeError, Offloaded, TargetError
from uwsgisig.runtime.model import app as declarations
from uwsgisig.runtime.model.config import MuleProgram
from uwsgisig.runtime.model.process import CURRENT

pytestmark = pytest.mark.timeout(60)

# The first three starts of the loop raise (or return); the fourth stays up,
# so the runtime becomes ready and the test reads the start times.
FLAKY_LOOP = """
import time

def starts():
    return len(open(OUT).read().splitlines()) if os.path.exists(OUT) else 0

def main():
    count = starts()
    record("start", f"{{time.monotonic():.4f}}")
    if count < 3:
        {ending}
    while True:
        Mule.get_message()

Mule(1, loop=main)
"""


def start_gaps(app) -> list[float]:
    times = [float(words[1]) for words in app.wait_records("start", 4)]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def test_a_loop_that_raises_is_logged_and_restarted_with_a_growing_delay(start_app):
    app = start_app(FLAKY_LOOP.format(ending='raise RuntimeError(f"boom {count}")'), workers=1)
    gaps = start_gaps(app)
    assert all(round(gap, 1) >= floor for gap, floor in zip(gaps, (0.1, 0.2, 0.4), strict=True))
    assert gaps[0] < gaps[1] < gaps[2]
    log = app.log.read_text()
    assert "the loop app0:main of mule 1 raised: the master starts it again" in log
    assert "RuntimeError: boom 2" in log
    assert len(app.handle.processes()) == 3  # master, worker 1, mule 1


def test_a_loop_that_returns_is_restarted(start_app):
    app = start_app(FLAKY_LOOP.format(ending="return"), workers=1)
    assert len(start_gaps(app)) == 3
    assert "the loop app0:main of mule 1 returned: the master starts it again" in (
        app.log.read_text()
    )


def test_a_loop_named_by_a_string_gets_the_next_mule_id(start_app):
    app = start_app(
        """
        Mule(2)

        def main():
            record("loop", Mule.get_current_id())
            while True:
                Mule.get_message()

        assert Mule("app0:main").id == 3
    """,
        workers=1,
    )
    assert app.wait_records("loop", 1)[0][1:3] == ["3", "mule3"]


def test_mule_loops_given_to_the_runtime_follow_its_plain_mules(start_app, tmp_path):
    script = tmp_path / "script_loop.py"
    script.write_text(
        f"import os\nfrom uwsgisig import Mule\n"
        f"fd = os.open({str(tmp_path / 'out.txt')!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
        f"os.write(fd, f'script {{Mule.get_current_id()}} x 0\\n'.encode())\n"
        "while True:\n    Mule.get_message()\n"
    )
    app = start_app(
        """
        def main():
            record("loop", Mule.get_current_id())
            while True:
                Mule.get_message()
    """,
        workers=1,
        mules=1,
        mule_loops=["app0:main", str(script)],
    )
    assert app.wait_records("loop", 1)[0][1] == "2"
    assert app.wait_records("script", 1)[0][1] == "3"


def test_offloaded_calls_run_in_the_mule_with_their_arguments(start_app):
    app = start_app(
        """
        farm = Farm("pool", mules=[1, 2])

        @farm.offload
        def resize(path, *, width):
            record("resize", path, width)

        @Mule(3).offload()
        def count(numbers):
            record("count", sum(numbers))

        @Mule(3).offload
        def fail(x):
            raise ValueError(f"bad {x}")

        @Signal(1).register_handler(target="worker1")
        def go(num):
            assert resize("cat.png", width=320) is None
            fail(7)
            count([1, 2, 3])
    """,
        workers=1,
    )
    app.handle.signal(1)
    resize = app.wait_records("resize", 1)[0]
    assert resize[1:3] == ["cat.png", "320"]
    assert resize[3] in {"mule1", "mule2"}
    assert app.wait_records("count", 1)[0][1:3] == ["6", "mule3"]
    wait_for(
        lambda: "offloaded call app0:fail(*(7,), **{}) raised in mule 3" in app.log.read_text(),
        what="the failed call in the log",
    )
    assert "ValueError: bad 7" in app.log.read_text()


def test_get_message_runs_offloaded_calls_and_returns_only_app_messages(start_app):
    app = start_app(
        """
        @Mule(1).offload
        def note(word):
            record("called", word)

        def main():
            while True:
                record("got", Mule.get_message().decode())

        Mule(1, loop=main)

        @Signal(1).register_handler(target="worker1")
        def go(num):
            note("first")
            Mule(1).send("plain")
    """,
        workers=1,
    )
    app.handle.signal(1)
    assert app.wait_records("called", 1)[0][1:3] == ["first", "mule1"]
    assert [words[1] for words in app.wait_records("got", 1)] == ["plain"]


def test_offloaded_function_stays_callable_in_place():
    @Mule(1).offload
    def double(x: int) -> int:
        return 2 * x

    assert isinstance(double, Offloaded)
    assert double.func(4) == 8
    assert double.__name__ == "double"
    with pytest.raises(NotInRuntimeError):
        double(4)


def test_two_functions_cannot_be_offloaded_under_one_name():
    def job() -> None: ...

    Farm("pool").offload(job)

    def other() -> None: ...

    other.__qualname__ = job.__qualname__
    with pytest.raises(ValueError, match="another function is already offloaded as"):
        Mule(1).offload(other)


def test_bad_mule_loops_are_refused():
    with pytest.raises(TargetError, match="invalid mule loop 'no colon'"):
        Mule(loop="no colon")
    with pytest.raises(TargetError, match="invalid mule loop 5"):
        MuleProgram(1, 5)  # type: ignore[arg-type]
    with pytest.raises(TargetError, match="give a mule id, a loop, or both"):
        Mule()

    def main() -> None: ...

    def other() -> None: ...

    assert Mule(loop=main).id == 1
    assert Mule(2, loop=main).id == 2
    with pytest.raises(TargetError, match="mule 2 already runs"):
        Mule(2, loop=other)
    assert set(declarations.DECLARED.programs) == {1, 2}


def test_loops_are_declared_before_fork_only():
    CURRENT.loop = object()  # type: ignore[assignment]
    with pytest.raises(NotInRuntimeError, match="declared in the app module"):
        Mule(loop="pkg.mod:main")
