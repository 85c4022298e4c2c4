"""A plain uWSGI app, written against uWSGI's own ``uwsgi`` module.

Signal 17 has a handler that appends ``seventeen <pid>`` to the file named by
``UWSGISIG_TEST_OUT``; signal 99 has none. ``GET /signal?num=N&to=HOST:PORT``
calls ``uwsgi.signal(N, "HOST:PORT")`` and answers ``ok`` or the exception it
raised, as ``<type>: <message>``.

RPC function ``shout`` answers its arguments upper-cased and joined by ``,``
(and ``uwsgi <pid>``); ``big`` answers 100,000 bytes; ``nothing`` answers None.
``GET /rpc?to=HOST:PORT&name=NAME&arg=A&arg=B`` calls ``uwsgi.rpc(...)`` and
answers ``repr()`` of the result, or the exception it raised.
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


def shout(*args):
    return b",".join(arg.upper() for arg in args) + f" uwsgi {os.getpid()}".encode()


uwsgi.register_rpc("shout", shout)
uwsgi.register_rpc("big", lambda: b"y" * 100_000)
uwsgi.register_rpc("nothing", lambda: None)


def call_rpc(query):
    args = [arg.encode() for arg in query.get("arg", [])]
    return repr(uwsgi.rpc(query["to"][0], query["name"][0].encode(), *args))


def application(environ, start_response):
    query = parse_qs(environ["QUERY_STRING"])
    if environ["PATH_INFO"] == "/rpc":
        try:
            answer = call_rpc(query)
        except Exception as exc:
            answer = f"{type(exc).__name__}: {exc}"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [answer.encode()]
    try:
        uwsgi.signal(int(query["num"][0]), query["to"][0])
        answer = "ok"
    except Exception as exc:
        answer = f"{type(exc).__name__}: {exc}"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [answer.encode()]
