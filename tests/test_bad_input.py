"""Bad input is refused before anything starts, with a message that names the
value and what is allowed (the table in docs/operating.md)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

import uwsgisig
from uwsgisig import Runtime, ScheduleError, Signal, TargetError, UwsgisigError
from uwsgisig.scheduling import register_timer, register_timer_ms

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


def uwsgisig_run(tmp_path: Path, *args: str, app: str = "") -> subprocess.CompletedProcess[str]:
    path = tmp_path / "app.py"
    path.write_text(app)
    return subprocess.run(
        [sys.executable, "-m", "uwsgisig", "run", str(path), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stop-timeout", "nan"], "invalid stop_timeout nan: must be a finite number"),
        (["--spooler-frequency", "inf"], "invalid spooler_frequency inf: must be a finite number"),
        (["--send-timeout", "-1"], "invalid send_timeout -1.0: must be a finite number of seconds"),
        (["--mule", "nosuchmod:loop"],
         "mule 1's loop 'nosuchmod:loop' cannot be imported: no module named 'nosuchmod'"),
        (["--mule", "missing.py"], "mule 1's loop 'missing.py': no such file"),
        (["--log-level", "chatty"], "invalid choice: 'chatty'"),
        (["--work", "2"], "unrecognized arguments: --work"),
        (["--workers", "0"], "a runtime needs at least one worker"),
        (["--chdir", "/no/such/dir"], "--chdir '/no/such/dir': No such file or directory"),
    ],
)  # fmt: skip
def test_bad_options_are_refused_naming_the_value(tmp_path, args, message):
    result = uwsgisig_run(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(
    ("app", "lines"),
    [
        (
            "x = 1\nraise RuntimeError('boom at import')\n",
            ["the app", "raised while it was imported", 'app.py", line 2, in <module>',
             "RuntimeError: boom at import"],
        ),
        (
            "import nosuchdependency\n",
            ['app.py", line 1', "ModuleNotFoundError: No module named 'nosuchdependency'"],
        ),
        (
            "import uwsgisig\n@uwsgisig.Signal(3).register_handler(target='wokers')\n"
            "def f(num): pass\n",
            ['app.py", line 2', "invalid signal target 'wokers' (did you mean 'workers'?)"],
        ),
        ("def broken(:\n", ["SyntaxError"]),
    ],
    ids=["raises", "missing-dependency", "bad-target", "syntax"],
)  # fmt: skip
def test_the_apps_own_errors_at_import_come_with_their_traceback(tmp_path, app, lines):
    result = uwsgisig_run(tmp_path, app=app)
    assert result.returncode == 2
    for line in lines:
        assert line in result.stderr
    assert "uwsgisig/runtime" not in result.stderr  # the app's frames, not ours


def test_a_module_app_that_is_not_found_says_where_to_look(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "uwsgisig", "run", "no_such_app_module"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no module named 'no_such_app_module'" in result.stderr
    assert "--pythonpath" in result.stderr


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: register_timer(1e-9), ScheduleError, "must be at least 0.001 seconds"),
        (lambda: register_timer(math.nan), ScheduleError, "must be a finite number"),
        (lambda: register_timer_ms(0.5), ScheduleError, "must be at least 1 millisecond"),
        (lambda: uwsgisig.spooler.spool({"a": "b"}, at=math.nan, spooler="/tmp"), ValueError,
         "invalid at nan: give a finite UNIX time"),
        (lambda: uwsgisig.spooler.spool({"a": "b"}, spooler=123), TypeError,
         "invalid spooler 123: give the path of a spool directory"),
        (lambda: Signal(5).register_handler(target="spoler"), TargetError,
         "(did you mean 'spooler'?)"),
        (lambda: Signal(5).register_handler(target="worker_2"), TargetError,
         "(did you mean 'worker2'?)"),
        (lambda: Runtime(stop_timeout=math.inf), ValueError, "invalid stop_timeout inf"),
        (lambda: Runtime(log_level="loud"), ValueError,
         "invalid log_level 'loud': use one of debug, info, warning, error"),
    ],
    ids=["timer-1ns", "timer-nan", "ms-timer", "spool-at", "spool-dir", "target",
         "target-number", "runtime-inf", "log-level"],
)  # fmt: skip
def test_bad_calls_are_refused_naming_the_value(call, error, message):
    with pytest.raises(error) as raised:
        call()
    assert message in str(raised.value)


def test_the_handle_takes_signal_objects_and_refuses_clearly_once_stopped(start_app):
    app = start_app(
        """
        @Signal(3).register_handler(target="worker1")
        def served(num):
            record("served", num)
        """
    )
    app.handle.signal(Signal(3))
    app.wait_records("served", 1)
    code = app.handle.stop()
    with pytest.raises(UwsgisigError, match="cannot raise signal 3: this runtime was stopped"):
        app.handle.signal(3)
    with pytest.raises(UwsgisigError, match=f"exited with status {code}"):
        app.handle.wait(Signal(4), timeout=1)
