"""Operating a runtime from outside, as an operator would: pidfile, the reload
and stop commands, POSIX signals for stats, status and pause, touch files,
and the command line's habits. Waits are on log lines, records and pids.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import assert_all_gone, children_of, wait_for

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent


def uwsgisig(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uwsgisig", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def worker_pids(app) -> dict[str, int]:
    return {who: pid for who, pid in app.pids_by_who().items() if who != "master"}


def log_has(app, text: str, count: int = 1) -> None:
    wait_for(lambda: app.log.read_text().count(text) >= count, 20, f"{text!r} in the log")


# -------------------------------------------------------------------- pidfile and commands


def test_the_pidfile_holds_the_master_and_reload_and_stop_use_it(start_app, tmp_path):
    pidfile = tmp_path / "master.pid"
    app = start_app("", workers=2, pidfile=pidfile)
    assert pidfile.read_text() == f"{app.handle.pid}\n"
    before = worker_pids(app)
    assert uwsgisig("reload", str(pidfile)).returncode == 0
    wait_for(lambda: not set(worker_pids(app).values()) & set(before.values()), 20, "reload")
    app.handle.wait_ready()
    again = worker_pids(app)
    assert uwsgisig("--reload", str(pidfile)).returncode == 0  # uWSGI's spelling
    wait_for(lambda: not set(worker_pids(app).values()) & set(again.values()), 20, "reload")
    pids = set(app.handle.pids())
    assert uwsgisig("stop", str(pidfile)).returncode == 0
    assert_all_gone(pids)
    assert not pidfile.exists()  # removed by the master it named


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "pidfile {path!r} does not exist"),
        ("not a pid\n", "pidfile {path!r} holds 'not a pid', not a pid"),
        ("0\n", "pidfile {path!r} holds '0', not a pid"),
        ("4194303\n", "no process 4194303 (from pidfile {path!r}): the runtime is not running"),
    ],
)
@pytest.mark.parametrize("spelling", [["stop", "{path}"], ["--reload", "{path}"]])
def test_a_bad_pidfile_is_an_error_naming_it(tmp_path, content, message, spelling):
    path = str(tmp_path / "master.pid")
    if content is not None:
        Path(path).write_text(content)
    result = uwsgisig(*[part.format(path=path) for part in spelling])
    assert result.returncode == 2
    assert message.format(path=path) in result.stderr


# -------------------------------------------------------------------- POSIX signals


SLOW = """
import time

@Signal(5).register_handler(target="worker1")
def slow(num):
    record("slow", num)
    block()

@Signal(6).register_handler(target="worker")
def quick(num):
    record("quick", num)
"""


def test_sigusr1_logs_statistics_and_sigusr2_the_workers(start_app):
    app = start_app(SLOW, workers=2, mules=1)
    app.handle.signal(5)
    app.wait_records("slow", 1)
    for _ in range(3):
        app.handle.signal(6)
    app.wait_records("quick", 3)
    os.kill(app.handle.pid, signal.SIGUSR1)
    log_has(app, "stats: mule 1 (pid")
    log = app.log.read_text()
    assert f"stats: master pid {app.handle.pid} up" in log
    assert "4 signals raised" in log
    assert "stats: worker 1 (pid" in log
    assert "in handler app0:slow of signal 5" in log
    assert "stats: worker 2 (pid" in log
    os.kill(app.handle.pid, signal.SIGUSR2)
    log_has(app, "status: worker 2 (pid")
    status = [line for line in app.log.read_text().splitlines() if "status: " in line]
    assert len(status) == 2  # the workers only
    assert "in handler app0:slow of signal 5" in status[0]
    assert "idle" in status[1]
    app.release()


def test_sigtstp_pauses_delivery_and_a_second_one_delivers_what_was_kept(start_app):
    app = start_app(SLOW, workers=2)
    os.kill(app.handle.pid, signal.SIGTSTP)
    log_has(app, "SIGTSTP: paused")
    for _ in range(5):
        app.handle.signal(6)
    os.kill(app.handle.pid, signal.SIGUSR1)  # the master reads the raises first, then this
    log_has(app, "; PAUSED")
    assert "5 queued (5 in shared queues or paused)" in app.log.read_text()
    assert app.records("quick") == []
    os.kill(app.handle.pid, signal.SIGTSTP)
    log_has(app, "SIGTSTP: resumed; delivering 5 kept signals")
    assert len(app.wait_records("quick", 5)) == 5


# -------------------------------------------------------------------- touch files


@pytest.mark.parametrize("option", ["touch_reload", "touch_workers_reload"])
def test_touching_a_reload_file_reloads_the_workers(start_app, tmp_path, option):
    touched = tmp_path / "reload-me"
    app = start_app("", workers=2, mules=1, **{option: [touched]})
    before = worker_pids(app)
    touched.touch()  # it did not exist: appearing counts as a touch
    log_has(app, f"{touched} was touched: reloading the workers")
    wait_for(
        lambda: {w: p for w, p in worker_pids(app).items() if w.startswith("worker")}.values()
        and not {worker_pids(app)[w] for w in ("worker1", "worker2")} & set(before.values()),
        20,
        "the workers to be replaced",
    )
    assert worker_pids(app)["mule1"] == before["mule1"]  # only the workers


def test_touching_the_mules_file_reloads_the_mules_programmed_ones_too(start_app, tmp_path):
    touched = tmp_path / "mules"
    touched.touch()
    app = start_app(
        """
        import time

        def loop():
            while True:
                time.sleep(60)

        Mule(2, loop=loop)
        """,
        workers=1,
        mules=1,
        touch_mules_reload=[touched],
    )
    before = worker_pids(app)
    os.utime(touched, (1, 1))  # another modification time
    log_has(app, f"{touched} was touched: reloading the mules")
    wait_for(
        lambda: all(
            worker_pids(app).get(m) not in (None, before[m]) for m in ("mule1", "mule2")
        ),
        20,
        "both mules to be replaced",
    )
    assert worker_pids(app)["worker1"] == before["worker1"]


# -------------------------------------------------------------------- habits


def test_version():
    result = uwsgisig("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("uwsgisig ")


def test_an_abbreviated_flag_is_refused_not_guessed(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("")
    result = uwsgisig("run", str(app), "--work", "2")
    assert result.returncode == 2
    assert "unrecognized arguments: --work" in result.stderr


@pytest.mark.parametrize("flag", ["-w", "-p", "--processes", "--workers"])
def test_uwsgi_spellings_of_the_worker_count_are_taken(tmp_path, flag):
    app = tmp_path / "app.py"
    app.write_text(
        "import os, signal, uwsgisig\n"
        "@uwsgisig.postfork\n"
        "def stop():\n"
        "    if uwsgisig.worker_id() == 3:\n"
        "        print('three workers', flush=True)\n"
        "        os.kill(uwsgisig.masterpid(), signal.SIGINT)\n"
    )
    result = uwsgisig("run", str(app), flag, "3", "-M", "--die-on-term")
    assert result.returncode == 0, result.stderr
    assert "three workers" in result.stdout


def test_a_module_app_is_found_in_the_current_directory_and_on_pythonpath(tmp_path):
    (tmp_path / "here.py").write_text("print('imported here', flush=True)\n")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "there.py").write_text("import here\nprint('imported there', flush=True)\n")
    stopper = tmp_path / "stopper.py"
    stopper.write_text("")
    for args in (
        ["run", "here", "--workers", "1"],
        ["run", "there", "--pythonpath", str(extra)],
        ["run", "there", "--chdir", str(tmp_path), "--pythonpath", str(extra)],
    ):
        proc = subprocess.Popen(
            [sys.executable, "-m", "uwsgisig", *args],
            cwd=tmp_path if "--chdir" not in args else ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = proc.stdout.readline() if proc.stdout else ""
        pids = children_of(proc.pid) | {proc.pid}
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert line.startswith("imported"), err
        assert_all_gone(pids)


def test_log_level_warning_hides_the_info_lines(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(
        "import os, signal, uwsgisig\n"
        "@uwsgisig.postfork\n"
        "def stop():\n"
        "    os.kill(uwsgisig.masterpid(), signal.SIGINT)\n"
    )
    quiet = uwsgisig("run", str(app), "--log-level", "warning")
    assert quiet.returncode == 0, quiet.stderr
    assert "INFO" not in quiet.stderr
    loud = uwsgisig("run", str(app))
    assert "INFO uwsgisig master" in loud.stderr
    bad = uwsgisig("run", str(app), "--log-level", "chatty")
    assert bad.returncode == 2
    assert "invalid choice: 'chatty'" in bad.stderr


# -------------------------------------------------------------------- the master FIFO


def shell_write(fifo: Path, text: str) -> None:
    """``echo TEXT > FIFO``, as an operator types it."""
    subprocess.run(["sh", "-c", f"echo '{text}' > '{fifo}'"], check=True, timeout=10)


def replaced(app, before: dict[str, int], who: tuple[str, ...]) -> bool:
    now = worker_pids(app)
    return all(now.get(w) not in (None, before[w]) for w in who)


@pytest.mark.parametrize("letter", ["r", "w", "R", "W", "c"])
def test_fifo_reloads_replace_every_worker(start_app, tmp_path, letter):
    fifo = tmp_path / "master.fifo"
    app = start_app(SLOW, workers=2, mules=1, master_fifo=[fifo])
    before = worker_pids(app)
    shell_write(fifo, letter)
    wait_for(lambda: replaced(app, before, ("worker1", "worker2")), 20, f"reload by {letter!r}")
    assert worker_pids(app)["mule1"] == before["mule1"]
    app.handle.wait_ready()
    app.handle.signal(6)  # the new workers serve
    app.wait_records("quick", 1)


def test_fifo_chain_reload_waits_for_each_new_worker_before_the_next(start_app, tmp_path):
    fifo = tmp_path / "master.fifo"
    app = start_app("", workers=3, master_fifo=[fifo])
    before = worker_pids(app)
    shell_write(fifo, "c")
    wait_for(lambda: replaced(app, before, ("worker1", "worker2", "worker3")), 30, "chain")
    lines = [line for line in app.log.read_text().splitlines() if "reloaded" in line]
    assert [line.split("reloaded")[0].split("INFO ")[1].split(" (pid")[0] for line in lines] == [
        "worker 1",
        "worker 2",
        "worker 3",
    ]  # one after another, in order


def test_fifo_stats_pause_pidfile_and_unknown_letters(start_app, tmp_path):
    fifo = tmp_path / "master.fifo"
    pidfile = tmp_path / "master.pid"
    app = start_app(SLOW, workers=1, master_fifo=[fifo], pidfile=pidfile)
    shell_write(fifo, "s")
    log_has(app, "stats: worker 1 (pid")
    shell_write(fifo, "p")  # pause
    log_has(app, "SIGTSTP: paused")
    app.handle.signal(6)
    shell_write(fifo, "s p")  # two commands in one write: stats, then resume
    log_has(app, "; PAUSED")
    log_has(app, "SIGTSTP: resumed; delivering 1 kept signals")
    app.wait_records("quick", 1)
    pidfile.unlink()
    shell_write(fifo, "P")
    wait_for(pidfile.exists, 20, "the pidfile to be written again")
    assert pidfile.read_text() == f"{app.handle.pid}\n"
    shell_write(fifo, "x")
    log_has(app, "master FIFO: unknown command 'x' ignored")


def test_fifo_reopens_and_rotates_the_log(start_app, tmp_path):
    fifo = tmp_path / "master.fifo"
    app = start_app("", workers=1, master_fifo=[fifo])
    moved = tmp_path / "moved.log"
    app.log.rename(moved)  # as logrotate does
    shell_write(fifo, "l")
    wait_for(app.log.exists, 20, "a new log file")
    log_has(app, "log file reopened")
    shell_write(fifo, "L")
    wait_for(lambda: list(tmp_path.glob("log.txt.*")), 20, "a rotated log file")
    rotated = next(tmp_path.glob("log.txt.*"))
    assert "log file reopened" in rotated.read_text()
    log_has(app, f"log file rotated: the old one is {rotated}")


def test_only_the_selected_fifo_is_obeyed_and_a_digit_selects_another(start_app, tmp_path):
    first, second = tmp_path / "first.fifo", tmp_path / "second.fifo"
    app = start_app("", workers=1, master_fifo=[first, second])
    shell_write(second, "s")
    log_has(app, f"master FIFO {second} is not the selected one")
    assert "stats:" not in app.log.read_text()
    shell_write(first, "1")
    log_has(app, f"master FIFO: {second} is the selected FIFO now")
    shell_write(second, "s")
    log_has(app, "stats: master pid")


@pytest.mark.parametrize("letter", ["q", "Q"])
def test_fifo_stops_the_runtime(start_app, tmp_path, letter):
    fifo = tmp_path / "master.fifo"
    app = start_app("", workers=2, master_fifo=[fifo])
    pids = set(app.handle.pids())
    shell_write(fifo, letter)
    assert_all_gone(pids)
    assert not fifo.exists()  # the master removes the FIFOs it made
    assert app.handle.stop() == 0


# -------------------------------------------------------------------- titles and the summary


def test_every_process_is_named_for_ps_and_pgrep(start_app, tmp_path):
    app = start_app("", workers=2, mules=1, spooler=True)
    by_who = app.pids_by_who()
    comm = {who: Path(f"/proc/{pid}/comm").read_text().strip() for who, pid in by_who.items()}
    assert comm == {
        "master": "uwsgisig master",
        "worker1": "uwsgisig w1",
        "worker2": "uwsgisig w2",
        "mule1": "uwsgisig m1",
        "spooler": "uwsgisig spooler"[:15],
    }
    args = Path(f"/proc/{by_who['worker2']}/cmdline").read_bytes().decode()
    assert args.startswith("uwsgisig worker 2 [")  # the whole title (setproctitle)
    assert "app0.py]" in args


def test_the_start_logs_the_signal_table_timers_and_crons_in_words(start_app):
    app = start_app(
        """
        from uwsgisig import scheduling

        @Signal(9).register_handler(target="workers")
        def refresh(num):
            pass

        @scheduling.register_timer(30, target="worker")
        def tick(num):
            pass

        @scheduling.register_cron(minute=0, hour=3, target="worker")
        def nightly(num):
            pass
        """
    )
    log = app.log.read_text()
    assert "signal 9 -> workers: app0:refresh" in log
    assert "signal 0 -> worker: app0:tick" in log
    assert "timer: signal 0 every 30 s, next in 30.0 s" in log
    assert "cron: signal 1 at '0 3 * * *', next " in log
    assert " 03:00" in log
