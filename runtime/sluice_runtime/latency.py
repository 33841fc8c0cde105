"""Predicted compute time of a batch, learned from measured batches."""

from __future__ import annotations

import bisect
from collections import deque

# Weight of the newest measurement: recent enough to follow a resize or a noisy
# neighbour, smooth enough not to chase single outliers.
EWMA_WEIGHT = 0.2
# Deadline checks use this quantile of recent (measured / predicted) ratios: a batch
# admitted or started against the mean alone finishes late about half the times its
# prediction is tight, and a fixed margin is too much on a quiet machine and too little
# on a busy one. A higher quantile trades refusals for fewer late answers.
UPPER_QUANTILE = 0.9
# Batches the quantile is taken over: enough for a 90th percentile, recent enough to
# follow a resize or a new neighbour within seconds at ordinary rates.
RATIO_WINDOW = 100


class LatencyModel:
    """Compute seconds per batch size: EWMA per observed size, interpolated in between.

    Sizes never seen are interpolated linearly between observed neighbours, and
    extrapolated beyond the largest one with the slope of the last two (or proportionally
    to the rows when only one size is known). Alongside the means it keeps the recent
    ratios of measured to predicted time, pooled over every batch whatever its size
    (noise from neighbours and throttling scales with the work, and a size seen once has
    no spread of its own), so that deadline checks can use a pessimistic estimate
    (:meth:`predict_upper`, a high quantile of those ratios times the mean) while backlog
    sums use the mean.
    """

    def __init__(self) -> None:
        self._sizes: list[int] = []
        self._seconds: dict[int, float] = {}
        self._ratios: deque[float] = deque(maxlen=RATIO_WINDOW)
        self._upper_ratio = 1.0

    def observe(self, rows: int, seconds: float) -> None:
        """Record one measured batch."""
        predicted = self.predict(rows)
        if predicted > 0:
            self._ratios.append(seconds / predicted)
            ranked = sorted(self._ratios)
            at = min(len(ranked) - 1, int(UPPER_QUANTILE * len(ranked)))
            self._upper_ratio = max(1.0, ranked[at])
        if rows not in self._seconds:
            bisect.insort(self._sizes, rows)
            self._seconds[rows] = seconds
        else:
            self._seconds[rows] += EWMA_WEIGHT * (seconds - self._seconds[rows])

    @property
    def measured(self) -> bool:
        """Whether any batch has been measured yet."""
        return bool(self._sizes)

    def predict(self, rows: int) -> float:
        """Predicted mean compute seconds for a batch of ``rows`` (0 before any measurement)."""
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

    def predict_upper(self, rows: int) -> float:
        """A pessimistic compute time for ``rows``: the mean times a high recent ratio."""
        return self.predict(rows) * self._upper_ratio

    def snapshot(self) -> dict[str, object]:
        """What has been learned, JSON-ready: mean seconds per measured batch size and the
        ratio the pessimistic estimate multiplies them by."""
        return {
            "batch_seconds": {str(rows): self._seconds[rows] for rows in self._sizes},
            "upper_ratio": self._upper_ratio,
            "batches_in_ratio": len(self._ratios),
        }

    def largest_batch_within(self, seconds: float, min_rows: int, max_rows: int) -> int:
        """The most rows in ``[min_rows, max_rows]`` whose upper estimate fits ``seconds``.

        Returns ``min_rows`` when even that does not fit (the caller decides what then).
        """
        for rows in range(max_rows, min_rows, -1):
            if self.predict_upper(rows) <= seconds:
                return rows
        return min_rows
