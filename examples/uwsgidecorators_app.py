"""An app written for uWSGI, with ``import uwsgi`` and uWSGI's ``uwsgidecorators``.

uwsgisig runs it unchanged::

    uwsgisig run examples/uwsgidecorators_app.py --uwsgi-compat \\
        --workers 2 --mules 2 --farm pool:2 --spooler /tmp/spool

as uWSGI would with ``--master --processes 2 --mules 2 --farm pool:2
--spooler /tmp/spool``. Right after fork, worker 1 raises a signal for every
worker, calls a function in mule 1, sends a message to the farm and spools a
job. A timer ticks in a worker and touches a watched directory on its first
tick; a cron job fires in a worker.

Each handler appends a line ``WHAT ... WHO PID`` to ``records.txt`` in the
directory named by ``UWSGIDECORATORS_APP_DIR`` (a temporary one by default).
Stop it with Ctrl-C.
"""

import os
import tempfile

import uwsgi
from uwsgidecorators import cron, farm, filemon, mulefunc, postfork, signal, spool, timer

DIR = os.environ.get("UWSGIDECORATORS_APP_DIR") or tempfile.mkdtemp(prefix="uwsgidecorators-")
RECORDS = os.path.join(DIR, "records.txt")
WATCHED = os.path.join(DIR, "watched")
os.makedirs(WATCHED, exist_ok=True)

HELLO = 10


def who() -> str:
    if uwsgi.worker_id():
        return f"worker{uwsgi.worker_id()}"
    if uwsgi.mule_id():
        return f"mule{uwsgi.mule_id()}"
    if uwsgi.i_am_the_spooler():
        return "spooler"
    return "master"


def record(*words: object) -> None:
    line = " ".join(map(str, words)) + f" {who()} {os.getpid()}\n"
    # One write per line with O_APPEND: lines of many processes never mix.
    fd = os.open(RECORDS, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@postfork
def started() -> None:
    record("started")


@signal(HELLO, target="workers")
def hello(num: int) -> None:
    record("hello", num)


@timer(1, signum=20, target="worker")
def tick(num: int) -> None:
    record("tick", num)
    # Touched from a tick, not right after fork: uWSGI arms its file monitors
    # only once its master loop runs, and would miss an earlier change.
    touched = os.path.join(WATCHED, "touched")
    if not os.path.exists(touched):
        with open(touched, "w"):
            pass


@cron(-1, -1, -1, -1, -1, signum=21, target="worker")
def every_minute(num: int) -> None:
    record("cron", num)


@filemon(WATCHED, signum=22, target="workers")
def changed(num: int) -> None:
    record("changed", num)


@mulefunc(1)
def crunch(a: int, b: int, *, scale: int) -> None:
    record("crunch", a * b * scale)


@spool(pass_arguments=True)
def send_report(name: str, *, copies: int) -> None:
    record("report", name, copies)


@postfork
def drive() -> None:
    if uwsgi.worker_id() != 1:
        return
    uwsgi.signal(HELLO)
    crunch(6, 7, scale=2)
    uwsgi.farm_msg("pool", b"resize cat.png")
    send_report("daily", copies=3)


# Last: the farm's mules never return from this post-fork hook, so the hooks
# above must come first.
@farm("pool")
def pool_job(message: bytes) -> None:
    record("farm", message.decode().replace(" ", "_"))
