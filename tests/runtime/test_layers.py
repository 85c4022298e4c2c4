"""The engine's layers: which package may import which, read from the source with ``ast``.

Rules (an import anywhere in a module counts: at the top, in a function, under
``TYPE_CHECKING``; relative imports are resolved against the module's package):

1. ``uwsgisig/runtime/master/`` never imports ``uwsgisig.runtime.child``.
2. ``uwsgisig/runtime/child/`` never imports ``uwsgisig.runtime.master``.
3. nothing under ``uwsgisig/runtime/`` imports ``uwsgisig.platform`` or the API
   modules: ``uwsgisig.signals``, ``uwsgisig.mules``, ``uwsgisig.scheduling``,
   ``uwsgisig.monitoring``, ``uwsgisig.targets`` (the package's own, not
   ``uwsgisig.runtime.targets``), ``uwsgisig.spooler``, ``uwsgisig.hooks``,
   ``uwsgisig.compat``, ``uwsgisig.lowlevel``.
4. ``uwsgisig/platform/`` never imports ``uwsgisig.runtime.master``.
5. ``uwsgisig/platform/`` never imports ``uwsgisig.runtime.frames``: it calls
   the verbs of the child's link and builds no frame.

Also here: `posix.describe_exit`, the exit statuses in words.
"""

from __future__ import annotations

import ast
import signal
from pathlib import Path
from typing import NamedTuple

import pytest

import uwsgisig
from uwsgisig.runtime.posix import describe_exit

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
        ("uwsgisig.runtime.frames",),
        id="platform-never-imports-frames",
    ),
]


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
        "uwsgisig.runtime.frames",
        "uwsgisig.runtime.frames.ANY_SIGNAL",
        "uwsgisig.runtime.table",
        "uwsgisig.runtime.master.held",
        "uwsgisig.runtime.master.peers",
    } <= router
    master_loop = {found.module for found in imports_of(PACKAGE_ROOT / "runtime/master/loop.py")}
    assert "uwsgisig.errors" in master_loop  # three dots: up to the top package
    package = {found.module for found in imports_of(PACKAGE_ROOT / "runtime/child/__init__.py")}
    assert "uwsgisig.runtime.child.loop" in package  # a package's "." is itself
    embedded = {found.module for found in imports_of(PACKAGE_ROOT / "platform/embedded.py")}
    assert {"uwsgisig.runtime.app", "uwsgisig.runtime.offload"} <= embedded


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
