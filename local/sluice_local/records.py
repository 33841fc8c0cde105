"""What a load generator run measured: per-request records, and the statistics over them
(throughput, goodput, latency percentiles). The schedules come from sluice_core.arrivals.

Nothing here imports the protocol stubs, so tests can use it in any process; the only I/O
is reading back a records file.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OK = "OK"


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


def read_records(path: Path) -> Records:
    """The records a load generator wrote with ``--records`` (milliseconds in the file)."""
    records = Records()
    with path.open(newline="") as source:
        for row in csv.DictReader(source):
            records.add(float(row["scheduled_ms"]) / 1e3, float(row["sent_ms"]) / 1e3,
                        float(row["latency_ms"]) / 1e3, row["code"])
    return records
