"""Predicted compute time of a batch, learned from measured batches."""

from __future__ import annotations

import bisect

# Weight of the newest measurement: recent enough to follow a resize or a noisy
# neighbour, smooth enough not to chase single outliers.
EWMA_WEIGHT = 0.2


class LatencyModel:
    """Compute seconds per batch size: EWMA per observed size, interpolated in between.

    Sizes never seen are interpolated linearly between observed neighbours, and
    extrapolated beyond the largest one with the slope of the last two (or proportionally
    to the rows when only one size is known).
    """

    def __init__(self) -> None:
        self._sizes: list[int] = []
        self._seconds: dict[int, float] = {}

    def observe(self, rows: int, seconds: float) -> None:
        """Record one measured batch."""
        if rows not in self._seconds:
            bisect.insort(self._sizes, rows)
            self._seconds[rows] = seconds
        else:
            self._seconds[rows] += EWMA_WEIGHT * (seconds - self._seconds[rows])

    def predict(self, rows: int) -> float:
        """Predicted compute seconds for a batch of ``rows`` (0 before any measurement)."""
        if not self._sizes:
            return 0.0
        if rows in self._seconds:
            return self._seconds[rows]
        at = bisect.bisect_left(self._sizes, rows)
        if at == 0:
            return self._seconds[self._sizes[0]]
        if at < len(self._sizes):
            lo, hi = self._sizes[at - 1], self._sizes[at]
            frac = (rows - lo) / (hi - lo)
            return self._seconds[lo] + frac * (self._seconds[hi] - self._seconds[lo])
        top = self._sizes[-1]
        if len(self._sizes) == 1:
            return self._seconds[top] * rows / top
        below = self._sizes[-2]
        slope = (self._seconds[top] - self._seconds[below]) / (top - below)
        return self._seconds[top] + max(slope, 0.0) * (rows - top)
