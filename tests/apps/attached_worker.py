"""A process that attaches to a runtime as a worker, then obeys one command per stdin line.

Run as ``python attached_worker.py APP.py``: it imports the app under the
name the runtime's master gives it (the file's stem), attaches through
``$UWSGISIG_ATTACH`` (saying its server runs ``$ATTACH_WORKERS`` workers, if
set) and prints ``{"id": ..., "pid": ...}``. Then each line
is a command, answered by one JSON line once it is done:

- ``send NUM COUNT THREADS``: COUNT sends of NUM from each of THREADS threads;
- ``wait NUM TIMEOUT``: wait() for NUM in a thread other than the signal loop's;
- ``call NAME ARG``: call the app's function NAME with ARG (a spool, an offload);
- ``detach``, ``exit``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
from pathlib import Path

import uwsgisig
from uwsgisig import AttachRefusedError, Signal


def import_app(path: str) -> object:
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def answer(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def send_from_threads(num: int, count: int, threads: int) -> None:
    def send() -> None:
        signal = Signal(num)
        for _ in range(count):
            signal.send()

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def wait_in_a_thread(num: int, timeout: float) -> int | None:
    """wait() in a thread of its own, as a server's request thread would."""
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(Signal(num).wait(timeout=timeout)))
    waiter.start()
    waiter.join()
    return got[0] if got else None


def main() -> None:
    app = import_app(sys.argv[1])
    try:
        size = os.environ.get("ATTACH_WORKERS")
        worker_id = uwsgisig.attach(workers=int(size) if size else None)
    except AttachRefusedError as exc:
        answer(refused=str(exc))
        return
    answer(id=worker_id, pid=os.getpid())
    for line in sys.stdin:
        command, *args = line.split()
        if command == "send":
            send_from_threads(int(args[0]), int(args[1]), int(args[2]))
            answer(done=command)
        elif command == "wait":
            answer(done=command, got=wait_in_a_thread(int(args[0]), float(args[1])))
        elif command == "call":
            getattr(app, args[0])(args[1])
            answer(done=command)
        elif command == "detach":
            uwsgisig.detach()
            answer(done=command, id=uwsgisig.worker_id())
        elif command == "exit":
            answer(done=command)
            return


if __name__ == "__main__":
    main()
