"""A web app whose views raise signals, spool jobs and offload calls.

Served by gunicorn (``webapp:wsgi``), uvicorn, granian and hypercorn
(``webapp:asgi``) beside ``uwsgisig run webapp.py``. Every handler appends
a line ``<words> <who> <pid>`` to ``$WEBAPP_OUT``, where ``who`` is
``worker<N>``, ``mule<N>`` or ``spooler``. Views:

- ``/raise/NUM``: send signal NUM;
- ``/spool/WORD``: spool a job named WORD;
- ``/offload/WORD``: offload a call to mule 1;
- ``/farm/WORD``: send WORD to the farm of mule 1;
- ``/register/NUM``: register a handler for NUM here, after the attach;
- ``/id``: this worker's id and pid.

With ``$WEBAPP_ATTACH_AT_IMPORT`` set, the module attaches as it is
imported, as a WSGI module under a server with no hooks would.

Every view answers ``{"worker": ID, "pid": PID}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import uwsgisig
from uwsgisig import Farm, Mule, Signal, lowlevel, scheduling, spooler
from uwsgisig.asgi import attached

OUT = os.environ["WEBAPP_OUT"]
jobs = Mule(1)
mail = Farm("mail", mules=[1])


def who() -> str:
    if uwsgisig.mule_id():
        return f"mule{uwsgisig.mule_id()}"
    if lowlevel.i_am_the_spooler():
        return "spooler"
    return f"worker{uwsgisig.worker_id()}"


def record(*words: object) -> None:
    line = " ".join(str(word) for word in words)
    line += f" {who()} {os.getpid()}\n"
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@Signal(10).register_handler(target="workers")
def every_worker(num: int) -> None:
    record("every", num)


@Signal(11).register_handler(target="worker")
def first_free(num: int) -> None:
    record("one", num)


@Signal(12).register_handler(target="worker3")
def third(num: int) -> None:
    record("third", num)


@Signal(13).register_handler(target="worker2")
def second(num: int) -> None:
    record("second", num)


@Signal(14).register_handler(target="worker")
async def on_the_loop(num: int) -> None:
    await asyncio.sleep(0)
    # On the server's event loop, not in the worker's signal thread.
    record("coroutine", num, threading.current_thread().name.startswith("uwsgisig"))


if os.environ.get("WEBAPP_EXTRA"):  # set for the server only: its table differs

    @Signal(40).register_handler(target="worker")
    def only_in_the_server(num: int) -> None:
        record("extra", num)


if os.environ.get("WEBAPP_TICK"):

    @scheduling.register_timer(1, target="worker")
    def tick(num: int) -> None:
        record("tick", time.monotonic())


@spooler.handler
def run_job(job: dict) -> None:
    record("job", job["name"])


@jobs.offload
def offloaded(word: str) -> None:
    record("offloaded", word)


@Mule.on_message
def mailed(message: bytes) -> None:
    record("mailed", message.decode())


def late(num: int) -> None:
    record("late", num)


def respond(path: str) -> bytes:
    parts = path.strip("/").split("/")
    if parts[0] == "raise":
        Signal(int(parts[1])).send()
    elif parts[0] == "spool":
        spooler.spool({"name": parts[1]})
    elif parts[0] == "offload":
        offloaded(parts[1])
    elif parts[0] == "farm":
        mail.send(parts[1])
    elif parts[0] == "register":
        Signal(int(parts[1])).register_handler(target="worker")(late)
    return json.dumps({"worker": uwsgisig.worker_id(), "pid": os.getpid()}).encode()


def wsgi(environ: dict, start_response: object) -> list[bytes]:
    body = respond(environ["PATH_INFO"])
    start_response("200 OK", [("Content-Type", "application/json")])  # type: ignore[operator]
    return [body]


async def _asgi(scope: dict, receive: object, send: object) -> None:
    if scope["type"] != "http":
        raise ValueError(f"this app serves http only, not {scope['type']}")
    body = respond(scope["path"])
    await send(  # type: ignore[operator]
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"json")]}
    )
    await send({"type": "http.response.body", "body": body})  # type: ignore[operator]


asgi = attached(_asgi)

if os.environ.get("WEBAPP_ATTACH_AT_IMPORT"):
    uwsgisig.attach()
