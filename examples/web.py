"""uwsgisig beside gunicorn: views raise signals and offload work to a mule.

Run it with (gunicorn is in the ``gunicorn`` extra)::

    uwsgisig run examples/web.py -- gunicorn -c python:uwsgisig.gunicorn -w 2 \\
        -b 127.0.0.1:8000 --chdir examples web:app

The runtime starts gunicorn, whose two workers attach as the runtime's
workers 1 and 2. Mule 2 plays a visitor of the site: it requests ``/``
until both workers have answered, then ``/refresh`` (a signal that every
worker runs) and ``/resize/photo.jpg`` (a call offloaded to mule 1). Each
handler reports to mule 2 by raising ``ran``; once all have, mule 2 stops
the runtime, which stops gunicorn.
"""

import os
import signal
import time
import urllib.request

import uwsgisig
from uwsgisig import Mule, Signal

SITE = f"http://127.0.0.1:{os.environ.get('WEB_EXAMPLE_PORT', '8000')}"  # gunicorn's -b
WORKERS = 2  # gunicorn -w 2

resizer = Mule(1)
refresh = Signal()
ran = Signal()


@refresh.register_handler(target="workers")
def drop_cache(num: int) -> None:
    print(f"worker {uwsgisig.worker_id()} (pid {os.getpid()}) dropped its cache", flush=True)
    ran.send()


@resizer.offload
def resize(name: str) -> None:
    print(f"mule {uwsgisig.mule_id()} resized {name}, away from the requests", flush=True)
    ran.send()


def app(environ: dict, start_response: object) -> list[bytes]:
    """The site: every view says which worker served it."""
    path = environ["PATH_INFO"]
    if path == "/refresh":
        refresh.send()
    elif path.startswith("/resize/"):
        resize(path.removeprefix("/resize/"))
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [f"{path} served by worker {uwsgisig.worker_id()}\n".encode()]


def visit(path: str, *, quiet: bool = False) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(SITE + path, timeout=10) as response:
                answer = response.read().decode().strip()
                if not quiet:
                    print(f"GET {path}: {answer}", flush=True)
                return answer
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # gunicorn is still starting


def visitor() -> None:
    """Mule 2's loop: visit the site, wait for every handler, stop the runtime."""
    served_by = set()
    while len(served_by) < WORKERS:  # until both workers are up (and so attached)
        served_by.add(visit("/", quiet=True).rsplit(" ", 1)[-1])
    print(f"GET /: workers {sorted(served_by)} have answered", flush=True)
    visit("/refresh")
    visit("/resize/photo.jpg")
    for _ in range(WORKERS + 1):  # each worker's cache drop, and the resize
        ran.wait(timeout=30)
    print(f"all {WORKERS + 1} handlers ran: stopping the runtime and gunicorn", flush=True)
    os.kill(uwsgisig.masterpid(), signal.SIGINT)
    time.sleep(30)  # the runtime stops this mule too


@ran.register_handler(target="mule2")
def heard(num: int) -> None:
    pass  # it ends mule 2's wait()


Mule(2, loop=visitor)
