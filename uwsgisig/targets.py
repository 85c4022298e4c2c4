"""Turn what users pass as ``target=`` into uWSGI's target string."""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from . import platform

if TYPE_CHECKING:
    from .mules import Farm, Mule

__all__ = ["TypeTarget", "target_text"]

TypeTarget = Union[str, "Mule", "Farm", None]


def target_text(target: TypeTarget) -> str:
    """Return the canonical target string; raise `TargetError` for anything else."""
    from .mules import Farm, Mule

    if target is None:
        return "worker"
    if isinstance(target, Mule):
        return f"mule{target.id}"
    if isinstance(target, Farm):
        return f"farm_{target.name}"
    return str(platform.parse_target(target))
