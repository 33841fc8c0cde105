"""What a simulation run reports: one record per policy, JSON-ready, and latency histograms.

Latencies are counted in fixed buckets of 0.1 ms (a dict from bucket to count, so a run of
millions of requests keeps a few thousand integers); a percentile is the midpoint of the
bucket holding it, within 0.05 ms of the exact order statistic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: Buckets per second of latency (0.1 ms each).
BUCKETS_PER_S = 10_000.0


def bucket_quantile_ms(counts: Mapping[int, int], q: float) -> float | None:
    """The latency at quantile ``q`` in (0, 1] of bucketed ``counts``, in ms; None if empty."""
    total = sum(counts.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return (bucket + 0.5) * 1000.0 / BUCKETS_PER_S
    raise AssertionError("unreachable: the rank is within the total")


def merge_counts(into: dict[int, int], counts: Mapping[int, int]) -> None:
    """Add bucket ``counts`` to ``into``."""
    for bucket, count in counts.items():
        into[bucket] = into.get(bucket, 0) + count


@dataclass(frozen=True)
class StageResult:
    """One stage over the whole run."""

    name: str
    #: Requests that reached the stage (the router's call), refused ones included.
    arrivals: int
    answered: int
    #: Answered after the deadline the stage was given.
    late: int
    #: Refused by the router before the stage (the stages from here would not finish in
    #: time), by a replica's admission or on expiry in its queue, by the queue cap, or for
    #: want of a ready replica.
    refused_router: int
    refused_deadline: int
    refused_queue_full: int
    refused_unavailable: int
    batches: int
    mean_batch_size: float | None
    largest_batch: int
    #: Latency at the stage (queue and compute, hop excluded) of answered requests.
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    core_seconds: float
    mean_cores: float
    peak_cores: float
    peak_replicas: int
    final_replicas: int
    resizes_deferred: int
    resizes_infeasible: int

    @property
    def refused(self) -> int:
        """Every refusal at the stage."""
        return (self.refused_router + self.refused_deadline + self.refused_queue_full
                + self.refused_unavailable)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object."""
        return {**asdict(self), "refused": self.refused}


@dataclass(frozen=True)
class SimResult:
    """One policy over one workload: SLO attainment, latency and cost."""

    policy: str
    seed: int
    duration_s: float
    slo_ms: float
    percentile: float
    #: Requests sent; each ends exactly once: ``ok``, ``late`` or ``rejected``.
    requests: int
    ok: int
    late: int
    rejected: int
    #: End-to-end latency of answered requests (refused ones have none).
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    #: End-to-end latency at the SLO's percentile, of answered requests.
    slo_percentile_ms: float | None
    #: Cores allocated to every replica holding a placement, integrated over the run.
    core_seconds: float
    mean_cores: float
    peak_cores: float
    decisions: int
    vertical_actions: int
    horizontal_actions: int
    batching_actions: int
    variant_actions: int
    #: Seconds simulated after the last arrival window until every request had ended.
    drain_s: float
    per_stage: tuple[StageResult, ...]

    @property
    def misses(self) -> int:
        """Requests not answered within the SLO: late, refused, dropped or failed."""
        return self.late + self.rejected

    @property
    def answered(self) -> int:
        """Requests answered, in time or late."""
        return self.ok + self.late

    @property
    def slo_attainment(self) -> float | None:
        """The fraction of requests answered within the SLO (None with no requests)."""
        return self.ok / self.requests if self.requests else None

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (what ``sluice simulate --json`` writes)."""
        document = asdict(self)
        document["per_stage"] = [stage.to_json() for stage in self.per_stage]
        return {
            "policy": self.policy,
            "slo_attainment": self.slo_attainment,
            "misses": self.misses,
            "answered": self.answered,
            **document,
        }
