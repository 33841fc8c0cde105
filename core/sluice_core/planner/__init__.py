"""The SLO planner: per stage the variant, batching, cores and replicas that meet the
pipeline's end-to-end latency SLO at the fewest cores, and isolated or fused.

- :func:`plan` — the whole pipeline under a :class:`Load` (:mod:`.compose`).
- :func:`stage_latency_ms` — one stage's predicted latency at a quantile, queueing
  included (:mod:`.model`, which documents the queueing model and its assumptions).
- :func:`min_cores_for` — the fewest cores per replica meeting a latency target, for the
  scaling policies' fast loop.
"""

from sluice_core.planner.compose import plan
from sluice_core.planner.model import StageEstimate, min_cores_for, stage_latency_ms
from sluice_core.planner.types import Load, Plan, PlannerSettings, StagePlan

__all__ = [
    "Load",
    "Plan",
    "PlannerSettings",
    "StageEstimate",
    "StagePlan",
    "min_cores_for",
    "plan",
    "stage_latency_ms",
]
