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

from ..errors import TargetError
from .config import FarmSpec
from .events import Event

__all__ = [
    "DECLARED_EVENTS",
    "DECLARED_FARMS",
    "DECLARED_MULES",
    "POSTFORK_HOOKS",
    "declare_farm",
    "declare_mule",
    "import_app",
]

DECLARED_MULES: set[int] = set()
DECLARED_FARMS: dict[str, FarmSpec] = {}
POSTFORK_HOOKS: list[Callable[[], object]] = []
DECLARED_EVENTS: list[Event] = []  # timers, crons and file monitors, armed when the master starts


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
