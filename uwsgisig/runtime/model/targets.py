"""Signal targets: who runs a signal's handler.

A target is written as uWSGI writes it (``worker``, ``workers``, ``worker3``,
``active-workers``, ``mule``, ``mules``, ``mule2``, ``spooler``,
``farm_NAME``, ``farm1``, ``cluster``, ``subscribed``); `parse_target` turns
that text into a `Target` value and `str(target)` turns it back.

``cluster`` and ``subscribed`` raise the signal on the nodes of the runtime's
cluster (every live one; the ones with a handler for it), where it runs as
its handler there says, and as ``worker`` where that is a cluster target too.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Literal

import attrs

from ...errors import TargetError

__all__ = [
    "ALLOWED_FORMS",
    "Target",
    "TargetKind",
    "parse_target",
    "target_code",
    "target_from_code",
]

# In the order of their wire codes (`target_code`): a new kind goes at the end.
TargetKind = Literal[
    "worker",
    "workers",
    "active-workers",
    "mule",
    "mules",
    "spooler",
    "farm",
    "cluster",
    "subscribed",
]

ALLOWED_FORMS = (
    "'worker', 'worker0', 'workerN', 'workers', 'active-workers', "
    "'mule', 'mule0', 'muleN', 'mules', 'spooler', 'farm_NAME', 'farmN' (N >= 1), "
    "'cluster', 'subscribed'"
)

_NUMBERED = re.compile(r"(worker|mule|farm)(0|[1-9][0-9]{0,5})")
_FARM_NAME = re.compile(r"farm_([A-Za-z0-9_.\-]+)")
_PLAIN: dict[str, TargetKind] = {
    "": "worker",
    "worker": "worker",
    "workers": "workers",
    "active-workers": "active-workers",
    "mule": "mule",
    "mules": "mules",
    "spooler": "spooler",
    "cluster": "cluster",
    "subscribed": "subscribed",
}


@attrs.frozen
class Target:
    """Where a signal goes.

    ``index`` is N of ``workerN``/``muleN``/``farmN`` (1-based); 0 means "the
    first available one" for ``worker``/``mule``. ``name`` is the farm name
    of ``farm_NAME``.
    """

    kind: TargetKind
    index: int = 0
    name: str = ""

    def __str__(self) -> str:
        if self.kind == "farm":
            return f"farm_{self.name}" if self.name else f"farm{self.index}"
        if self.kind in ("worker", "mule") and self.index:
            return f"{self.kind}{self.index}"
        return self.kind

    @property
    def is_cluster(self) -> bool:
        """True when the signal goes to the nodes of the cluster (``cluster``,
        ``subscribed``)."""
        return self.kind in ("cluster", "subscribed")

    @property
    def is_single(self) -> bool:
        """True when exactly one process runs the handler for each signal."""
        return self.kind not in ("workers", "active-workers", "mules")


def parse_target(text: object) -> Target:
    """Parse a uWSGI target string; raise `TargetError` naming the bad value."""
    if not isinstance(text, str):
        raise TargetError(
            f"invalid signal target {text!r}: a target is a str, one of {ALLOWED_FORMS}"
        )
    kind = _PLAIN.get(text)
    if kind is not None:
        return Target(kind)
    numbered = _NUMBERED.fullmatch(text)
    if numbered:
        word, number = numbered.group(1), int(numbered.group(2))
        if word == "farm":
            if number == 0:
                raise TargetError(f"invalid signal target {text!r}: farms count from 1 ('farm1')")
            return Target("farm", index=number)
        return Target("worker" if word == "worker" else "mule", index=number)
    farm = _FARM_NAME.fullmatch(text)
    if farm:
        return Target("farm", name=farm.group(1))
    raise TargetError(
        f"invalid signal target {text!r}{_did_you_mean(text)}: allowed are {ALLOWED_FORMS}"
    )


def _did_you_mean(text: str) -> str:
    """``" (did you mean 'workers'?)"`` for a near miss, else nothing."""
    stem = text.rstrip("0123456789")
    close = difflib.get_close_matches(stem, [*_PLAIN, "farm_"], n=1, cutoff=0.6)
    if not close or close[0] == stem:
        return ""
    return f" (did you mean {close[0] + text[len(stem) :]!r}?)"


# A target's wire code is its kind's position in `TargetKind` (farm names travel as farm
# positions).
_KINDS: tuple[TargetKind, ...] = typing.get_args(TargetKind)


def target_code(target: Target) -> tuple[int, int]:
    """Encode ``target`` for a REGISTER frame as ``(kind code, index)``."""
    return _KINDS.index(target.kind), target.index


def target_from_code(kind_code: int, index: int) -> Target:
    """Decode a target from a REGISTER frame; raise `TargetError` for an unknown code."""
    if not 0 <= kind_code < len(_KINDS):
        raise TargetError(f"invalid target code {kind_code}: known codes are 0-{len(_KINDS) - 1}")
    return Target(_KINDS[kind_code], index=index)
