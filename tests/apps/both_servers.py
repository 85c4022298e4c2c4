"""One app, written against uwsgisig's API, run by uWSGI and by ``uwsgisig run``.

Each handler appends ``<what> <who> <pid>`` to the file named by
``UWSGISIG_TEST_OUT``; each process appends ``ready <who> <pid>`` once it is
forked. The test compares which processes ran what on the two servers.

Both servers run 2 workers, mules 1 and 2, farm ``pool`` of mules 1 and 2, and
a spooler.
"""

from recording import record

from uwsgisig import Farm, Mule, Signal, lowlevel, postfork
from uwsgisig.scheduling import register_timer_rb

# The signal number of each target: the test raises these from outside.
TARGETS = {
    "worker": 10,
    "worker1": 11,
    "worker2": 12,
    "workers": 13,
    "active-workers": 14,
    "mule": 15,
    "mule1": 16,
    "mule2": 17,
    "mules": 18,
    "farm_pool": 19,
    "farm1": 20,
    "spooler": 21,
}
MULE_2 = Mule(2)
POOL = Farm("pool", mules=[1, 2])
OBJECT_TARGETS = {"Mule(2)": (22, MULE_2), "Farm(pool)": (23, POOL)}
FROM_WORKER = 24  # raised by worker 1 itself, to every mule


def recorder(what: str):
    def handler(num: int) -> None:
        record(what)

    return handler


for target, num in TARGETS.items():
    Signal(num).register_handler(target=target)(recorder(target))
for name, (num, target_object) in OBJECT_TARGETS.items():
    Signal(num).register_handler(target=target_object)(recorder(name))
Signal(FROM_WORKER).register_handler(target="mules")(recorder("from-worker"))


@Mule(1).offload
def offloaded_to_mule1(word: str) -> None:
    record(f"offload-mule1:{word}")


@POOL.offload
def offloaded_to_pool(word: str) -> None:
    record(f"offload-pool:{word}")


@postfork
def ready() -> None:
    record("ready")
    if lowlevel.worker_id() == 1:
        Signal(FROM_WORKER).send()
        offloaded_to_mule1("a")
        offloaded_to_pool("b")


@register_timer_rb(1, 1, target="workers")
def one_tick(num: int) -> None:
    record("timer")


def application(environ, start_response):  # a WSGI app, for uWSGI's sake
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"uwsgisig\n"]
