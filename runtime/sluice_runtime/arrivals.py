"""The pure half of the load generator: when requests are sent, and what their results say.

Arrival processes return *schedules*: sorted send offsets in seconds from the start of a
run, so an open-loop client can send each request at an absolute time and measure its
latency from that time (no coordinated omission). Statistics turn per-request records
into throughput, goodput and latency percentiles.

Nothing here does I/O except ``read_trace``, and nothing imports the protocol stubs, so
tests and planners can use it in any process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OK = "OK"


def poisson(rate: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Send offsets of a Poisson process at ``rate`` requests/s over ``duration_s``."""
    _check_positive("rate", rate)
    _check_positive("duration_s", duration_s)
    # Conditioned on its count, a Poisson process's arrivals are uniform order statistics;
    # drawing the count first avoids a cumulative sum of exponentials drifting past the end.
    count = rng.poisson(rate * duration_s)
    return np.sort(rng.uniform(0.0, duration_s, count))


def mmpp(
    rates: Sequence[float],
    mean_dwell_s: float,
    duration_s: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Send offsets of a Markov-modulated Poisson process.

    The process stays in a state for an exponential time (mean ``mean_dwell_s``), emits
    Poisson arrivals at that state's rate, then jumps to another state chosen uniformly.
    With equal dwell times the long-run mean rate is the mean of ``rates``.
    """
    if len(rates) < 2:
        raise ValueError(f"mmpp needs at least two rates, got {list(rates)}")
    for rate in rates:
        if rate < 0:
            raise ValueError(f"mmpp rates must be >= 0, got {list(rates)}")
    _check_positive("mean_dwell_s", mean_dwell_s)
    _check_positive("duration_s", duration_s)
    pieces: list[np.ndarray] = []
    state = int(rng.integers(len(rates)))
    start = 0.0
    while start < duration_s:
        end = min(duration_s, start + rng.exponential(mean_dwell_s))
        count = rng.poisson(rates[state] * (end - start))
        pieces.append(np.sort(rng.uniform(start, end, count)))
        others = [s for s in range(len(rates)) if s != state]
        state = others[int(rng.integers(len(others)))]
        start = end
    return np.concatenate(pieces)


def bursty(rate: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """The synthetic stand-in for a missing trace: a two-state MMPP with mean ``rate``.

    Rates of 0.4x and 1.6x the mean with 5 s dwell times give per-second counts a
    coefficient of variation near the bursty Twitter windows (about 0.5).
    """
    _check_positive("rate", rate)
    return mmpp([0.4 * rate, 1.6 * rate], 5.0, duration_s, rng)


def from_counts(counts: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Send offsets for per-second request counts, spread at random within each second."""
    pieces = []
    for second, count in enumerate(counts):
        if count < 0:
            raise ValueError(f"request count for second {second} is negative: {count}")
        pieces.append(np.sort(rng.uniform(second, second + 1, int(count))))
    return np.concatenate(pieces) if pieces else np.empty(0)


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


def scale_counts(counts: Sequence[int], factor: float, rng: np.random.Generator) -> list[int]:
    """Multiply per-second counts by ``factor``, rounding at random so the mean is kept.

    Deterministic rounding would turn a trace scaled below one request per second into
    silence; rounding up with probability equal to the fraction keeps it unbiased.
    """
    if factor < 0:
        raise ValueError(f"scale factor must be >= 0, got {factor}")
    scaled = np.asarray(counts, dtype=float) * factor
    return [int(v) for v in np.floor(scaled + rng.uniform(0.0, 1.0, len(scaled)))]


def scale_to_rate(counts: Sequence[int], mean_rate: float) -> float:
    """The factor that brings a trace's mean rate to ``mean_rate`` requests/s."""
    _check_positive("mean_rate", mean_rate)
    mean = float(np.mean(counts)) if len(counts) else 0.0
    if mean <= 0:
        raise ValueError("cannot scale a trace with no requests")
    return mean_rate / mean


@dataclass
class Records:
    """Per-request results of one run, in completion order.

    ``scheduled_s`` is when the request was due (offset from the run's start), ``sent_s``
    when the client actually sent it, ``latency_s`` the time from *scheduled* to done.
    """

    scheduled_s: list[float] = field(default_factory=list)
    sent_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)

    def add(self, scheduled_s: float, sent_s: float, latency_s: float, code: str) -> None:
        """Record one finished request."""
        self.scheduled_s.append(scheduled_s)
        self.sent_s.append(sent_s)
        self.latency_s.append(latency_s)
        self.codes.append(code)

    def __len__(self) -> int:
        return len(self.codes)


@dataclass(frozen=True)
class Summary:
    """What a run achieved, over the measured window (after warm-up).

    Rates are per second of the window; latencies are in milliseconds, over successful
    requests only (errors are counted in ``errors``, and miss the SLO in ``goodput``).
    """

    requests: int
    ok: int
    window_s: float
    throughput: float
    goodput: float
    slo_ms: float | None
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    send_lag_p99_ms: float
    errors: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def summarize(records: Records, *, slo_ms: float | None = None, warmup_s: float = 0.0) -> Summary:
    """Summarise requests scheduled at or after ``warmup_s``.

    The window runs from ``warmup_s`` to the last completion, so an overloaded server
    that finishes late is charged for the extra time. ``goodput`` counts successful
    requests within ``slo_ms`` (all successful ones when no SLO is given).
    """
    if warmup_s < 0:
        raise ValueError(f"warmup_s must be >= 0, got {warmup_s}")
    scheduled = np.asarray(records.scheduled_s, dtype=float)
    latency = np.asarray(records.latency_s, dtype=float)
    sent = np.asarray(records.sent_s, dtype=float)
    codes = np.asarray(records.codes, dtype=object)
    keep = scheduled >= warmup_s
    scheduled, latency, sent, codes = scheduled[keep], latency[keep], sent[keep], codes[keep]
    ok = codes == OK
    ok_latency_ms = latency[ok] * 1e3
    window_s = float(np.max(scheduled + latency)) - warmup_s if len(scheduled) else 0.0
    good = int(np.sum(ok_latency_ms <= slo_ms)) if slo_ms is not None else int(np.sum(ok))
    return Summary(
        requests=len(codes),
        ok=int(np.sum(ok)),
        window_s=window_s,
        throughput=_rate(int(np.sum(ok)), window_s),
        goodput=_rate(good, window_s),
        slo_ms=slo_ms,
        mean_ms=float(np.mean(ok_latency_ms)) if len(ok_latency_ms) else float("nan"),
        p50_ms=percentile(ok_latency_ms, 50),
        p90_ms=percentile(ok_latency_ms, 90),
        p99_ms=percentile(ok_latency_ms, 99),
        max_ms=float(np.max(ok_latency_ms)) if len(ok_latency_ms) else float("nan"),
        send_lag_p99_ms=percentile((sent - scheduled) * 1e3, 99),
        errors=dict(sorted(Counter(str(c) for c in codes[~ok]).items())),
    )


def percentile(values: np.ndarray | Sequence[float], q: float) -> float:
    """The ``q``-th percentile by nearest rank (a value that was observed); NaN if empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return float("nan")
    return float(np.percentile(data, q, method="inverted_cdf"))


def _rate(count: int, window_s: float) -> float:
    return count / window_s if window_s > 0 else 0.0


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
