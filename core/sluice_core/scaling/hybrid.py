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
  or infeasible, the stage gets the replicas that serve the sustained load (the mean over
  the persistence span) at the plan's size. It gives replicas back when the mean load of
  the last ``scale_down_s`` (with ``scale_down_margin``) needs fewer, provided they could
  carry that window's peak at ``cpu.max`` (bursts are the cores' business); at most half
  at a time, never while replicas are starting.
- **Replanning.** Every ``replan_s`` the planner is run again at the largest pipeline rate
  of the last ``scale_down_s``: budgets, batching and the efficient size follow the load;
  a batching change is applied live.

Hysteresis (the margin, the down windows) and the persistence span keep it from
oscillating; bursts shorter than ``persist_s`` cost no cold start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar

from sluice_core.planner import Load, Plan, PlannerSettings, StagePlan, plan
from sluice_core.profiles import PipelineProfile
from sluice_core.scaling.demand import RecentRates, required_rps, sizing_for
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
    ready: int = 0
    #: Replicas to keep once the others are resized to the plan's size (None: no
    #: scale-in under way).
    consolidating_to: int | None = None


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
    vertical_down_s: float = 5.0
    scale_down_s: float = 30.0
    scale_down_margin: float = 1.2
    hysteresis_cores: float = 0.1
    replan_s: float = 30.0
    knee_efficiency: float = 0.6
    #: How full replicas of the plan's size may run when counting them: above the
    #: planner's own headroom, since cores absorb what exceeds it (up to ``cpu.max``).
    replica_utilisation: float = 0.9
    settings: PlannerSettings = field(default_factory=PlannerSettings)

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
                                              RecentRates(max(self.vertical_down_s,
                                                              2 * self.persist_s)),
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
            current_plan = plan(self.pipeline, self.profile, Load(pipeline_rates.peak()),
                                settings=self.settings)
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
        sizing = sizing_for(stage, planned, self.profile, self.pipeline.slo_quantile,
                            self.settings)
        size = min(max(planned.cores, sizing.min_cores), sizing.max_cores)
        counting = replace(sizing, max_utilisation=max(sizing.max_utilisation,
                                                        self.replica_utilisation))
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
                f"burst: {rate:.0f} req/s on {ready} ready replica(s) needs {cores:g} cores "
                f"each within {sizing.budget_ms:.1f} ms (was {state.cores:g})")))
        elif ready and state.consolidating_to is None and (
                newly_ready or needs.spans(now_s, self.vertical_down_s)):
            floor = need_cores if newly_ready else needs.peak(now_s - self.vertical_down_s)
            if floor < cores - self.hysteresis_cores:
                why = (f"{ready} replicas ready now" if newly_ready
                       else f"the most needed over {self.vertical_down_s:g} s")
                actions.append(Resize(stage.name, floor, (
                    f"cores back down {cores:g} -> {floor:g}: {why} at {rate:.0f} req/s")))
                cores = floor

        # Horizontal: settle on replicas of the plan's size.
        in_force = min((r.cores for r in seen.replicas if r.ready), default=0.0)
        # A resize the node defers or cannot do turns into replicas only when the cores
        # were wanted for the load (not to consolidate before a scale-in).
        blocked = next((r.resize for r in seen.replicas
                        if r.resize in (RESIZE_DEFERRED, RESIZE_INFEASIBLE)), None)
        called_off = state.consolidating_to is not None and blocked is not None
        if called_off:
            if cores > in_force + _EPS:
                actions.append(Resize(stage.name, in_force, (
                    f"scale-in called off: the resize to {cores:g} cores is {blocked}")))
                cores = in_force
            blocked = None
        elif need_cores <= in_force + _EPS:
            blocked = None
        grow_because = None
        # A rise that lasts: the need stayed above the size for the whole persistence span,
        # or for most of twice that span (a load hovering at the size would otherwise keep
        # every replica's cores flapping by a whole step, when one more replica settles it).
        recent = [need for t, need in needs.samples if t > now_s - self.persist_s]
        hovering = [need > size + _EPS for t, need in needs.samples
                    if t > now_s - 2 * self.persist_s]
        persisted = (needs.spans(now_s, self.persist_s) and min(recent) > size + _EPS) or (
            needs.spans(now_s, 2 * self.persist_s) and 2 * sum(hovering) >= len(hovering))
        if short:
            grow_because = f"even {sizing.max_cores:g} cores per replica (cpu.max) fall short"
        elif blocked is not None:
            grow_because = f"a resize is {blocked}"
        elif need_cores > knee + _EPS:
            grow_because = f"{need_cores:g} cores per replica is past the knee ({knee:g})"
        elif persisted:
            grow_because = (f"the load has needed more than {size:g} cores per replica for "
                            f"{self.persist_s:g} s, or most of {2 * self.persist_s:g} s")
        replicas = state.replicas
        consolidating = state.consolidating_to
        if grow_because is not None:
            consolidating = None
            # What cores cannot cover now is wanted now; a rise that has lasted is sized
            # at its mean over the persistence span, not its peak (cores cover the rest).
            sustained = rates.mean(since_s=now_s - self.persist_s) if persisted else rate
            wanted = (counting.replicas_for(sustained, size, stage.max_replicas)
                      or stage.max_replicas)
            wanted = max(wanted, replicas if blocked is None else replicas + 1)
            wanted = min(wanted, stage.max_replicas)
            if wanted > replicas:
                actions.append(SetReplicas(stage.name, wanted, size, (
                    f"scale out {replicas} -> {wanted} replicas of {size:g} cores: "
                    f"{grow_because} ({rate:.0f} req/s)")))
                # The scale-in window starts again: the load that called for these
                # replicas is in it, and shedding them at once would undo the decision.
                replicas = wanted
                rates = RecentRates(self.scale_down_s)
        elif rates.spans(now_s) and seen.starting_replicas == 0 and replicas > 1:
            # Replicas for the window's mean load at the plan's size, as long as they could
            # carry its peak grown to cpu.max: bursts are the cores' business.
            peak, mean = rates.peak(), rates.mean()
            enough = max(
                counting.replicas_for(mean * self.scale_down_margin, size,
                                      stage.max_replicas) or replicas,
                sizing.replicas_for(peak, sizing.max_cores, stage.max_replicas) or replicas)
            fewer = max(enough, math.ceil(replicas / 2), stage.min_replicas, 1)
            if fewer >= replicas:
                consolidating = None
            elif in_force + _EPS < size:
                if cores + _EPS < size:
                    actions.append(Resize(stage.name, size, (
                        f"to {size:g} cores before scaling in to {fewer} replicas: the ones "
                        f"that stay must carry {peak:.0f} req/s at once")))
                    cores = size
                consolidating = fewer
            else:
                actions.append(SetReplicas(stage.name, fewer, size, (
                    f"scale in {replicas} -> {fewer} replicas: the last {self.scale_down_s:g} s "
                    f"averaged {mean:.0f} req/s (+{self.scale_down_margin - 1:.0%} margin), "
                    f"{enough} of {size:g} cores, and at most {peak:.0f}, within their cpu.max")))
                replicas, consolidating = fewer, None
                rates = RecentRates(self.scale_down_s)
        else:
            consolidating = None
        if called_off:  # wait a whole window before trying to scale in again
            rates, consolidating = RecentRates(self.scale_down_s), None
        return actions, replace(state, replicas=replicas, cores=cores, rates=rates, needs=needs,
                                ready=ready,
                                consolidating_to=consolidating)


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
                  settings: PlannerSettings | None = None) -> HybridPolicy:
    """The hybrid policy starting from the plan at ``initial_rps``."""
    settings = settings or PlannerSettings()
    return HybridPolicy(pipeline, profile,
                        plan(pipeline, profile, Load(initial_rps), settings=settings),
                        settings=settings)
