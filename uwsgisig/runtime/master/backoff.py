"""How long to wait before starting again a process that keeps dying young.

A child or the supervised command that dies sooner than `RESPAWN_FAST_EXIT`
after its start is started again after a delay that doubles, from
`RESPAWN_DELAY_MIN` up to `RESPAWN_DELAY_MAX`, so a crash loop cannot spin
the CPU; one that lived longer is started again at once.
"""

from __future__ import annotations

__all__ = ["RESPAWN_DELAY_MAX", "RESPAWN_DELAY_MIN", "RESPAWN_FAST_EXIT", "respawn_delay"]

RESPAWN_FAST_EXIT = 1.0  # seconds
RESPAWN_DELAY_MIN = 0.1
RESPAWN_DELAY_MAX = 5.0


def respawn_delay(lived: float, previous: float) -> float:
    """The delay before the next start, given how long it lived and the previous delay."""
    if lived >= RESPAWN_FAST_EXIT:
        return 0.0
    return min(max(previous * 2, RESPAWN_DELAY_MIN), RESPAWN_DELAY_MAX)
