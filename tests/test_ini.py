"""uWSGI ini files as ``uwsgisig run`` options (``--ini``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import assert_all_gone, children_of
from uwsgisig.ini import IniError, read_ini

pytestmark = pytest.mark.timeout(60)

DATA = Path(__file__).parent / "data" / "ini"
ROOT = Path(__file__).resolve().parent.parent


def test_a_django_projects_file_maps_what_applies_and_lists_the_rest():
    ini = read_ini(str(DATA / "django_spooler.ini"))
    here = f"{DATA}{os.sep}"
    assert ini.app == "site_django_spooler.wsgi"  # %n, and the module without its callable
    assert ini.argv == [
        "--workers", "2", "--chdir", here, "--spooler", f"{here}/spooler",
        "--spooler-processes", "2", "--spooler-frequency", "10",
    ]  # fmt: skip
    assert ini.command == ["/bin/sh", "-c", f"{here}/venv/bin/python {here}/manage.py listener"]
    assert ini.ignored == [
        "procname", "http", "uid", "gid", "chmod-socket", "virtualenv", "post-buffering",
        "buffer-size", "spooler-chdir", "spooler-import", "cron", "log-format",
    ]  # fmt: skip


def test_a_percent_name_that_is_no_option_stays_as_written(tmp_path):
    path = tmp_path / "log.ini"
    path.write_text("[uwsgi]\nlogto = %(chdir)x.log\nchdir = /srv/\nlogto = %(chdir)x.log\n")
    assert read_ini(str(path)).argv == [
        "--log-file", "%(chdir)x.log", "--chdir", "/srv/", "--log-file", "/srv/x.log",
    ]  # fmt: skip


def test_stats_over_http_and_an_option_referring_to_another():
    ini = read_ini(str(DATA / "stats_http.ini"))
    assert ini.app == "conf.run.site_wsgi"
    assert ini.argv == [
        "--chdir", "/srv/engine/", "--workers", "6", "--log-file", "/srv/engine/logs/uwsgi.log",
        "--stats", "127.0.0.1:1717", "--stats-http", "--spooler", "/srv/engine/export/spooler/",
    ]  # fmt: skip
    assert "memory-report" in ini.ignored
    assert "max-requests" in ini.ignored


def test_a_number_followed_by_a_comment_and_env_lines(monkeypatch):
    monkeypatch.delenv("UWSGISIG_INI_TEST", raising=False)
    ini = read_ini(str(DATA / "frequency_comment.ini"))
    assert ini.argv[4:6] == ["--spooler-frequency", "1"]  # as uWSGI's atoi() reads it
    assert ini.app == "/srv/service/app.py"
    assert os.environ["UWSGISIG_INI_TEST"] == "from-the-file"


def test_mules_farms_timers_and_a_named_section():
    ini = read_ini(str(DATA / "mules_timers.ini"))
    here = f"{DATA}{os.sep}"
    assert ini.argv == [
        "--workers", "2", "--die-on-term", "--farm", "images:1,2", "--timer", "17", "1",
        "--rbtimer", "18", "3600", "--pidfile", f"{here}mules_timers.pid",
        "--master-fifo", f"{here}mules_timers.fifo", "--touch-reload", f"{here}mules_timers.reload",
        "--mules", "2",
    ]  # fmt: skip
    assert ini.ignored == []
    other = read_ini(f"{DATA / 'mules_timers.ini'}:other")
    assert other.argv == ["--workers", "9"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[uwsgi]\nprocesses = many\n", "line 2: processes = 'many': not a whole number"),
        ("[uwsgi]\nthis is not an option\n", "line 2: not a 'key = value' line"),
        ("[uwsgi]\ntimer = 17\n", "line 2: timer = '17': give SIGNAL SECONDS"),
        ("[uwsgi]\nstats-http = perhaps\n", "not a boolean"),
        ("[other]\nprocesses = 2\n", "has no [uwsgi] section"),
    ],
)
def test_a_bad_file_is_refused_naming_the_line(tmp_path, text, message):
    path = tmp_path / "bad.ini"
    path.write_text(text)
    with pytest.raises(IniError) as raised:
        read_ini(str(path))
    assert message in str(raised.value)


TIMER_APP = """
import os
import signal

import uwsgisig
from uwsgisig import Signal

@Signal(17).register_handler(target="worker")
def tick(num):
    print(f"tick on worker {uwsgisig.worker_id()} of {uwsgisig.lowlevel.numproc()}", flush=True)
    os.kill(uwsgisig.masterpid(), signal.SIGINT)
"""


def test_a_runtime_runs_from_an_ini_file_and_the_command_line_wins(tmp_path):
    shutil.copy(DATA / "mules_timers.ini", tmp_path / "mules_timers.ini")
    (tmp_path / "timer_app.py").write_text(TIMER_APP)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uwsgisig", "run", "--ini", str(tmp_path / "mules_timers.ini"),
         "--workers", "3"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        pids = children_of(proc.pid)
        proc.kill()
    assert proc.returncode == 0, err
    assert "tick on worker" in out
    assert "of 3" in out  # --workers 3 beat the file's processes = 2
    assert "running 3 workers, 2 mules" in err
    assert not (tmp_path / "mules_timers.fifo").exists()  # the master made it, then removed it
    assert_all_gone(pids)


def test_unsupported_options_are_listed_once_in_a_warning(tmp_path):
    (tmp_path / "app.py").write_text(
        "import os, signal, uwsgisig\n"
        "@uwsgisig.postfork\n"
        "def stop():\n"
        "    os.kill(uwsgisig.masterpid(), signal.SIGINT)\n"
    )
    (tmp_path / "app.ini").write_text(
        "[uwsgi]\nwsgi-file = app.py\nbuffer-size = 30\nbuffer-size = 60\nsocket = :3031\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "uwsgisig", "run", "--ini", "app.ini"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warning == [
        "uwsgisig: warning: app.ini: these uWSGI options mean nothing here and are ignored: "
        "buffer-size, socket"
    ]


def test_no_app_anywhere_is_an_error(tmp_path):
    (tmp_path / "app.ini").write_text("[uwsgi]\nprocesses = 2\n")
    result = subprocess.run(
        [sys.executable, "-m", "uwsgisig", "run", "--ini", "app.ini"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "give APP (a module or a .py file), or --ini FILE" in result.stderr


def test_the_cluster_options(tmp_path):
    path = tmp_path / "node.ini"
    path.write_text(
        "[uwsgi]\ncluster = redis://10.0.0.5:6379/2\ncluster-name = shop\ncluster-node = %n\n"
    )
    assert read_ini(str(path)).argv == [
        "--cluster", "redis://10.0.0.5:6379/2", "--cluster-name", "shop", "--cluster-node", "node",
    ]  # fmt: skip
