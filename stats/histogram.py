"""Latency histograms with fixed bucket bounds, shared by ``/stats`` and ``/metrics``."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

#: Bucket upper bounds in seconds (inclusive, as Prometheus ``le``); the last one is +Inf.
BOUNDS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.00075,
    0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 60,
    math.inf,
)  # fmt: skip


class LatencyHistogram:
    """Counts durations (seconds) into :data:`BOUNDS` buckets; keeps count, sum, min and max."""

    def __init__(self) -> None:
        self._buckets = [0] * len(BOUNDS)
        self.count = 0
        self.sum = 0.0
        self.max = 0.0
        self._min = math.inf

    def observe(self, seconds: float) -> None:
        """Record one duration; negative or NaN durations count as 0."""
        self.observe_many((seconds,))

    def observe_many(self, durations: Iterable[float]) -> None:
        """Record each duration, in order; negative or NaN ones count as 0."""
        buckets = self._buckets
        total = self.sum
        high = self.max
        low = self._min
        count = 0
        for seconds in durations:
            value = seconds if seconds > 0 else 0.0
            buckets[bisect_left(BOUNDS, value)] += 1
            total += value
            if value > high:
                high = value
            if value < low:
                low = value
            count += 1
        self.count += count
        self.sum = total
        self.max = high
        self._min = low

    def percentile(self, q: float) -> float:
        """The ``q``-quantile (``0 <= q <= 1``) in seconds, 0.0 when empty.

        Linear interpolation inside the bucket that holds it (the +Inf bucket spans up to
        ``max``), clamped to the observed minimum and maximum.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within 0..1, not {q}")
        if self.count == 0:
            return 0.0
        rank = q * self.count
        below = 0
        for index, in_bucket in enumerate(self._buckets):
            if in_bucket and below + in_bucket >= rank:
                lower = BOUNDS[index - 1] if index else 0.0
                upper = min(BOUNDS[index], self.max)
                value = lower + (upper - lower) * (rank - below) / in_bucket
                return min(max(value, self._min), self.max)
            below += in_bucket
        return self.max  # unreachable: the last non-empty bucket always holds rank <= count

    def summary_ms(self) -> dict[str, float]:
        """``{"count", "p50", "p90", "p99", "max"}``, times in milliseconds to 3 decimals."""

        def ms(seconds: float) -> float:
            return round(seconds * 1000.0, 3)

        return {
            "count": self.count,
            "p50": ms(self.percentile(0.5)),
            "p90": ms(self.percentile(0.9)),
            "p99": ms(self.percentile(0.99)),
            "max": ms(self.max),
        }

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= bound)`` for every bound, ending with ``(inf, count)``."""
        running = 0
        pairs = []
        for bound, in_bucket in zip(BOUNDS, self._buckets):
            running += in_bucket
            pairs.append((bound, running))
        return pairs

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild this histogram elsewhere (JSON-able)."""
        return {
            "buckets": list(self._buckets),
            "count": self.count,
            "sum": self.sum,
            "max": self.max,
            "min": None if self._min == math.inf else self._min,
        }

    def merge(self, state: dict[str, Any]) -> None:
        """Add another histogram's :meth:`state` to this one."""
        for index, in_bucket in enumerate(state["buckets"][: len(self._buckets)]):
            self._buckets[index] += int(in_bucket)
        self.count += int(state["count"])
        self.sum += float(state["sum"])
        self.max = max(self.max, float(state["max"]))
        if state.get("min") is not None:
            self._min = min(self._min, float(state["min"]))

    def copy(self) -> LatencyHistogram:
        twin = LatencyHistogram()
        twin.merge(self.state())
        return twin
