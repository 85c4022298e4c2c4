"""Post-fork hooks: code each child runs right after it is forked."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from . import platform

__all__ = ["postfork"]

F = TypeVar("F", bound=Callable[[], object])


def postfork(func: F) -> F:
    """Decorator: run ``func()`` in every worker, mule and spooler right after fork,
    before it serves signals (uwsgidecorators' ``@postfork``).

    Use it for what must not be shared across fork: connections, threads, random seeds.
    """
    platform.add_postfork_hook(func)
    return func
