"""The engine's layers: which package may import which, read from the source with ``ast``.

Rules (an import anywhere in a module counts: at the top, in a function, under
``TYPE_CHECKING``; relative imports are resolved against the module's package):

1. ``uwsgisig/runtime/master/`` never imports ``uwsgisig.runtime.child``.
2. ``uwsgisig/runtime/child/`` never imports ``uwsgisig.runtime.master``.
3. nothing under ``uwsgisig/runtime/`` imports ``uwsgisig.platform`` or the API
   modules: ``uwsgisig.signals``, ``uwsgisig.mules``, ``uwsgisig.scheduling``,
   ``uwsgisig.monitoring``, ``uwsgisig.targets`` (the package's own, not
   ``uwsgisig.runtime.model.targets``), ``uwsgisig.spooler``, ``uwsgisig.hooks``,
   ``uwsgisig.compat``, ``uwsgisig.lowlevel``.
4. ``uwsgisig/platform/`` never imports ``uwsgisig.runtime.master``.
5. ``uwsgisig/platform/`` never imports ``uwsgisig.runtime.wire.frames``: it calls
   the verbs of the child's link and builds no frame.
6. the rooms of the runtime import downwards only, in the order
   ``model -> wire -> schedule -> ipc -> master | child -> runner``: a room may
   import the rooms before it, never one after it. Here an import under
   ``TYPE_CHECKING`` does not count: a type named in an annotation costs no
   import at run time.

Also here: `posix.describe_exit`, the exit statuses in words.
"""

from __future__ import annotations

import ast
import signal
from pathlib import Path
from typing import NamedTuple

import pytest

import uwsgisig
from uwsgisig.runtime.ipc.posix import describe_exit

pytestmark = pytest.mark.timeout(30)

PACKAGE_ROOT = Path(uwsgisig.__file__).resolve().parent
API_MODULES = (
    "uwsgisig.signals",
    "uwsgisig.mules",
    "uwsgisig.scheduling",
    "uwsgisig.monitoring",
    "uwsgisig.targets",
    "uwsgisig.spooler",
    "uwsgisig.hooks",
    "uwsgisig.compat",
    "uwsgisig.lowlevel",
    "uwsgisig.caching",
)


class Import(NamedTuple):
    path: Path
    line: int
    module: str  # the absolute name imported (for ``from X import y``: X, and X.y)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[Import]:
    """Every module ``path`` imports, with relative names made absolute."""
    return imports_in(path.read_text(), path)


def imports_in(source: str, path: Path) -> list[Import]:
    """Every module ``source`` imports, read as the module at ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                assert node.level - 1 < len(parts), f"{path}:{node.lineno} goes above the package"
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                if node.module:
                    base = f"{base}.{node.module}"
            else:
                base = node.module or ""
            found.append(Import(path, node.lineno, base))
            found += [
                Import(path, node.lineno, f"{base}.{alias.name}")
                for alias in node.names
                if alias.name != "*"
            ]
    return sorted(found, key=lambda found: (found.line, found.module))


def runtime_imports_of(path: Path) -> list[Import]:
    """The imports of ``path`` that run: those under ``if TYPE_CHECKING:`` are left out."""
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = {
        line
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for child in node.body
        for line in range(child.lineno, (child.end_lineno or child.lineno) + 1)
    }
    return [found for found in imports_of(path) if found.line not in typing_only]


def sources(under: str) -> list[Path]:
    return sorted((PACKAGE_ROOT / under).rglob("*.py"))


def names(module: str, forbidden: tuple[str, ...]) -> bool:
    return any(module == bad or module.startswith(f"{bad}.") for bad in forbidden)


def violations(under: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{found.path.relative_to(PACKAGE_ROOT.parent)}:{found.line} imports {found.module}"
        for path in sources(under)
        for found in imports_of(path)
        if names(found.module, forbidden)
    ]


RULES = [
    pytest.param("runtime/master", ("uwsgisig.runtime.child",), id="master-never-imports-child"),
    pytest.param("runtime/child", ("uwsgisig.runtime.master",), id="child-never-imports-master"),
    pytest.param(
        "runtime", ("uwsgisig.platform", *API_MODULES), id="runtime-never-imports-platform-or-api"
    ),
    pytest.param("platform", ("uwsgisig.runtime.master",), id="platform-never-imports-the-master"),
    pytest.param(
        "platform",
        ("uwsgisig.runtime.wire.frames",),
        id="platform-never-imports-frames",
    ),
]


ROOMS = ("model", "wire", "schedule", "ipc", "master", "child")
LATER = {
    "model": ("wire", "schedule", "ipc", "master", "child"),
    "wire": ("schedule", "ipc", "master", "child"),
    "schedule": ("ipc", "master", "child"),
    "ipc": ("master", "child"),
    "master": ("child",),
    "child": ("master",),
}


@pytest.mark.parametrize("room", ROOMS)
def test_each_room_imports_only_the_rooms_below_it(room: str) -> None:
    forbidden = (
        *(f"uwsgisig.runtime.{later}" for later in LATER[room]),
        "uwsgisig.runtime.runner",
    )
    found = [
        f"{found.path.relative_to(PACKAGE_ROOT.parent)}:{found.line} imports {found.module}"
        for path in sources(f"runtime/{room}")
        for found in runtime_imports_of(path)
        if names(found.module, forbidden)
    ]
    assert found == []


def test_the_runtime_package_holds_only_its_rooms_and_the_runner() -> None:
    top = sorted(path.name for path in (PACKAGE_ROOT / "runtime").glob("*.py"))
    assert top == ["__init__.py", "handle.py", "runner.py"]
    rooms = sorted(path.name for path in (PACKAGE_ROOT / "runtime").iterdir() if path.is_dir())
    assert [room for room in rooms if room != "__pycache__"] == sorted(ROOMS)


@pytest.mark.parametrize(("under", "forbidden"), RULES)
def test_imports_point_down_only(under: str, forbidden: tuple[str, ...]) -> None:
    assert violations(under, forbidden) == []


def test_every_layer_has_sources_to_check() -> None:
    for under in ("runtime", "runtime/master", "runtime/child", "platform"):
        assert sources(under), f"no module under uwsgisig/{under}"
    assert PACKAGE_ROOT / "runtime" / "master" / "router.py" in sources("runtime/master")


def test_relative_imports_resolve_to_absolute_names() -> None:
    router = {found.module for found in imports_of(PACKAGE_ROOT / "runtime/master/router.py")}
    assert {
        "uwsgisig.runtime.wire.frames",
        "uwsgisig.runtime.wire.frames.ANY_SIGNAL",
        "uwsgisig.runtime.model.table",
        "uwsgisig.runtime.master.held",
        "uwsgisig.runtime.master.peers",
    } <= router
    master_loop = {found.module for found in imports_of(PACKAGE_ROOT / "runtime/master/loop.py")}
    assert "uwsgisig.errors" in master_loop  # three dots: up to the top package
    package = {found.module for found in imports_of(PACKAGE_ROOT / "runtime/child/__init__.py")}
    assert "uwsgisig.runtime.child.loop" in package  # a package's "." is itself
    embedded = {found.module for found in imports_of(PACKAGE_ROOT / "platform/embedded.py")}
    assert {"uwsgisig.runtime.model.app", "uwsgisig.runtime.child.offload"} <= embedded


def test_the_checker_sees_a_forbidden_import_wherever_it_is() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ..child import SignalLoop\n"
        "def later():\n"
        "    from .. import child\n"
        "    import uwsgisig.runtime.child.loop\n"
    )
    as_if = PACKAGE_ROOT / "runtime" / "master" / "example.py"
    found = [
        found.module
        for found in imports_in(source, as_if)
        if names(found.module, ("uwsgisig.runtime.child",))
    ]
    assert found == [
        "uwsgisig.runtime.child",
        "uwsgisig.runtime.child.SignalLoop",
        "uwsgisig.runtime.child",
        "uwsgisig.runtime.child.loop",
    ]


def test_the_checker_tells_the_api_targets_from_the_runtime_targets() -> None:
    as_if = PACKAGE_ROOT / "runtime" / "example.py"
    source = "from .targets import Target\nfrom ..targets import as_target\n"
    modules = [found.module for found in imports_in(source, as_if)]
    assert [module for module in modules if names(module, API_MODULES)] == [
        "uwsgisig.targets",
        "uwsgisig.targets.as_target",
    ]
    assert "uwsgisig.runtime.targets" in modules


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (0, "code 0"),
        (3, "code 3"),
        (-signal.SIGKILL, "signal SIGKILL"),
        (-signal.SIGTERM, "signal SIGTERM"),
        (-35, "signal 35"),  # a real-time signal: no name in signal.Signals
    ],
)
def test_describe_exit_puts_an_exit_status_in_words(code: int, words: str) -> None:
    assert describe_exit(code) == words
