"""The hybrid policy: cores in place for bursts, replicas for lasting load, batching live.

Every second, per stage (DESIGN.md §9, "the hybrid scaler in one paragraph"):

- **Vertical first.** The stage must serve its arrivals plus its backlog drained within a
  second. The fewest cores per replica with which the *ready* replicas meet the stage's
  latency budget (the planner's queueing model) is applied at once when it is more than
  the replicas have: an in-place resize lands in about a second, far sooner than a new
  replica's cold start. Cores come down only to the largest need of the last
  ``vertical_down_s`` and by more than ``hysteresis_cores``; and at once when new
  replicas have just become ready (the load spreads over more of them).
- **Horizontal to settle.** Replicas are sized at the plan's cores per replica (the
  cheapest size for the load, below the Amdahl knee). When the need stays above that
  size for ``persist_s`` (the load has risen, not burst), or passes the knee (more cores
  stop paying), or cannot be met even at ``cpu.max``, or a resize is deferred by the node
  or infeasible, the stage gets the replicas that serve the load at the plan's size. It
  gives replicas back when the largest load of the last ``scale_down_s`` needs fewer (at
  most half at a time, never while replicas are starting, and with ``scale_down_margin``
  so that shedding one does not immediately call for it again).
- **Replanning.** Every ``replan_s`` the planner is run again at the largest pipeline rate
  of the last ``scale_down_s``: budgets, batching and the efficient size follow the load;
  a batching change is applied live.

Hysteresis (the margin, the down windows) and the persistence span keep it from
oscillating; bursts shorter than ``persist_s`` cost no cold start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar

from sluice_core.planner import Load, Plan, StagePlan, plan
from sluice_core.profiles import PipelineProfile
from sluice_core.scaling.demand import CoreSizing, RecentRates, required_rps
from sluice_core.scaling.types import (
    RESIZE_DEFERRED,
    RESIZE_INFEASIBLE,
    Action,
    Allocation,
    Observation,
    Resize,
    SetBatching,
    SetReplicas,
    SetVariant,
    StageObservation,
)
from sluice_core.spec import Pipeline, Stage

_EPS = 1e-9


@dataclass(frozen=True)
class HybridStageState:
    """What the policy asked of one stage, and what it remembers of it."""

    replicas: int
    cores: float
    rates: RecentRates
    needs: RecentRates
    #: When the need first rose above the plan's size (None: it is not above).
    over_since_s: float | None = None
    ready: int = 0


@dataclass(frozen=True)
class HybridState:
    """The plan in force, when it was made, the pipeline's recent rates, and every stage."""

    plan: Plan
    planned_at_s: float
    pipeline_rates: RecentRates
    stages: Mapping[str, HybridStageState]


@dataclass(frozen=True)
class HybridPolicy:
    """Vertical for bursts, horizontal to settle, batching retuned (module docstring)."""

    name: ClassVar[str] = "hybrid"
    pipeline: Pipeline
    profile: PipelineProfile
    initial_plan: Plan
    interval_s: float = 1.0
    persist_s: float = 6.0
    vertical_down_s: float = 10.0
    scale_down_s: float = 60.0
    scale_down_margin: float = 1.2
    hysteresis_cores: float = 0.1
    replan_s: float = 30.0
    knee_efficiency: float = 0.6

    def initial_allocation(self) -> Mapping[str, Allocation]:
        """The initial plan's allocation."""
        return {s.stage: Allocation(s.replicas, s.cores, s.max_batch_size, s.max_delay_ms,
                                    s.variant) for s in self.initial_plan.stages}

    def initial_state(self) -> HybridState:
        """The initial plan, no load seen yet."""
        return HybridState(
            plan=self.initial_plan,
            planned_at_s=0.0,
            pipeline_rates=RecentRates(self.scale_down_s),
            stages={s.stage: HybridStageState(s.replicas, s.cores,
                                              RecentRates(self.scale_down_s),
                                              RecentRates(self.vertical_down_s), None,
                                              s.replicas)
                    for s in self.initial_plan.stages},
        )

    def decide(self, observation: Observation, state: HybridState,
               now_s: float) -> tuple[list[Action], HybridState]:
        """One second's decisions for every stage (module docstring)."""
        actions: list[Action] = []
        first = self.pipeline.stages[0].name
        pipeline_rates = state.pipeline_rates
        if first in observation.stages:
            pipeline_rates = pipeline_rates.add(
                now_s, required_rps(observation.stages[first], observation.entrance_rps))
        current_plan, planned_at = state.plan, state.planned_at_s
        if now_s - planned_at >= self.replan_s and pipeline_rates.samples:
            current_plan = plan(self.pipeline, self.profile, Load(pipeline_rates.peak()))
            planned_at = now_s
            actions += _retune(state.plan, current_plan)
        stages = dict(state.stages)
        for stage in self.pipeline.stages:
            seen = observation.stages.get(stage.name)
            if seen is None or stage.name not in stages:
                continue
            stage_actions, stages[stage.name] = self._decide_stage(
                stage, current_plan.stage(stage.name), seen, observation.entrance_rps,
                stages[stage.name], now_s)
            actions += stage_actions
        return actions, HybridState(current_plan, planned_at, pipeline_rates, stages)

    def _decide_stage(self, stage: Stage, planned: StagePlan, seen: StageObservation,
                      entrance_rps: float | None, state: HybridStageState,
                      now_s: float) -> tuple[list[Action], HybridStageState]:
        sizing = CoreSizing(
            model=self.profile.stage(stage.name).variant(planned.variant),
            budget_ms=planned.budget_ms, max_batch_size=planned.max_batch_size,
            max_delay_ms=planned.max_delay_ms, min_cores=stage.cpu.min_value,
            max_cores=stage.cpu.max_value, quantile=self.pipeline.slo_quantile)
        size = min(max(planned.cores, sizing.min_cores), sizing.max_cores)
        knee = max(size, sizing.knee_cores(efficiency=self.knee_efficiency))
        rate = required_rps(seen, entrance_rps)
        ready = seen.ready_replicas
        need = sizing.cores_for(rate, max(1, ready))
        short = need is None
        need_cores = sizing.max_cores if need is None else need
        needs = state.needs.add(now_s, need_cores)
        rates = state.rates.add(now_s, rate)
        actions: list[Action] = []

        # Vertical: up at once; down to the window's peak, or at once once replicas joined.
        cores = state.cores
        newly_ready = ready > state.ready
        if ready and need_cores > cores + _EPS:
            cores = need_cores
            actions.append(Resize(stage.name, cores, (
                f"burst: {rate:.0f} rows/s on {ready} ready replica(s) needs {cores:g} cores "
                f"each within {sizing.budget_ms:.1f} ms (was {state.cores:g})")))
        elif ready and (newly_ready or needs.spans(now_s)):
            floor = need_cores if newly_ready else needs.peak()
            if floor < cores - self.hysteresis_cores:
                why = (f"{ready} replicas ready now" if newly_ready
                       else f"the most needed over {self.vertical_down_s:g} s")
                actions.append(Resize(stage.name, floor, (
                    f"cores back down {cores:g} -> {floor:g}: {why} at {rate:.0f} rows/s")))
                cores = floor

        # Horizontal: settle on replicas of the plan's size.
        over = need_cores > size + _EPS
        over_since = (state.over_since_s if state.over_since_s is not None else now_s) \
            if over else None
        blocked = next((r.resize for r in seen.replicas
                        if r.resize in (RESIZE_DEFERRED, RESIZE_INFEASIBLE)), None)
        grow_because = None
        if short:
            grow_because = f"even {sizing.max_cores:g} cores per replica (cpu.max) fall short"
        elif blocked is not None:
            grow_because = f"a resize is {blocked}"
        elif need_cores > knee + _EPS:
            grow_because = f"{need_cores:g} cores per replica is past the knee ({knee:g})"
        elif over_since is not None and now_s - over_since >= self.persist_s:
            grow_because = (f"the load has needed more than {size:g} cores per replica for "
                            f"{now_s - over_since:.0f} s")
        replicas = state.replicas
        if grow_because is not None:
            wanted = sizing.replicas_for(rate, size, stage.max_replicas) or stage.max_replicas
            wanted = max(wanted, replicas if blocked is None else replicas + 1)
            wanted = min(wanted, stage.max_replicas)
            if wanted > replicas:
                actions.append(SetReplicas(stage.name, wanted, size, (
                    f"scale out {replicas} -> {wanted} replicas of {size:g} cores: "
                    f"{grow_because} ({rate:.0f} rows/s)")))
                replicas, over_since = wanted, None
        elif rates.spans(now_s) and seen.starting_replicas == 0 and replicas > 1:
            peak = rates.peak()
            enough = sizing.replicas_for(peak * self.scale_down_margin, size,
                                         stage.max_replicas) or replicas
            fewer = max(enough, math.ceil(replicas / 2), stage.min_replicas, 1)
            if fewer < replicas:
                actions.append(SetReplicas(stage.name, fewer, size, (
                    f"scale in {replicas} -> {fewer} replicas: the most load of the last "
                    f"{self.scale_down_s:g} s ({peak:.0f} rows/s, +{self.scale_down_margin - 1:.0%}"
                    f" margin) fits {enough} of {size:g} cores")))
                replicas = fewer
                rates = RecentRates(self.scale_down_s)
        return actions, replace(state, replicas=replicas, cores=cores, rates=rates, needs=needs,
                                over_since_s=over_since, ready=ready)


def _retune(before: Plan, after: Plan) -> list[Action]:
    """Live changes a new plan asks for: batching, and the variant (a rolling update)."""
    actions: list[Action] = []
    for old, new in zip(before.stages, after.stages, strict=True):
        if new.variant != old.variant:
            actions.append(SetVariant(new.stage, new.variant, (
                f"replanned at {after.load.rate_rps:.0f} req/s: {new.variant} "
                f"(accuracy {new.accuracy:g}) instead of {old.variant}")))
        if (new.max_batch_size, new.max_delay_ms) != (old.max_batch_size, old.max_delay_ms):
            actions.append(SetBatching(new.stage, new.max_batch_size, new.max_delay_ms, (
                f"replanned at {after.load.rate_rps:.0f} req/s: batches of up to "
                f"{new.max_batch_size} rows, {new.max_delay_ms:g} ms delay")))
    return actions


def hybrid_policy(pipeline: Pipeline, profile: PipelineProfile, initial_rps: float,
                  arrival_scv: float = 1.0) -> HybridPolicy:
    """The hybrid policy starting from the plan at ``initial_rps``."""
    return HybridPolicy(pipeline, profile,
                        plan(pipeline, profile, Load(initial_rps, arrival_scv)))
