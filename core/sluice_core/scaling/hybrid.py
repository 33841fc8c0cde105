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
  the last ``scale_down_s`` (or the load now, when higher), with ``scale_down_margin``,
  needs fewer, provided they could carry that window's peak at ``cpu.max`` (bursts are the
  cores' business); at most half at a time, and not within ``scale_down_s`` of a scale-out.
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
from sluice_core.scaling.demand import CoreSizing, RecentRates, required_rps, sizing_for
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
    plan_allocation,
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
    #: A scale-in is under way: the replicas are being resized to the plan's size first.
    consolidating: bool = False


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
        return plan_allocation(self.initial_plan)

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
        need = _Need.of(sizing, planned, seen, entrance_rps, state, now_s,
                        self.replica_utilisation, self.knee_efficiency)
        actions, cores = self._vertical(stage.name, need, state, now_s)
        # A resize the node defers or cannot do turns into replicas only when the cores
        # were wanted for the load (not to consolidate before a scale-in).
        blocked = next((r.resize for r in seen.replicas
                        if r.resize in (RESIZE_DEFERRED, RESIZE_INFEASIBLE)), None)
        in_force = min((r.cores for r in seen.replicas if r.ready), default=0.0)
        called_off = state.consolidating and blocked is not None
        if called_off:
            if cores > in_force + _EPS:
                actions.append(Resize(stage.name, in_force, (
                    f"scale-in called off: the resize to {cores:g} cores is {blocked}")))
                cores = in_force
            blocked = None
        elif need.cores <= in_force + _EPS:
            blocked = None
        rates = need.rates
        replicas, consolidating = state.replicas, False
        why, persisted = self._why_grow(need, blocked, now_s)
        if why is not None:
            # What cores cannot cover now is wanted now; a rise that has lasted is sized
            # at its mean over the persistence span, not its peak (cores cover the rest).
            sustained = rates.mean(since_s=now_s - self.persist_s) if persisted else need.rate
            wanted = (need.counting.replicas_for(sustained, need.size, stage.max_replicas)
                      or stage.max_replicas)
            # A deferred resize asks for one more replica, not one more every second: not
            # while one is still starting (it may itself be waiting for room on a node).
            extra = blocked is not None and seen.starting_replicas == 0
            wanted = max(wanted, replicas + 1 if extra else replicas)
            wanted = min(wanted, stage.max_replicas)
            if wanted > replicas:
                actions.append(SetReplicas(stage.name, wanted, need.size, (
                    f"scale out {replicas} -> {wanted} replicas of {need.size:g} cores: "
                    f"{why} ({need.rate:.0f} req/s)")))
                # The scale-in window starts again: the load that called for these
                # replicas is in it, and shedding them at once would undo the decision.
                replicas, rates = wanted, RecentRates(self.scale_down_s)
        elif rates.spans(now_s) and replicas > 1:
            # Replicas still starting do not hold a scale-in back: the window restarted
            # when they were asked for, and one that waits for room on a full node would
            # otherwise hold it back for good.
            shed, replicas, cores, consolidating = self._scale_in(
                stage, need, replicas, cores, in_force)
            actions += shed
            if any(isinstance(action, SetReplicas) for action in shed):
                rates = RecentRates(self.scale_down_s)
        if called_off:  # wait a whole window before trying to scale in again
            rates, consolidating = RecentRates(self.scale_down_s), False
        return actions, replace(state, replicas=replicas, cores=cores, rates=rates,
                                needs=need.needs, ready=need.ready,
                                consolidating=consolidating)

    def _vertical(self, stage: str, need: _Need, state: HybridStageState,
                  now_s: float) -> tuple[list[Action], float]:
        """Cores up at once; down to the window's peak need, or at once when replicas
        have just become ready. The cores asked for, and the resize if any."""
        cores, ready = state.cores, need.ready
        if ready and need.cores > cores + _EPS:
            return [Resize(stage, need.cores, (
                f"burst: {need.rate:.0f} req/s on {ready} ready replica(s) needs "
                f"{need.cores:g} cores each within {need.sizing.budget_ms:.1f} ms "
                f"(was {cores:g})"))], need.cores
        newly_ready = ready > state.ready
        if not ready or state.consolidating or not (
                newly_ready or need.needs.spans(now_s, self.vertical_down_s)):
            return [], cores
        floor = need.cores if newly_ready else need.needs.peak(now_s - self.vertical_down_s)
        if floor >= cores - self.hysteresis_cores:
            return [], cores
        why = (f"{ready} replicas ready now" if newly_ready
               else f"the most needed over {self.vertical_down_s:g} s")
        return [Resize(stage, floor, (
            f"cores back down {cores:g} -> {floor:g}: {why} at {need.rate:.0f} req/s"))], floor

    def _why_grow(self, need: _Need, blocked: str | None,
                  now_s: float) -> tuple[str | None, bool]:
        """Why the stage needs more replicas now (None: it does not), and whether the
        reason is a rise that has lasted."""
        # A rise that lasts: the need stayed above the size for the whole persistence span,
        # or for most of twice that span (a load hovering at the size would otherwise keep
        # every replica's cores flapping by a whole step, when one more replica settles it).
        size, needs = need.size, need.needs
        recent = [cores for t, cores in needs.samples if t > now_s - self.persist_s]
        hovering = [cores > size + _EPS for t, cores in needs.samples
                    if t > now_s - 2 * self.persist_s]
        persisted = (needs.spans(now_s, self.persist_s) and min(recent) > size + _EPS) or (
            needs.spans(now_s, 2 * self.persist_s) and 2 * sum(hovering) >= len(hovering))
        if need.short:
            return (f"even {need.sizing.max_cores:g} cores per replica (cpu.max) fall short",
                    False)
        if blocked is not None:
            return f"a resize is {blocked}", False
        if need.cores > need.knee + _EPS:
            return (f"{need.cores:g} cores per replica is past the knee ({need.knee:g})",
                    False)
        if persisted:
            return (f"the load has needed more than {size:g} cores per replica for "
                    f"{self.persist_s:g} s, or most of {2 * self.persist_s:g} s"), True
        return None, False

    def _scale_in(self, stage: Stage, need: _Need, replicas: int, cores: float,
                  in_force: float) -> tuple[list[Action], int, float, bool]:
        """Fewer replicas for the window's mean load (or the load now, when higher) at the
        plan's size, as long as they could carry the window's peak at cpu.max (bursts are
        the cores' business); those that stay resized to the plan's size first. The
        actions, replicas, cores and the scale-in under way."""
        size, rates = need.size, need.rates
        peak, mean = rates.peak(), rates.mean()
        # The window's mean, or the load now when higher: a climbing load is no time to
        # shed the replicas its mean no longer needs.
        settled = max(mean, need.rate)
        enough = max(
            need.counting.replicas_for(settled * self.scale_down_margin, size,
                                       stage.max_replicas) or replicas,
            need.sizing.replicas_for(peak, need.sizing.max_cores, stage.max_replicas)
            or replicas)
        fewer = max(enough, math.ceil(replicas / 2), stage.min_replicas, 1)
        if fewer >= replicas:
            return [], replicas, cores, False
        # Replicas that can carry the load at the cores they have now need no resize first
        # (which a full node would defer): shed what they do not need at once.
        as_they_are = max(
            need.counting.replicas_for(settled * self.scale_down_margin, in_force,
                                       stage.max_replicas) or replicas,
            fewer) if in_force > 0 else replicas
        if in_force + _EPS < size and as_they_are < replicas:
            return [SetReplicas(stage.name, as_they_are, size, (
                f"scale in {replicas} -> {as_they_are} replicas: the last "
                f"{self.scale_down_s:g} s averaged {mean:.0f} req/s, {need.rate:.0f} now, "
                f"which {as_they_are} carry at the {in_force:g} cores they have"))
                    ], as_they_are, cores, False
        if in_force + _EPS < size:
            if cores + _EPS >= size:
                return [], replicas, cores, True
            return [Resize(stage.name, size, (
                f"to {size:g} cores before scaling in to {fewer} replicas: the ones that "
                f"stay must carry {peak:.0f} req/s at once"))], replicas, size, True
        return [SetReplicas(stage.name, fewer, size, (
            f"scale in {replicas} -> {fewer} replicas: the last {self.scale_down_s:g} s "
            f"averaged {mean:.0f} req/s, {need.rate:.0f} now "
            f"(+{self.scale_down_margin - 1:.0%} margin): "
            f"{enough} of {size:g} cores, and at most {peak:.0f}, within their cpu.max"))
                ], fewer, cores, False


@dataclass(frozen=True)
class _Need:
    """What one stage needs this second, and the sizes it is judged against."""

    sizing: CoreSizing
    #: The plan's cores per replica, within the stage's bounds.
    size: float
    #: The sizing with which replicas are counted (fuller: cores absorb the rest).
    counting: CoreSizing
    #: The most cores per replica that still pay (Amdahl).
    knee: float
    rate: float
    ready: int
    #: Cores per ready replica for the rate (cpu.max when even that is short).
    cores: float
    short: bool
    needs: RecentRates
    rates: RecentRates

    @classmethod
    def of(cls, sizing: CoreSizing, planned: StagePlan, seen: StageObservation,
           entrance_rps: float | None, state: HybridStageState, now_s: float,
           replica_utilisation: float = 0.9, knee_efficiency: float = 0.6) -> _Need:
        """The need from the observation and the stage's memory."""
        size = min(max(planned.cores, sizing.min_cores), sizing.max_cores)
        rate = required_rps(seen, entrance_rps)
        ready = seen.ready_replicas
        cores = sizing.cores_for(rate, max(1, ready))
        need_cores = sizing.max_cores if cores is None else cores
        return cls(
            sizing=sizing, size=size,
            counting=replace(sizing, max_utilisation=max(sizing.max_utilisation,
                                                          replica_utilisation)),
            knee=max(size, sizing.knee_cores(efficiency=knee_efficiency)),
            rate=rate, ready=ready, cores=need_cores, short=cores is None,
            needs=state.needs.add(now_s, need_cores), rates=state.rates.add(now_s, rate))


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
