"""A plain uWSGI app, written against uWSGI's own ``uwsgi`` module.

Signal 17 has a handler that appends ``seventeen <pid>`` to the file named by
``UWSGISIG_TEST_OUT``; signal 99 has none. ``GET /signal?num=N&to=HOST:PORT``
calls ``uwsgi.signal(N, "HOST:PORT")`` and answers ``ok`` or the exception it
raised, as ``<type>: <message>``.
"""

import os
from urllib.parse import parse_qs

import uwsgi

OUT = os.environ["UWSGISIG_TEST_OUT"]


def seventeen(num):
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"seventeen {os.getpid()}\n".encode())
    finally:
        os.close(fd)


uwsgi.register_signal(17, "worker", seventeen)


def application(environ, start_response):
    query = parse_qs(environ["QUERY_STRING"])
    try:
        uwsgi.signal(int(query["num"][0]), query["to"][0])
        answer = "ok"
    except Exception as exc:
        answer = f"{type(exc).__name__}: {exc}"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [answer.encode()]
