"""The reference DBSlayer's throughput ring: requests per fixed-width time bucket."""

from __future__ import annotations

import math
from collections import deque

from stats import SecondsClock


class ThroughputRing:
    """Counts hits per ``width``-second bucket, keeping the last ``buckets`` closed ones.

    Bucket ``k`` covers ``[start + k*width, start + (k+1)*width)`` where ``start`` is the clock
    at creation. Buckets close lazily when the clock is read; a long idle gap costs at most
    ``buckets`` steps, never one per elapsed bucket. A clock that goes backwards keeps counting
    into the open bucket.
    """

    def __init__(
        self, clock: SecondsClock, buckets: int = 1440, width: int = 60, start: float | None = None
    ) -> None:
        if buckets < 1 or width <= 0:
            raise ValueError("a throughput ring needs buckets >= 1 and width > 0")
        self._clock = clock
        self._start = clock.seconds() if start is None else start
        self._width = width
        self._capacity = buckets
        self._closed: deque[tuple[int, int]] = deque(maxlen=buckets)  # (slice start, hits)
        self._index = 0  # number of the open bucket
        self._open_hits = 0

    @property
    def start(self) -> float:
        """The clock at creation: the start of bucket 0."""
        return self._start

    @property
    def width(self) -> int:
        """Seconds per bucket."""
        return self._width

    def hit(self) -> None:
        """Count one request in the open bucket."""
        self.hit_at(self._clock.seconds())

    def hit_at(self, at: float, n: int = 1) -> None:
        """Count ``n`` requests that ended at clock time ``at`` (not later than the clock's
        now, nor earlier than what was counted before: the statistics fold their requests in
        order, before anything is read)."""
        self._advance(at)
        self._open_hits += n

    def snapshot(self) -> tuple[list[int], list[int]]:
        """``(hits, slices)`` of the closed buckets, oldest first; the open one is left out."""
        self._advance()
        return [hits for _, hits in self._closed], [start for start, _ in self._closed]

    def _slice(self, index: int) -> int:
        return int(self._start + index * self._width)

    def _advance(self, now: float | None = None) -> None:
        elapsed = (self._clock.seconds() if now is None else now) - self._start
        index = math.floor(elapsed / self._width) if elapsed > 0 else 0
        if index <= self._index:
            return
        self._closed.append((self._slice(self._index), self._open_hits))
        # Empty buckets in between; only the newest ``capacity`` of them can still be kept.
        for empty in range(max(self._index + 1, index - self._capacity), index):
            self._closed.append((self._slice(empty), 0))
        self._index = index
        self._open_hits = 0
