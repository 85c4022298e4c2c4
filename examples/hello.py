"""A small uwsgisig app: a signal for every worker, one for the first free
worker, one for a mule, and a mule that stops the runtime when all ran.

Run it with::

    uwsgisig run examples/hello.py --workers 2

Worker 1 raises the signals right after fork. Every handler reports to mule 1
by raising ``ran``, a signal for that mule; when mule 1 has heard from all of
them it stops the whole runtime.
"""

import os
import signal

import uwsgisig
from uwsgisig import Mule, Signal, lowlevel

reporter = Mule(1)

everyone = Signal()
first_free = Signal()
to_mule = Signal()
ran = Signal()

FIRST_FREE_TIMES = 3
heard = 0  # in mule 1: how many handlers reported


@everyone.register_handler(target="workers")
def hello_every_worker(num: int) -> None:
    print(f"signal {num}: worker {uwsgisig.worker_id()} (pid {os.getpid()}) says hello", flush=True)
    ran.send()


@first_free.register_handler(target="worker")
def hello_first_free(num: int) -> None:
    print(f"signal {num}: the first free worker was worker {uwsgisig.worker_id()}", flush=True)
    ran.send()


@to_mule.register_handler(target=reporter)
def hello_mule(num: int) -> None:
    print(f"signal {num}: mule {uwsgisig.mule_id()} (pid {os.getpid()}) collects", flush=True)
    ran.send()


@ran.register_handler(target=reporter)
def collect_and_stop(num: int) -> None:
    global heard
    heard += 1
    expected = lowlevel.numproc() + FIRST_FREE_TIMES + 1  # the mule's own report too
    if heard == expected:
        print(f"all {expected} handlers ran: stopping the runtime", flush=True)
        os.kill(uwsgisig.masterpid(), signal.SIGINT)


@uwsgisig.postfork
def drive() -> None:
    # Only worker 1 drives; every other process just serves signals.
    if uwsgisig.worker_id() == 1:
        everyone.send()
        for _ in range(FIRST_FREE_TIMES):
            first_free.send()
        to_mule.send()
