"""uwsgisig's API under a real uWSGI: messages, mule loops, the spooler, and clear refusals.

Run with 1 worker, mules 1 to 3 and a spooler. Every outcome is appended to
the file named by ``UWSGISIG_TEST_OUT`` as ``<what> <who> <pid>``.
"""

import os

from recording import OUT, record

from uwsgisig import Mule, Signal, TargetError, lowlevel, postfork, scheduling, spooler


def refused(what: str, call) -> None:
    """Record the type of the error ``call()`` raises, or 'accepted'."""
    try:
        call()
    except (NotImplementedError, TargetError, ValueError) as exc:
        record(what, type(exc).__name__)
    else:
        record(what, "accepted")


refused("half-second-timer", lambda: scheduling.register_timer(0.5, target="worker")(print))
refused("crontab-list", lambda: scheduling.register_cron("1,2 * * * *", target="worker")(print))
refused("crontab-step", lambda: scheduling.register_cron("*/5 * * * *", target="worker")(print))
refused("bad-target", lambda: Signal(40).register_handler(target="workerz")(print))
Signal(41).register_handler(target="worker")(print)
refused("twice", lambda: Signal(41).register_handler(target="worker")(print))


@Mule.on_message
def on_message(message: bytes) -> None:
    record("message", message.decode())


RESTARTED = OUT + ".restarted"


def mule_3_loop() -> None:
    record("loop")
    if not os.path.exists(RESTARTED):
        open(RESTARTED, "w").close()
        return  # uWSGI starts the mule again
    while True:
        Mule(3).get_message()


Mule(3, loop=mule_3_loop)


@spooler.handler
def run_job(job: dict) -> None:
    # Values come back as they went in, as on uwsgisig's own runtime.
    record("job", job["name"], job["body"].decode(), type(job["name"]).__name__)


@postfork
def in_worker_1() -> None:
    if lowlevel.worker_id() != 1:
        return
    Mule(1).send("hello")
    spooler.spool(name="j1", body=b"payload")
    refused("wait-timeout", lambda: Signal(42).wait(timeout=1))


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"uwsgisig\n"]
