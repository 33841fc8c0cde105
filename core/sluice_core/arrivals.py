"""Arrival processes: when requests come, for the load generator and the simulator alike.

Processes return *schedules*, sorted arrival offsets in seconds from the start of a run, so
an open-loop client sends each request at its time and measures latency from it (no
coordinated omission), and the simulator replays the same process. Traces are per-second
request counts (one integer per line); inside each second arrivals are Poisson, i.e.
uniform given the count. Pure Python on a caller's ``random.Random``: seeded runs repeat.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path


def poisson(rate: float, duration_s: float, rng: random.Random) -> list[float]:
    """Arrival offsets of a Poisson process at ``rate`` requests/s over ``duration_s``."""
    _check_positive("rate", rate)
    _check_positive("duration_s", duration_s)
    # Given its count a Poisson process's arrivals are uniform order statistics; drawing
    # the count first avoids a cumulative sum of exponentials drifting past the end.
    return _uniform_sorted(0.0, duration_s, poisson_count(rate * duration_s, rng), rng)


def mmpp(rates: Sequence[float], mean_dwell_s: float, duration_s: float,
         rng: random.Random) -> list[float]:
    """Arrival offsets of a Markov-modulated Poisson process.

    The process stays in a state for an exponential time (mean ``mean_dwell_s``), emits
    Poisson arrivals at that state's rate, then jumps to another state chosen uniformly.
    With equal dwell times the long-run mean rate is the mean of ``rates``.
    """
    if len(rates) < 2:
        raise ValueError(f"mmpp needs at least two rates, got {list(rates)}")
    if any(rate < 0 for rate in rates):
        raise ValueError(f"mmpp rates must be >= 0, got {list(rates)}")
    _check_positive("mean_dwell_s", mean_dwell_s)
    _check_positive("duration_s", duration_s)
    offsets: list[float] = []
    state = rng.randrange(len(rates))
    start = 0.0
    while start < duration_s:
        end = min(duration_s, start + rng.expovariate(1.0 / mean_dwell_s))
        count = poisson_count(rates[state] * (end - start), rng)
        offsets.extend(_uniform_sorted(start, end, count, rng))
        state = rng.choice([s for s in range(len(rates)) if s != state])
        start = end
    return offsets


def bursty(rate: float, duration_s: float, rng: random.Random) -> list[float]:
    """The synthetic stand-in for a missing trace: a two-state MMPP with mean ``rate``.

    Rates of 0.4x and 1.6x the mean with 5 s dwell times give per-second counts a
    coefficient of variation near the bursty Twitter windows (about 0.5).
    """
    _check_positive("rate", rate)
    return mmpp([0.4 * rate, 1.6 * rate], 5.0, duration_s, rng)


def from_counts(counts: Sequence[int], rng: random.Random) -> list[float]:
    """Arrival offsets for per-second request counts, uniform at random within each second."""
    offsets: list[float] = []
    for second, count in enumerate(counts):
        if count < 0:
            raise ValueError(f"request count for second {second} is negative: {count}")
        offsets.extend(_uniform_sorted(float(second), second + 1.0, int(count), rng))
    return offsets


def counts_per_second(offsets: Sequence[float], duration_s: float) -> list[int]:
    """How many of ``offsets`` fall in each whole second of ``[0, duration_s)``."""
    counts = [0] * math.ceil(duration_s)
    for offset in offsets:
        second = int(offset)
        if 0 <= second < len(counts):
            counts[second] += 1
    return counts


def read_trace(path: Path) -> list[int]:
    """Per-second request counts from a trace file: one non-negative integer per line.

    Blank lines are skipped; anything else raises ``ValueError`` naming the line.
    """
    counts = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{path}:{number}: expected an integer, got {text!r}") from None
        if value < 0:
            raise ValueError(f"{path}:{number}: request count must be >= 0, got {value}")
        counts.append(value)
    if not counts:
        raise ValueError(f"{path}: no request counts")
    return counts


def scale_counts(counts: Sequence[int], factor: float, rng: random.Random) -> list[int]:
    """Multiply per-second counts by ``factor``, rounding at random so the mean is kept.

    Deterministic rounding would turn a trace scaled below one request per second into
    silence; rounding up with probability equal to the fraction keeps it unbiased.
    """
    if factor < 0:
        raise ValueError(f"scale factor must be >= 0, got {factor}")
    return [math.floor(count * factor + rng.random()) for count in counts]


def scale_to_rate(counts: Sequence[int], mean_rate: float) -> float:
    """The factor that brings a trace's mean rate to ``mean_rate`` requests/s."""
    _check_positive("mean_rate", mean_rate)
    mean = sum(counts) / len(counts) if counts else 0.0
    if mean <= 0:
        raise ValueError("cannot scale a trace with no requests")
    return mean_rate / mean


def poisson_count(mean: float, rng: random.Random) -> int:
    """A Poisson-distributed count with the given mean.

    Knuth's product method for small means; above 30 a normal approximation with
    continuity correction, whose error is far below a trace's own noise there.
    """
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count


def _uniform_sorted(start: float, end: float, count: int, rng: random.Random) -> list[float]:
    width = end - start
    return sorted(start + width * rng.random() for _ in range(count))


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
