"""Programmed mules: a mule whose body is the app's function, not the signal loop.

As with uWSGI's ``--mule=package.module:function`` (or ``--mule=script.py``),
the mule calls the function after its post-fork hooks. When the function
returns or raises, the mule exits and the master starts it again, after a
delay that grows while the body keeps dying young.
"""

from __future__ import annotations

import importlib
import logging
import runpy
from collections.abc import Callable

from ..ipc.link import MasterGone
from ..model.config import MuleProgram

__all__ = ["load_body", "run_program"]

log = logging.getLogger("uwsgisig")


def load_body(program: MuleProgram) -> Callable[[], object]:
    """The function ``program`` names: imported here, in the mule."""
    body = program.body
    if callable(body):
        return body
    if body.endswith(".py"):
        return lambda: runpy.run_path(body, run_name="__main__")
    module_name, _, path = body.partition(":")
    found: object = importlib.import_module(module_name)
    for name in path.split("."):
        found = getattr(found, name)
    if not callable(found):
        raise TypeError(f"mule loop {body!r} is not callable")
    return found  # type: ignore[return-value]


def run_program(program: MuleProgram) -> int:
    """Run the mule's body; return the mule's exit code."""
    try:
        load_body(program)()
    except MasterGone:
        return 0
    except Exception:
        log.exception(
            "the loop %s of mule %d raised: the master starts it again",
            program.describe(),
            program.mule,
        )
        return 1
    log.warning(
        "the loop %s of mule %d returned: the master starts it again",
        program.describe(),
        program.mule,
    )
    return 0
