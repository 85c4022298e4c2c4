"""uwsgisig's RPC API under a real uWSGI: ``GET /`` answers what the calls gave."""

from uwsgisig import RpcNotFoundError
from uwsgisig.rpc import call, get_rpc_list, make_rpc_call, register_rpc


@register_rpc()
def hello(arg):
    return "hello " + arg.decode()


def application(environ, start_response):
    parts = [make_rpc_call("hello", args=["abc"]), call("hello", "x").decode()]
    parts.append(repr(get_rpc_list()))
    try:
        call("missing")
    except RpcNotFoundError as exc:
        parts.append(type(exc).__name__)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["|".join(parts).encode()]
