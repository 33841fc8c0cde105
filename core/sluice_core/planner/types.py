"""What the planner is asked (a load, settings) and what it answers (a plan per stage)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Load:
    """The load a plan is made for, at the pipeline's entrance."""

    #: Mean arrival rate of requests (one row each) at the pipeline.
    rate_rps: float
    #: Squared coefficient of variation of inter-arrival times (Poisson = 1; burstier > 1).
    arrival_scv: float = 1.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.rate_rps) or self.rate_rps < 0:
            raise ValueError(f"rate_rps must be a finite number >= 0, got {self.rate_rps!r}")
        if not math.isfinite(self.arrival_scv) or self.arrival_scv < 0:
            raise ValueError(f"arrival_scv must be a finite number >= 0, "
                             f"got {self.arrival_scv!r}")


@dataclass(frozen=True)
class PlannerSettings:
    """How finely the planner searches; the defaults fit a 100 ms budget in well under
    100 ms of planning for 5 stages x 3 variants."""

    #: The end-to-end budget is cut into this many equal steps; each stage's predicted
    #: latency is rounded up to a step, so a plan is optimal for the full budget and at
    #: least as good as the true optimum of the budget less ``stages`` steps.
    budget_steps: int = 200
    #: Cores per replica are tried on multiples of this (and the stage's min and max)...
    cores_step: float = 0.25
    #: ...widened to a multiple of it when the stage's range would need more points (an
    #: 8-core range is tried in half cores: the same relative precision, half the work).
    max_cores_points: int = 17
    #: Batching delays tried (milliseconds); the spec's own is added.
    delays_ms: tuple[float, ...] = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
    #: Largest fraction of a replica's capacity (rows/s at its max batch) a plan may use;
    #: the rest absorbs bursts and model error. Checked against the simulator on the
    #: example's measured profile: at 0.9 plans met their SLO for 91-98 % of requests at
    #: high load (the runtime refuses early what it predicts late), at 0.8 for all.
    max_utilisation: float = 0.8
    #: Cores of the isolated composition's router, counted in its cost (the operator's
    #: default is 0.5); 0 leaves the router out of the comparison with fused.
    router_cores: float = 0.0

    def __post_init__(self) -> None:
        if self.budget_steps < 1:
            raise ValueError(f"budget_steps must be >= 1, got {self.budget_steps}")
        if not self.cores_step > 0:
            raise ValueError(f"cores_step must be > 0, got {self.cores_step}")
        if self.max_cores_points < 2:
            raise ValueError(f"max_cores_points must be >= 2, got {self.max_cores_points}")
        if not 0 < self.max_utilisation < 1:
            raise ValueError(f"max_utilisation must be in (0, 1), got {self.max_utilisation}")
        if any(d < 0 for d in self.delays_ms):
            raise ValueError(f"delays_ms must be >= 0, got {self.delays_ms}")
        if self.router_cores < 0:
            raise ValueError(f"router_cores must be >= 0, got {self.router_cores}")


@dataclass(frozen=True)
class StagePlan:
    """What one stage runs with, what the model predicts for it, and why."""

    stage: str
    variant: str
    max_batch_size: int
    max_delay_ms: float
    #: Cores per replica.
    cores: float
    replicas: int
    #: This stage's share of the end-to-end budget (hops excluded).
    budget_ms: float
    #: Predicted latency at the SLO percentile, queueing included.
    predicted_ms: float
    #: Arrival rate over capacity (rows/s at the max batch size, all replicas).
    utilisation: float
    accuracy: float
    #: Why this choice, one sentence a platform engineer can read.
    reason: str
    #: Batches a replica runs side by side (the model's executors: 1, or whole cores).
    executors: int = 1
    #: The batch size the load forms on average (rows).
    batch_rows: float = 1.0
    #: Seconds from process start to ready for this stage's model (load plus warm-up).
    cold_start_s: float = 0.0

    @property
    def cost_cores(self) -> float:
        """Cores allocated to the stage: cores per replica times replicas."""
        return self.cores * self.replicas

    def to_json(self) -> dict[str, Any]:
        """The stage plan as a JSON-ready mapping (infinite latencies become null)."""
        return {
            "stage": self.stage, "variant": self.variant,
            "max_batch_size": self.max_batch_size, "max_delay_ms": self.max_delay_ms,
            "cores": self.cores, "replicas": self.replicas,
            "cost_cores": round(self.cost_cores, 6),
            "budget_ms": _finite(self.budget_ms), "predicted_ms": _finite(self.predicted_ms),
            "utilisation": _finite(self.utilisation), "accuracy": self.accuracy,
            "executors": self.executors, "batch_rows": _finite(self.batch_rows),
            "cold_start_s": self.cold_start_s, "reason": self.reason,
        }


@dataclass(frozen=True)
class Plan:
    """A pipeline's plan: the composition, every stage's allocation, and the prediction."""

    pipeline: str
    #: "isolated" or "fused" (``auto`` resolved).
    composition: str
    load: Load
    stages: tuple[StagePlan, ...]
    #: End-to-end latency at the SLO percentile, hops included (sum of stage percentiles:
    #: conservative).
    predicted_ms: float
    #: Product of the stages' accuracies.
    accuracy: float
    #: False when no choice meets the SLO: the plan is then the best effort (lowest
    #: predicted latency within bounds) and ``reason`` says what is short.
    feasible: bool
    reason: str
    #: The SLO the plan was made for.
    slo_ms: float = 0.0
    percentile: float = 99.0
    #: Latency of the isolated hops on a request's path (0 when fused).
    hops_ms: float = 0.0
    #: Cores of other services counted in the cost (the isolated router).
    overhead_cores: float = 0.0

    @property
    def cost_cores(self) -> float:
        """Total cores allocated: every stage's cores times replicas, plus overheads."""
        return sum(s.cost_cores for s in self.stages) + self.overhead_cores

    def stage(self, name: str) -> StagePlan:
        """The plan of the stage called ``name``; KeyError when there is none."""
        for stage in self.stages:
            if stage.stage == name:
                return stage
        raise KeyError(f"plan of {self.pipeline!r} has no stage {name!r}")

    def to_json(self) -> dict[str, Any]:
        """The plan as a JSON-ready mapping (``sluice plan --json``)."""
        return {
            "pipeline": self.pipeline,
            "composition": self.composition,
            "load": {"rate_rps": self.load.rate_rps, "arrival_scv": self.load.arrival_scv},
            "slo": {"latency_ms": self.slo_ms, "percentile": self.percentile},
            "feasible": self.feasible,
            "predicted_ms": _finite(self.predicted_ms),
            "hops_ms": self.hops_ms,
            "accuracy": self.accuracy,
            "cost_cores": round(self.cost_cores, 6),
            "overhead_cores": self.overhead_cores,
            "reason": self.reason,
            "stages": [s.to_json() for s in self.stages],
        }


def _finite(value: float) -> float | None:
    """JSON has no infinity: an unbounded prediction is written as null."""
    return value if math.isfinite(value) else None
