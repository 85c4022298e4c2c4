"""What the benchmarks share: helper processes, plain-text tables, the runtime's log report."""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TextIO, TypeVar

from uwsgisig import Runtime, RuntimeHandle

__all__ = [
    "FORK",
    "join_child",
    "print_problems",
    "recv_exact",
    "run_on_runtime",
    "start_child",
    "stop_children",
    "table",
]

T = TypeVar("T")

FORK = multiprocessing.get_context("fork")
HELPER_TIMEOUT = 5.0  # seconds, for a helper process to exit

CHILDREN: list[BaseProcess] = []


def start_child(target: Callable[..., object], *args: object) -> BaseProcess:
    """Fork a helper process; `stop_children` ends it if it is still running."""
    child = FORK.Process(target=_child_main, args=(target, *args), daemon=True)
    child.start()
    CHILDREN.append(child)
    return child


def _child_main(target: Callable[..., object], *args: object) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us, even on Ctrl-C
    target(*args)


def join_child(child: BaseProcess) -> None:
    """Wait (bounded) for a helper that should be exiting; kill it if it is not."""
    child.join(HELPER_TIMEOUT)
    if child.is_alive():
        child.kill()
        child.join(HELPER_TIMEOUT)
        raise RuntimeError(f"helper process {child.pid} did not exit: killed")
    CHILDREN.remove(child)


def stop_children() -> None:
    """Kill and reap every helper process still running."""
    for child in CHILDREN:
        if child.is_alive():
            child.kill()
        child.join(HELPER_TIMEOUT)
    CHILDREN.clear()


def recv_exact(sock: socket.socket, size: int, timeout: float) -> bytes:
    """Read exactly ``size`` bytes from a socket whose receive timeout is ``timeout``.

    Raises TimeoutError after that much silence, EOFError if the peer closes first.
    """
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except BlockingIOError:  # SO_RCVTIMEO expired
            raise TimeoutError(f"no answer within {timeout:g} s") from None
        if not chunk:
            raise EOFError(f"the peer closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned plain-text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [first.ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def print_problems(log_file: Path, out: TextIO) -> None:
    """Print the WARNING and ERROR lines of the runtime's log, if any."""
    if not log_file.exists():
        return
    problems = [
        line
        for line in log_file.read_text().splitlines()
        if " WARNING " in line or " ERROR " in line
    ]
    if problems:
        print(f"\nthe runtime logged {len(problems)} warnings/errors, e.g.:", file=out)
        print("\n".join(problems[:10]), file=out)


def run_on_runtime(
    write_app: Callable[[Path], tuple[Path, memoryview]],
    measure: Callable[[RuntimeHandle, memoryview], T],
    report: Callable[[T], None],
    **options: Any,
) -> int:
    """Start a runtime on the app ``write_app`` writes, measure, stop it, then report.

    The app and its state file live in a temporary directory; the runtime's
    warnings and errors are printed after the report (or before a crash).
    """
    with tempfile.TemporaryDirectory(prefix="uwsgisig-bench-") as directory:
        app, state = write_app(Path(directory))
        log_file = Path(directory) / "runtime.log"
        try:
            with Runtime(str(app), log_file=log_file, **options).start() as handle:
                results = measure(handle, state)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BaseException:
            print_problems(log_file, sys.stderr)
            raise
        finally:
            stop_children()
            state.release()
        report(results)
        print_problems(log_file, sys.stdout)
    return 0
