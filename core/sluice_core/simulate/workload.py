"""The load a simulation replays, as requests per second.

Every workload becomes a per-second series of request counts before the run: the
clairvoyant policy is handed the whole series, and the simulator places each second's
requests uniformly at random inside it (Poisson arrivals within the second, given the
count), one second at a time, so a day-long run never holds a day of arrival times.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from sluice_core import arrivals
from sluice_core.simulate.config import SimulationError

#: MMPP arrivals are drawn an hour at a time, so a day at thousands of requests per second
#: never holds every offset at once. The process restarts in a random state each hour: with
#: 5 s dwell times (``arrivals.bursty``) that changes one dwell in 720.
MMPP_CHUNK_S = 3600.0


def poisson_counts(rate: float, duration_s: float, rng: random.Random) -> list[int]:
    """Per-second counts of a Poisson process at ``rate`` requests/s."""
    _check(rate, duration_s)
    return [arrivals.poisson_count(rate, rng) for _ in range(math.ceil(duration_s))]


def mmpp_counts(rate: float, duration_s: float, rng: random.Random) -> list[int]:
    """Per-second counts of the two-state MMPP with mean ``rate`` (``arrivals.bursty``)."""
    _check(rate, duration_s)
    counts: list[int] = []
    start = 0.0
    while start < duration_s:
        span = min(MMPP_CHUNK_S, duration_s - start)
        counts.extend(arrivals.counts_per_second(arrivals.bursty(rate, span, rng), span))
        start += span
    return counts


def trace_counts(counts: Sequence[int], rng: random.Random, mean_rate: float | None = None,
                 duration_s: float | None = None) -> list[int]:
    """A trace's per-second counts, cut to ``duration_s`` and scaled to ``mean_rate``.

    Scaling uses the mean of the part replayed, so the run's mean rate is the one asked.
    """
    series = list(counts)
    if duration_s is not None:
        seconds = math.ceil(duration_s)
        if seconds < 1:
            raise SimulationError(f"duration must be at least 1 s, got {duration_s}")
        if seconds > len(series):
            raise SimulationError(f"the trace has {len(series)} s, fewer than the "
                                  f"{seconds} s asked")
        series = series[:seconds]
    if mean_rate is not None:
        try:
            factor = arrivals.scale_to_rate(series, mean_rate)
        except ValueError as exc:
            raise SimulationError(str(exc)) from None
        series = arrivals.scale_counts(series, factor, rng)
    return series


def place_in_second(second: int, count: int, rng: random.Random) -> list[float]:
    """``count`` arrival times uniform in ``[second, second + 1)``, ascending."""
    return sorted([second + rng.random() for _ in range(count)])


def _check(rate: float, duration_s: float) -> None:
    if not rate > 0:
        raise SimulationError(f"rate must be > 0, got {rate}")
    if not duration_s >= 1:
        raise SimulationError(f"duration must be at least 1 s, got {duration_s}")
