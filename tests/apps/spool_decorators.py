"""uWSGI's spool decorators, written against uWSGI's own modules only.

Worker 1 spools one job of each kind after fork; each job appends one line of
JSON (what the decorated function got) to the file named by
``UWSGISIG_TEST_OUT``. Under ``uwsgisig run --uwsgi-compat`` and under a real
uWSGI the lines must be the same.
"""

import json
import os
import time

import uwsgi
from uwsgidecorators import postfork, spool, spoolforever, spoolraw

OUT = os.environ["UWSGISIG_TEST_OUT"]


def write(kind, value):
    line = json.dumps({"kind": kind, "value": value}, sort_keys=True) + "\n"
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def portable(args):
    """The job without the file's name, which differs between servers, and its shape."""
    name = args.pop("spooler_task_name")
    args["name is a file name"] = isinstance(name, str) and "/" not in name
    return {key: repr(value) for key, value in args.items()}


@spool
def plain(args):
    write("plain", portable(args))


@spool(pass_arguments=True)
def with_arguments(text, number, *, flag=None, data=None):
    write("with_arguments", [repr(text), repr(number), repr(flag), repr(data)])


@spoolraw
def raw(args):
    write("raw", portable(args))
    return uwsgi.SPOOL_OK


@spoolforever
def forever(args):
    write("forever", portable(args))  # again at every look of the spooler


def refusal(call):
    try:
        call()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "accepted"


@postfork
def spool_them():
    if uwsgi.worker_id() != 1:
        return
    plain.spool({"to": "ops"}, body=b"the body")
    plain.spool(text="later", priority="3")
    with_arguments.spool("caf\u00e9", 42, flag=True, data={"list": [1, 2.5, None]})
    raw.spool(key="value")
    forever.spool(round="1")
    write("refused at", refusal(lambda: plain.spool(x="y", at=int(time.time()) + 1)))
    write("refused mule message", refusal(lambda: uwsgi.mule_msg(b"x", "pool")))


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"spool decorators\n"]
