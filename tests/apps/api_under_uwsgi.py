"""uwsgisig's RPC and lock APIs under a real uWSGI: ``GET /`` answers what the calls gave."""

from uwsgisig import LockNumberError, RpcNotFoundError
from uwsgisig.locking import Lock
from uwsgisig.rpc import call, get_rpc_list, make_rpc_call, register_rpc


@register_rpc()
def hello(arg):
    return "hello " + arg.decode()


def rpc_calls():
    parts = [make_rpc_call("hello", args=["abc"]), call("hello", "x").decode()]
    parts.append(repr(get_rpc_list()))
    try:
        call("missing")
    except RpcNotFoundError as exc:
        parts.append(type(exc).__name__)
    return parts


def lock_calls():
    lock = Lock(1)
    parts = [str(lock.is_set)]
    with lock:
        parts.append(str(lock.is_set))
    parts.append(str(lock.is_set))
    try:
        Lock(7).acquire()  # uWSGI has locks 0 to 2 with --locks 2
    except LockNumberError as exc:
        parts.append(type(exc).__name__)
    return parts


def application(environ, start_response):
    calls = rpc_calls() if environ["PATH_INFO"] == "/rpc" else lock_calls()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["|".join(calls).encode()]
