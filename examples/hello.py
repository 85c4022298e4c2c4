"""A small uwsgisig app: a signal for every worker, one for a mule, and a driver.

Run it with::

    uwsgisig run examples/hello.py --workers 2

Worker 1 raises a few signals after fork, prints who ran each handler, and
stops the whole runtime when the last handler has run.
"""

import os
import signal

import uwsgisig
from uwsgisig import Mule, Signal

reporter = Mule(1)

everyone = Signal()
first_free = Signal()
to_mule = Signal()
finished = Signal()


@everyone.register_handler(target="workers")
def hello_every_worker(num: int) -> None:
    print(f"signal {num}: worker {uwsgisig.worker_id()} (pid {os.getpid()}) says hello", flush=True)


@first_free.register_handler(target="worker")
def hello_first_free(num: int) -> None:
    print(f"signal {num}: first free worker was {uwsgisig.worker_id()}", flush=True)


@to_mule.register_handler(target=reporter)
def hello_mule(num: int) -> None:
    print(f"signal {num}: mule {uwsgisig.mule_id()} (pid {os.getpid()}) got it", flush=True)
    finished.send()


@finished.register_handler(target="mule1")
def stop_runtime(num: int) -> None:
    print("all done: stopping the runtime", flush=True)
    os.kill(uwsgisig.masterpid(), signal.SIGINT)


@uwsgisig.postfork
def drive() -> None:
    # Only worker 1 drives; every other process just serves signals.
    if uwsgisig.worker_id() == 1:
        everyone.send()
        for _ in range(3):
            first_free.send()
        to_mule.send()
