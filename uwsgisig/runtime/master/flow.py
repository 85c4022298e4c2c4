"""Flow control: how many more RAISE frames each sender may write.

Every sender (a child, the controller) starts with ``window`` credit and
spends one per RAISE frame; the master pays back what it read, ``batch`` or
more at a time, so the common case costs no write per signal. It pays only
while its backlog (signals accepted and not started yet, wherever they wait)
allows: it stops paying when the backlog reaches ``limit`` and starts again
once the backlog is down to ``limit // 2``, so senders do not flap at the
limit.

Invariant (what makes it live): the master calls `Flow.payments` on every
pass of its loop, after writing its outboxes, with the backlog measured
then, and writes at once what it paid; and while ``granting`` is off it
never sleeps longer than a short recheck interval. So a sender that is out
of credit is paid within one recheck of the backlog falling to ``limit //
2``, whether or not anything else happens: no extra event is needed, and a
backlog drained silently (children read their sockets and start signals
without telling the master) is seen too. A sender blocks for good only
while nobody starts what it raised: that is back-pressure, which ends in
`SignalQueueFullError` after the send timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from ..wire.frames import RAISE_WINDOW

__all__ = ["CREDIT_BATCH", "Flow", "RAISE_WINDOW"]

# Credit is paid in batches of at least this much (a sender out of credit is owed a window).
CREDIT_BATCH = RAISE_WINDOW // 4

P = TypeVar("P")


class Flow(Generic[P]):
    """The credit owed to each sender ``P``, and when it may be paid."""

    def __init__(
        self, limit: int, *, window: int = RAISE_WINDOW, batch: int = CREDIT_BATCH
    ) -> None:
        if not 1 <= batch <= window:
            raise ValueError(f"invalid credit batch {batch!r}: must be from 1 to the window")
        self.limit = limit
        self.window = window
        self.batch = batch
        self.granting = True
        self._owed: dict[P, int] = {}

    def raised(self, sender: P, count: int) -> None:
        """The master read ``count`` RAISE frames from ``sender``."""
        self._owed[sender] = self._owed.get(sender, 0) + count

    def owed(self, sender: P) -> int:
        """Credit read from ``sender`` and not paid back yet."""
        return self._owed.get(sender, 0)

    def is_blocked(self, sender: P) -> bool:
        """Whether ``sender`` has spent its whole window (it waits for credit)."""
        return self.owed(sender) >= self.window

    def reset(self, sender: P) -> None:
        """A new process took ``sender``'s place: it starts with a full window."""
        self._owed.pop(sender, None)

    def payments(self, measure: Callable[[], int]) -> list[tuple[P, int]]:
        """The credit to pay now; ``measure()`` gives the backlog, asked only if credit is owed.

        With nothing owed there is nothing to hold back, and granting is on.
        """
        if not self._owed:
            self.granting = True
            return []
        if self.granting and max(self._owed.values()) < self.batch:
            return []  # nothing is due in any case: spare the measurement
        backlog = measure()
        if backlog >= self.limit:
            self.granting = False
        elif backlog <= self.limit // 2:
            self.granting = True
        if not self.granting:
            return []
        due = [(sender, owed) for sender, owed in self._owed.items() if owed >= self.batch]
        for sender, _ in due:
            del self._owed[sender]
        return due
