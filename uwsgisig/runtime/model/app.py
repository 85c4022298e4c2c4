"""What the app module declares for the runtime, and how the app is imported.

The master imports the app before it forks, so whatever the app declares at
import time (mules, farms, post-fork hooks, signal handlers) exists in every
child.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs

from ...errors import AppImportError, TargetError
from .config import FarmSpec, MuleProgram
from .rpc import RpcFunctions
from .table import TABLE

if TYPE_CHECKING:  # the model is imported by every layer above it, never the reverse
    from ..schedule.events import Event

__all__ = [
    "DECLARED",
    "Declarations",
    "declare_farm",
    "declare_mule",
    "declare_program",
    "import_app",
]


@attrs.define
class Declarations:
    """What the app declared while it was imported: one object, one `reset`.

    The master imports the app before it forks, so every child starts with
    the same declarations. Besides the process identity (`process.CURRENT`),
    this is the only state the runtime keeps in module globals.
    """

    mules: set[int] = attrs.field(factory=set)  # mule ids asked for
    farms: dict[str, FarmSpec] = attrs.field(factory=dict)
    postfork_hooks: list[Callable[[], object]] = attrs.field(factory=list)
    # Timers, crons and file monitors, armed when the master starts.
    events: list[Event] = attrs.field(factory=list)
    programs: dict[int, MuleProgram] = attrs.field(factory=dict)  # mules with a loop of their own
    # Offloadable functions by their module:qualname.
    offloaded: dict[str, Callable[..., Any]] = attrs.field(factory=dict)
    # Called with each message a mule's default loop takes that is not an offloaded call.
    message_hook: Callable[[bytes], object] | None = None
    # Called with each spool job; returns None or SPOOL_OK when the job is done.
    spool_handler: Callable[[dict[str, Any]], object] | None = None
    # RPC functions by name (uWSGI's register_rpc).
    rpc: RpcFunctions = attrs.field(factory=RpcFunctions)
    # What layers above the runtime keep about the same declarations (the API's
    # registry of signals): cleared with everything else.
    _reset_hooks: list[Callable[[], object]] = attrs.field(factory=list)

    def on_reset(self, hook: Callable[[], object]) -> None:
        """Call ``hook`` at every `reset` (for state kept outside the runtime)."""
        self._reset_hooks.append(hook)

    def reset(self) -> None:
        """Forget every declaration and every signal handler (tests, a fresh runtime)."""
        hooks = self._reset_hooks
        fresh = Declarations()
        for field in attrs.fields(Declarations):
            setattr(self, field.name, getattr(fresh, field.name))
        self._reset_hooks = hooks
        TABLE.clear()
        for hook in hooks:
            hook()


DECLARED = Declarations()


def declare_mule(mule_id: int) -> None:
    """Ask for mule ``mule_id`` (and so mules 1..mule_id) to be started."""
    DECLARED.mules.add(mule_id)


def declare_farm(farm: FarmSpec) -> None:
    """Ask for farm ``farm`` to be started; the same farm may be declared again."""
    known = DECLARED.farms.get(farm.name)
    if known is not None and known != farm:
        raise TargetError(
            f"farm {farm.name!r} is declared with mules {known.mules} and {farm.mules}"
        )
    DECLARED.farms[farm.name] = farm


def declare_program(program: MuleProgram) -> None:
    """Ask for mule ``program.mule`` to run ``program.body`` instead of the signal loop."""
    known = DECLARED.programs.get(program.mule)
    if known is not None and known != program:
        raise TargetError(f"mule {program.mule} already runs {known.describe()}")
    DECLARED.programs[program.mule] = program
    declare_mule(program.mule)


def import_app(spec: str) -> ModuleType:
    """Import the app: a dotted module name, or the path of a ``.py`` file.

    An app that cannot be found raises `FileNotFoundError` or `ImportError`
    with a one-line message; whatever the app's own code raises while it is
    imported becomes `AppImportError`, with the traceback of that code.
    """
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"app file {spec!r} does not exist")
        name = path.stem
        sys.path.insert(0, str(path.parent))
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot import app file {spec!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        with _raised_by_the_app(spec):
            module_spec.loader.exec_module(module)
        return module
    try:
        found = importlib.util.find_spec(spec)
    except ModuleNotFoundError:
        found = None  # its package is missing
    if found is None:
        raise ImportError(
            f"no module named {spec!r}: run from the directory that holds it, give "
            "--pythonpath DIR, or give the path of its .py file"
        )
    with _raised_by_the_app(spec):
        return importlib.import_module(spec)


@contextlib.contextmanager
def _raised_by_the_app(spec: str) -> Iterator[None]:
    try:
        yield
    except (SystemExit, KeyboardInterrupt):
        raise  # an exit is an exit
    except BaseException as exc:
        raise AppImportError(
            f"the app {spec!r} raised while it was imported:\n{_app_traceback(exc)}"
        ) from exc


def _app_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without the frames of uwsgisig and of the import machinery."""
    ours = str(Path(__file__).resolve().parents[2])  # the uwsgisig package
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith((ours, "<frozen importlib"))
    ]
    return (
        "Traceback (most recent call last):\n"
        + "".join(traceback.format_list(frames))
        + "".join(traceback.format_exception_only(exc))
    )
