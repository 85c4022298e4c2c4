"""What the app module declares for the runtime, and how the app is imported.

The master imports the app before it forks, so whatever the app declares at
import time (mules, farms, post-fork hooks, signal handlers) exists in every
child.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs

from ...errors import TargetError
from .config import FarmSpec, MuleProgram

if TYPE_CHECKING:  # the model is imported by every layer above it, never the reverse
    from ..schedule.events import Event

__all__ = [
    "DECLARED_EVENTS",
    "DECLARED_FARMS",
    "DECLARED_MULES",
    "DECLARED_PROGRAMS",
    "HANDLERS",
    "POSTFORK_HOOKS",
    "AppHandlers",
    "declare_farm",
    "declare_mule",
    "declare_program",
    "import_app",
]

DECLARED_MULES: set[int] = set()
DECLARED_FARMS: dict[str, FarmSpec] = {}
POSTFORK_HOOKS: list[Callable[[], object]] = []
DECLARED_EVENTS: list[Event] = []  # timers, crons and file monitors, armed when the master starts
DECLARED_PROGRAMS: dict[int, MuleProgram] = {}  # mules that run a loop of their own


@attrs.define
class AppHandlers:
    """The app's handlers of things that are not signals."""

    # Called with each message a mule's default loop takes that is not an offloaded call.
    message: Callable[[bytes], object] | None = None
    # Called with each spool job; returns None or SPOOL_OK when the job is done.
    spool: Callable[[dict[str, Any]], object] | None = None


HANDLERS = AppHandlers()


def declare_mule(mule_id: int) -> None:
    """Ask for mule ``mule_id`` (and so mules 1..mule_id) to be started."""
    DECLARED_MULES.add(mule_id)


def declare_farm(farm: FarmSpec) -> None:
    """Ask for farm ``farm`` to be started; the same farm may be declared again."""
    known = DECLARED_FARMS.get(farm.name)
    if known is not None and known != farm:
        raise TargetError(
            f"farm {farm.name!r} is declared with mules {known.mules} and {farm.mules}"
        )
    DECLARED_FARMS[farm.name] = farm


def declare_program(program: MuleProgram) -> None:
    """Ask for mule ``program.mule`` to run ``program.body`` instead of the signal loop."""
    known = DECLARED_PROGRAMS.get(program.mule)
    if known is not None and known != program:
        raise TargetError(f"mule {program.mule} already runs {known.describe()}")
    DECLARED_PROGRAMS[program.mule] = program
    declare_mule(program.mule)


def import_app(spec: str) -> ModuleType:
    """Import the app: a dotted module name, or the path of a ``.py`` file."""
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
        module_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)
