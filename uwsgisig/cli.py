"""The ``uwsgisig`` command: run an app on the embedded runtime, reload or stop one.

``uwsgisig run APP [-- COMMAND...]`` runs the master in the foreground. With a
command (a web server, e.g. ``-- gunicorn -w 4 app:wsgi``), the runtime runs it
beside itself and the server's workers attach as the runtime's workers.
``uwsgisig reload PIDFILE`` and ``uwsgisig stop PIDFILE`` (or uWSGI's spellings
``--reload PIDFILE`` and ``--stop PIDFILE``) signal a running master.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from collections.abc import Sequence

from . import compat
from ._version import __version__
from .errors import UwsgisigError
from .ini import IniError, read_ini
from .runtime import Runtime
from .runtime.model.config import parse_farm

__all__ = ["main"]

# Worker slots kept for a COMMAND's workers: room for a server that starts a
# new generation of workers before the old one leaves (a gunicorn reload).
COMMAND_ATTACH_SLOTS = 64


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uwsgisig",
        description=__doc__.splitlines()[0],
        allow_abbrev=False,  # `--work 2` must not quietly mean `--workers 2`
    )
    parser.add_argument("--version", action="version", version=f"uwsgisig {__version__}")
    parser.add_argument(
        "--reload", metavar="PIDFILE", help="gracefully reload the runtime whose pid is there"
    )
    parser.add_argument(
        "--stop", metavar="PIDFILE", help="stop the runtime whose pid is there, at once"
    )
    commands = parser.add_subparsers(dest="command")
    for name, what in (("reload", "gracefully reload"), ("stop", "stop at once")):
        control = commands.add_parser(
            name, help=f"{what} the runtime whose pid is in PIDFILE", allow_abbrev=False
        )
        control.add_argument("pidfile", metavar="PIDFILE")
    run = commands.add_parser(
        "run",
        allow_abbrev=False,
        help="run APP (a module or a .py file) on the runtime",
        usage="uwsgisig run APP [options] [-- COMMAND...]",
        epilog="COMMAND, after '--', runs beside the runtime (uWSGI's attach-daemon), e.g. "
        "'-- gunicorn -c python:uwsgisig.gunicorn -w 4 app:wsgi': its workers attach as the "
        "runtime's workers",
    )
    run.add_argument(
        "app",
        nargs="?",
        help="module name or path of a .py file, imported in the master (or --ini's "
        "module / wsgi-file)",
    )
    run.add_argument(
        "-w",
        "-p",
        "--workers",
        "--processes",
        dest="workers",
        type=int,
        default=None,
        help="worker processes the runtime forks (default 1, or 0 when a COMMAND is given)",
    )
    run.add_argument(
        "-M",
        "--master",
        action="store_true",
        help="accepted for uWSGI's command lines: the runtime always has a master",
    )
    run.add_argument(
        "--die-on-term",
        action="store_true",
        help="accepted for uWSGI's command lines: SIGTERM always stops the runtime",
    )
    run.add_argument("--pidfile", help="write the master's pid here while it runs")
    run.add_argument(
        "--harakiri",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="kill (and replace) a process whose signal handler runs this long (default 0: "
        "no limit)",
    )
    run.add_argument(
        "--locks",
        type=int,
        default=0,
        metavar="N",
        help="user locks 1 to N beside lock 0, which is always there (default 0)",
    )
    run.add_argument(
        "--cache",
        type=int,
        default=0,
        metavar="N",
        help="uWSGI's default cache, named 'default', holding N items (default: none)",
    )
    run.add_argument(
        "--cache2",
        action="append",
        default=[],
        metavar="KEYVAL",
        help="a cache, in uWSGI's syntax: name=NAME,items=N[,blocksize=BYTES,keysize=BYTES,"
        "purge_lru=1,math_initial=N,ignore_full=1] (repeatable)",
    )
    run.add_argument(
        "--stats",
        metavar="ADDR",
        help="serve the runtime's state as JSON (uWSGI's shape, for uwsgitop) on ADDR: "
        "a unix socket path or a loopback HOST:PORT",
    )
    run.add_argument("--stats-http", action="store_true", help="answer --stats over HTTP")
    run.add_argument(
        "--master-fifo",
        action="append",
        default=[],
        metavar="PATH",
        help="a named pipe for uWSGI's one-letter commands, e.g. `echo r > PATH` reloads "
        "(repeatable; the first is selected, a digit written to it selects another)",
    )
    for option, what in (
        ("--touch-reload", "reload the workers (as SIGHUP)"),
        ("--touch-workers-reload", "reload the workers"),
        ("--touch-mules-reload", "reload the mules"),
        ("--touch-chain-reload", "chain-reload the workers"),
        ("--touch-logreopen", "reopen the log file"),
        ("--touch-logrotate", "rotate the log file"),
    ):
        run.add_argument(
            option,
            action="append",
            default=[],
            metavar="FILE",
            help=f"{what} when FILE is touched (repeatable)",
        )
    for option, what in (("--timer", "a timer"), ("--rbtimer", "a red-black timer")):
        run.add_argument(
            option,
            nargs=2,
            action="append",
            default=[],
            metavar=("SIGNAL", "SECONDS"),
            help=f"{what}: the master raises SIGNAL every SECONDS (uWSGI's {option}; "
            "repeatable)",
        )
    run.add_argument(
        "--ini",
        metavar="FILE",
        help="read the [uwsgi] section of a uWSGI ini file; options given here override it",
    )
    run.add_argument("--chdir", metavar="DIR", help="change to DIR before importing APP")
    run.add_argument(
        "--pythonpath",
        action="append",
        default=[],
        metavar="DIR",
        help="add DIR to the module search path before importing APP (repeatable)",
    )
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="the least severe log lines written (default info)",
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
        action="append",
        default=[],
        metavar="DIR",
        help="start a spooler; with DIR, it runs the spool jobs kept there (repeatable: one "
        "spooler per DIR, the first is the default one)",
    )
    run.add_argument(
        "--spooler-processes",
        type=int,
        default=1,
        metavar="N",
        help="processes per spooler, sharing its jobs (default 1)",
    )
    run.add_argument(
        "--spooler-ordered",
        action="store_true",
        help="uWSGI's option: jobs run by priority, then age (they always do here)",
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
        "--remote-allow",
        action="append",
        default=[],
        metavar="NETWORK",
        help="hosts of this network (10.0.0.0/8, 192.0.2.7) may raise remote signals and call "
        "RPC functions (repeatable; loopback hosts always may, others get uWSGI's reject)",
    )
    run.add_argument(
        "--cluster",
        metavar="URL",
        help="be a node of the cluster on this Redis or Valkey server (redis://HOST:PORT/DB, "
        "rediss:// for TLS, redis://USER:PASSWORD@... for AUTH): signals whose target is "
        "'cluster' or 'subscribed' run on its nodes (needs uwsgisig[cluster])",
    )
    run.add_argument(
        "--cluster-name",
        default="uwsgisig",
        metavar="NAME",
        help="the cluster's name, so that several share a server (default: uwsgisig)",
    )
    run.add_argument(
        "--cluster-node",
        metavar="NAME",
        help="this node's name in the cluster (default: the host's name and the master's pid)",
    )
    run.add_argument(
        "--rpc-socket",
        metavar="HOST:PORT",
        help="the workers answer uWSGI RPC requests (and remote signals) on this address, "
        "loopback only unless --rpc-socket-any (port 0: any free port, logged at start)",
    )
    run.add_argument(
        "--rpc-socket-any",
        action="store_true",
        help="let --rpc-socket listen on a non-loopback address: whoever reaches it can "
        "call any RPC function",
    )
    run.add_argument(
        "--uwsgi-compat",
        action="store_true",
        help="let APP `import uwsgi` (and uWSGI's uwsgidecorators): its signal, timer, cron, "
        "file-monitor, mule, farm, spooler, lock, RPC and control calls run on this runtime; "
        "its other calls raise NotImplementedError. As uWSGI 2.0 does, an APP that raises "
        "while it is imported is logged and the runtime goes on with what it registered",
    )
    run.add_argument(
        "--need-app",
        action="store_true",
        help="with --uwsgi-compat: stop (exit 2) if APP raises while it is imported, as "
        "without it",
    )
    return parser


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """The runtime's arguments, and the COMMAND after the first ``--`` (None without one)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, None
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``uwsgisig`` command."""
    own, command = split_command(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(own)
    if args.command == "run" and args.ini:
        try:
            ini = read_ini(args.ini)
        except IniError as exc:
            print(f"uwsgisig: error: {exc}", file=sys.stderr)
            return 2
        if ini.ignored:
            print(
                f"uwsgisig: warning: {args.ini}: these uWSGI options mean nothing here and "
                f"are ignored: {', '.join(ini.ignored)}",
                file=sys.stderr,
            )
        at = own.index("run") + 1  # the file's options first: the command line's win
        args = parser.parse_args([*own[:at], *ini.argv, *own[at:]])
        if args.app is None:
            args.app = ini.app
        if command is None and ini.command:
            command = ini.command
    for flag, signum in (("reload", signal.SIGHUP), ("stop", signal.SIGINT)):
        pidfile = getattr(args, flag) or (args.pidfile if args.command == flag else None)
        if pidfile:
            return signal_master(pidfile, signum)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("uwsgisig: error: give a command: run, reload or stop", file=sys.stderr)
        return 2
    return run(args, command)


def signal_master(pidfile: str, signum: int) -> int:
    """Send ``signum`` to the master whose pid ``pidfile`` holds; 2 and a message if none."""
    try:
        pid = read_pidfile(pidfile)
        os.kill(pid, signum)
    except (OSError, ValueError) as exc:
        print(f"uwsgisig: error: {exc}", file=sys.stderr)
        return 2
    return 0


def read_pidfile(pidfile: str) -> int:
    """The pid in ``pidfile``; raise naming the file when it holds none, or no such process."""
    try:
        with open(pidfile) as file:
            text = file.read().strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"pidfile {pidfile!r} does not exist") from None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"pidfile {pidfile!r} holds {text[:40]!r}, not a pid")
    pid = int(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise ProcessLookupError(
            f"no process {pid} (from pidfile {pidfile!r}): the runtime is not running"
        ) from None
    except PermissionError:
        pass  # it exists; the signal itself will say whether we may send it
    return pid


def parse_timer(option: str, pair: Sequence[str]) -> tuple[int, float]:
    """``SIGNAL SECONDS`` as numbers; ValueError naming the option and the values."""
    signal_text, seconds_text = pair
    try:
        return int(signal_text), float(seconds_text)
    except ValueError:
        raise ValueError(
            f"invalid {option} {signal_text} {seconds_text}: give SIGNAL (0-255) and SECONDS"
        ) from None


def run(args: argparse.Namespace, command: list[str] | None) -> int:
    """``uwsgisig run``: build the runtime from the options and run it here."""
    if command == []:
        print("uwsgisig: error: nothing after '--': give the COMMAND to run", file=sys.stderr)
        return 2
    if args.app is None:
        print(
            "uwsgisig: error: give APP (a module or a .py file), or --ini FILE whose [uwsgi] "
            "section has module or wsgi-file",
            file=sys.stderr,
        )
        return 2
    command = command or []
    if command and shutil.which(command[0]) is None:
        print(f"uwsgisig: error: command {command[0]!r} not found on PATH", file=sys.stderr)
        return 2
    workers = args.workers if args.workers is not None else (0 if command else 1)
    attach = args.attach if args.attach is not None else (COMMAND_ATTACH_SLOTS if command else 0)
    if args.chdir:
        try:
            os.chdir(args.chdir)
        except OSError as exc:
            print(f"uwsgisig: error: --chdir {args.chdir!r}: {exc.strerror}", file=sys.stderr)
            return 2
    # A module APP is looked up from the current directory too, as gunicorn does.
    for directory in reversed([*args.pythonpath, os.getcwd()]):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    if args.uwsgi_compat:
        compat.install()  # before the master imports the app
        os.environ[compat.COMPAT_ENV] = str(os.getpid())  # this process becomes the master
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
            # Each --spooler gives a directory, or True (a spooler for signals only).
            spooler=[path for path in args.spooler if path is not True] or bool(args.spooler),
            spooler_processes=args.spooler_processes,
            spooler_ordered=args.spooler_ordered,
            spooler_frequency=args.spooler_frequency,
            queue_size=args.queue_size,
            send_timeout=args.send_timeout,
            stop_timeout=args.stop_timeout,
            graceful_stop=args.graceful_stop,
            log_file=args.log_file,
            remote_signals=args.remote_signals,
            remote_signals_any=args.remote_signals_any,
            remote_allow=args.remote_allow,
            cluster=args.cluster,
            cluster_name=args.cluster_name,
            cluster_node=args.cluster_node,
            need_app=args.need_app or not args.uwsgi_compat,
            rpc_socket=args.rpc_socket,
            rpc_socket_any=args.rpc_socket_any,
            pidfile=args.pidfile,
            touch_reload=args.touch_reload,
            touch_workers_reload=args.touch_workers_reload,
            touch_mules_reload=args.touch_mules_reload,
            touch_chain_reload=args.touch_chain_reload,
            touch_logreopen=args.touch_logreopen,
            touch_logrotate=args.touch_logrotate,
            timers=[parse_timer("--timer", pair) for pair in args.timer],
            rb_timers=[parse_timer("--rbtimer", pair) for pair in args.rbtimer],
            log_level=args.log_level,
            master_fifo=args.master_fifo,
            stats=args.stats,
            stats_http=args.stats_http,
            locks=args.locks,
            cache=args.cache,
            cache2=args.cache2,
            harakiri=args.harakiri,
        )
        return runtime.run()
    except (UwsgisigError, ValueError, ImportError, OSError) as exc:
        print(f"uwsgisig: error: {exc}", file=sys.stderr)
        return 2
