"""``uwsgisig run APP [-- COMMAND...]``: run an app on the embedded runtime, in the foreground.

With a command (a web server, e.g. ``-- gunicorn -w 4 app:wsgi``), the runtime
runs it beside itself and the server's workers attach as the runtime's workers.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence

from . import compat
from .errors import UwsgisigError
from .runtime import Runtime
from .runtime.model.config import parse_farm

__all__ = ["main"]

# Worker slots kept for a COMMAND's workers: room for a server that starts a
# new generation of workers before the old one leaves (a gunicorn reload).
COMMAND_ATTACH_SLOTS = 64


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uwsgisig", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run APP (a module or a .py file) on the runtime",
        usage="uwsgisig run APP [options] [-- COMMAND...]",
        epilog="COMMAND, after '--', runs beside the runtime (uWSGI's attach-daemon), e.g. "
        "'-- gunicorn -c python:uwsgisig.gunicorn -w 4 app:wsgi': its workers attach as the "
        "runtime's workers",
    )
    run.add_argument("app", help="module name or path of a .py file, imported in the master")
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes the runtime forks (default 1, or 0 when a COMMAND is given)",
    )
    run.add_argument(
        "--attach",
        type=int,
        default=None,
        metavar="N",
        help="worker slots for processes that attach, e.g. a server's workers (default 0, "
        f"or {COMMAND_ATTACH_SLOTS} when a COMMAND is given)",
    )
    run.add_argument(
        "--attach-socket",
        metavar="PATH",
        help="the unix socket where workers attach (default: one in a private temporary "
        "directory, in $UWSGISIG_ATTACH for the COMMAND)",
    )
    run.add_argument("--mules", type=int, default=0, help="mule processes (default 0)")
    run.add_argument(
        "--farm",
        action="append",
        default=[],
        metavar="NAME:ID,ID",
        help="a farm of mules, e.g. images:1,2 (repeatable)",
    )
    run.add_argument(
        "--mule",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="a mule that runs this function (or .py script) as its loop (repeatable)",
    )
    run.add_argument(
        "--spooler",
        nargs="?",
        const=True,
        default=False,
        metavar="DIR",
        help="start a spooler process; with DIR, it runs the spool jobs kept there",
    )
    run.add_argument(
        "--spooler-frequency",
        type=float,
        default=30.0,
        help="seconds between the spooler's looks at DIR and job retries (default 30)",
    )
    run.add_argument(
        "--queue-size",
        type=int,
        default=65536,
        help="signals the master holds before senders wait (default 65536)",
    )
    run.add_argument(
        "--send-timeout",
        type=float,
        default=30.0,
        help="seconds send() waits on a full queue before it raises (default 30)",
    )
    run.add_argument(
        "--stop-timeout",
        type=float,
        default=5.0,
        help="seconds to wait for children on stop before SIGKILL (default 5)",
    )
    run.add_argument(
        "--graceful-stop",
        action="store_true",
        help="on SIGTERM, let running handlers finish (up to --stop-timeout) instead of "
        "ending them; SIGINT and SIGQUIT still stop at once",
    )
    run.add_argument("--log-file", help="write the log here instead of stderr")
    run.add_argument(
        "--remote-signals",
        metavar="HOST:PORT",
        help="take uwsgi-protocol signals from other nodes on this address, loopback only "
        "unless --remote-signals-any (port 0: any free port, logged at start)",
    )
    run.add_argument(
        "--remote-signals-any",
        action="store_true",
        help="let --remote-signals listen on a non-loopback address: whoever reaches it "
        "can raise any signal",
    )
    run.add_argument(
        "--uwsgi-compat",
        action="store_true",
        help="let APP `import uwsgi` (and uWSGI's uwsgidecorators): its signal, timer, cron, "
        "file-monitor, mule, farm and spooler calls run on this runtime; its other calls "
        "raise NotImplementedError",
    )
    return parser


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The runtime's arguments, and the COMMAND after the first ``--`` (maybe empty)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``uwsgisig`` command."""
    own, command = split_command(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own)
    if "--" in (argv if argv is not None else sys.argv[1:]) and not command:
        print("uwsgisig: error: nothing after '--': give the COMMAND to run", file=sys.stderr)
        return 2
    if command and shutil.which(command[0]) is None:
        print(f"uwsgisig: error: command {command[0]!r} not found on PATH", file=sys.stderr)
        return 2
    workers = args.workers if args.workers is not None else (0 if command else 1)
    attach = args.attach if args.attach is not None else (COMMAND_ATTACH_SLOTS if command else 0)
    if args.uwsgi_compat:
        compat.install()  # before the master imports the app
    try:
        runtime = Runtime(
            args.app,
            workers=workers,
            attach=attach,
            attach_socket=args.attach_socket,
            command=command,
            mules=args.mules,
            farms=[parse_farm(text) for text in args.farm],
            mule_loops=args.mule,
            spooler=args.spooler,
            spooler_frequency=args.spooler_frequency,
            queue_size=args.queue_size,
            send_timeout=args.send_timeout,
            stop_timeout=args.stop_timeout,
            graceful_stop=args.graceful_stop,
            log_file=args.log_file,
            remote_signals=args.remote_signals,
            remote_signals_any=args.remote_signals_any,
        )
        return runtime.run()
    except (UwsgisigError, ValueError, ImportError, OSError) as exc:
        print(f"uwsgisig: error: {exc}", file=sys.stderr)
        return 2
