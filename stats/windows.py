"""Rolling per-second event counts, for queries-per-second over recent windows."""

from __future__ import annotations

import math

from stats import SecondsClock


class RateWindow:
    """Events per whole second over the last ``horizon`` seconds.

    Slots are reused lazily: each remembers which second it counts, so a stale slot reads as 0
    and no timer ever clears them.
    """

    def __init__(self, clock: SecondsClock, horizon: int = 60) -> None:
        if horizon < 1:
            raise ValueError("a rate window needs horizon >= 1")
        self._clock = clock
        self._horizon = horizon
        size = horizon + 1  # the open second plus ``horizon`` completed ones
        self._seconds = [-1] * size
        self._counts = [0] * size

    @property
    def horizon(self) -> int:
        """The longest window :meth:`rate` answers for, in seconds."""
        return self._horizon

    def add(self, n: int = 1) -> None:
        """Count ``n`` events in the current second."""
        self.add_at(self._now(), n)

    def add_at(self, second: int, n: int = 1) -> None:
        """Count ``n`` events in whole clock second ``second`` (one of the last ``horizon``,
        and not earlier than what was counted before: see ThroughputRing.hit_at)."""
        slot = second % len(self._counts)
        if self._seconds[slot] != second:
            self._seconds[slot] = second
            self._counts[slot] = 0
        self._counts[slot] += n

    def rate(self, seconds: int) -> float:
        """Events in the last ``seconds`` completed seconds, divided by ``seconds``."""
        if not 1 <= seconds <= self._horizon:
            raise ValueError(f"rate window must be 1..{self._horizon} seconds, not {seconds}")
        now = self._now()
        size = len(self._counts)
        total = 0
        for second in range(now - seconds, now):
            slot = second % size
            if self._seconds[slot] == second:
                total += self._counts[slot]
        return total / seconds

    def _now(self) -> int:
        return math.floor(self._clock.seconds())
