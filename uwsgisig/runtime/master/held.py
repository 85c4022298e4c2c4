"""Signals with no handler that no process waits for yet: held, up to a bound.

uWSGI sends such a signal to the worker pool, where it answers whichever
worker sits in ``signal_wait()`` or is dropped with an error. The master
holds it instead, for the next wait() that can take it, but only up to
``limit`` signals: past that the oldest is dropped and counted, so signals
nobody asks for (a timer with no handler, a flood of remote packets) never
fill the queue that real senders need.
"""

from __future__ import annotations

import logging
from collections import Counter, deque

from ..wire.frames import ANY_SIGNAL

__all__ = ["HELD_LIMIT", "HeldSignals"]

log = logging.getLogger("uwsgisig")

HELD_LIMIT = 1024


class HeldSignals:
    """The signals kept for a later wait(), oldest first."""

    def __init__(self, limit: int = HELD_LIMIT) -> None:
        self.limit = limit
        self.dropped = 0
        self._nums: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._nums)

    def hold(self, num: int) -> None:
        """Keep ``num``; drop the oldest held signal if the bound is reached."""
        if len(self._nums) >= self.limit:
            oldest = self._nums.popleft()
            self.dropped += 1
            # Powers of ten: a steady stream of unwanted signals logs a few lines, not one each.
            if _is_power_of_ten(self.dropped):
                log.warning(
                    "signal %d had no handler and no wait() took it: dropped "
                    "(%d held at most; %d dropped so far)",
                    oldest,
                    self.limit,
                    self.dropped,
                )
        self._nums.append(num)

    def counts(self) -> dict[int, int]:
        """How many of each number are held."""
        return dict(Counter(self._nums))

    def take(self, want: int) -> int | None:
        """Remove and return the oldest held signal ``want`` (any if ANY_SIGNAL), or None."""
        for index, num in enumerate(self._nums):
            if want in (ANY_SIGNAL, num):
                del self._nums[index]
                return num
        return None

    def take_all(self, num: int) -> int:
        """Remove every held ``num`` (it just got a handler); return how many there were."""
        before = len(self._nums)
        self._nums = deque(held for held in self._nums if held != num)
        return before - len(self._nums)


def _is_power_of_ten(count: int) -> bool:
    while count % 10 == 0:
        count //= 10
    return count == 1
