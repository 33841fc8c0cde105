"""Vertical-only scaling (as Sponge does it): one replica per stage whose cores follow the
load every second, sized from the latency model, resized in place.

The stage budgets, batching and variants come from the planner at the mean load (a plan
that may use several replicas; here each stage runs one, so only its budget split and
batching are taken). Each second a stage's cores become the fewest that meet its budget at
the rate it must serve (arrivals plus the backlog drained in a second), within its
``cpu`` bounds. Up at once; down only to the largest need of the last
``down_window_s`` and by more than ``hysteresis_cores``, so a lull between bursts does
not give back cores the next burst needs, and small swings cause no resizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar

from sluice_core.planner import Load, Plan, PlannerSettings, plan
from sluice_core.profiles import PipelineProfile
from sluice_core.scaling.demand import CoreSizing, RecentRates, required_rps, sizing_for
from sluice_core.scaling.types import (
    RESIZE_DEFERRED,
    RESIZE_INFEASIBLE,
    Action,
    Allocation,
    Observation,
    Resize,
)
from sluice_core.spec import Pipeline


@dataclass(frozen=True)
class VerticalStageState:
    """A stage's desired cores and its recent needs."""

    cores: float
    needs: RecentRates


@dataclass(frozen=True)
class VerticalState:
    """Per stage, by name."""

    stages: Mapping[str, VerticalStageState]


@dataclass(frozen=True)
class VerticalPolicy:
    """One replica per stage, cores following the load (see the module docstring)."""

    name: ClassVar[str] = "vertical"
    pipeline: Pipeline
    profile: PipelineProfile
    plan: Plan
    interval_s: float = 1.0
    down_window_s: float = 10.0
    hysteresis_cores: float = 0.1
    settings: PlannerSettings = field(default_factory=PlannerSettings)
    _sizing: dict[str, CoreSizing] = field(init=False, repr=False, compare=False,
                                           default_factory=dict)

    def __post_init__(self) -> None:
        for stage_plan in self.plan.stages:
            stage = self.pipeline.stage(stage_plan.stage)
            self._sizing[stage.name] = sizing_for(stage, stage_plan, self.profile,
                                                  self.pipeline.slo_quantile, self.settings)

    def initial_allocation(self) -> Mapping[str, Allocation]:
        """One replica per stage at the cores it needs for the planned (mean) load."""
        allocation = {}
        for stage_plan in self.plan.stages:
            sizing = self._sizing[stage_plan.stage]
            cores = sizing.cores_for(self.plan.load.rate_rps, 1) or sizing.max_cores
            allocation[stage_plan.stage] = Allocation(
                1, cores, stage_plan.max_batch_size, stage_plan.max_delay_ms,
                stage_plan.variant)
        return allocation

    def initial_state(self) -> VerticalState:
        """The initial allocation's cores, no needs seen yet."""
        return VerticalState({
            name: VerticalStageState(a.cores, RecentRates(self.down_window_s))
            for name, a in self.initial_allocation().items()
        })

    def decide(self, observation: Observation, state: VerticalState,
               now_s: float) -> tuple[list[Action], VerticalState]:
        """Per stage: resize up to the need at once, down to the window's peak need."""
        actions: list[Action] = []
        stages = dict(state.stages)
        for name, seen in observation.stages.items():
            if name not in stages:
                continue
            sizing, current = self._sizing[name], stages[name]
            rate = required_rps(seen, observation.entrance_rps)
            need = sizing.cores_for(rate, 1)
            short = need is None
            cores = sizing.max_cores if need is None else need
            needs = current.needs.add(now_s, cores)
            target = current.cores
            if cores > current.cores + 1e-9:
                target = cores
            elif needs.spans(now_s) and needs.peak() < current.cores - self.hysteresis_cores:
                target = needs.peak()
            stages[name] = replace(current, needs=needs)
            blocked = [r.resize for r in seen.replicas
                       if r.resize in (RESIZE_DEFERRED, RESIZE_INFEASIBLE)]
            if abs(target - current.cores) > 1e-9:
                stages[name] = VerticalStageState(target, needs)
                actions.append(Resize(name, target, _reason(rate, current.cores, target,
                                                            sizing, short, blocked)))
        return actions, VerticalState(stages)


def _reason(rate: float, before: float, after: float, sizing: CoreSizing, short: bool,
            blocked: list[str]) -> str:
    direction = "up" if after > before else "down"
    text = (f"{direction} {before:g} -> {after:g} cores: {rate:.0f} rows/s to serve within "
            f"{sizing.budget_ms:.1f} ms at p{sizing.quantile * 100:g}")
    if short:
        text += f"; even {sizing.max_cores:g} cores (cpu.max) fall short"
    if blocked:
        text += f"; the last resize is {blocked[0]} (vertical-only cannot add replicas)"
    return text


def vertical_policy(pipeline: Pipeline, profile: PipelineProfile, mean_rps: float,
                    settings: PlannerSettings | None = None) -> VerticalPolicy:
    """The vertical-only policy, with budgets and batching planned at ``mean_rps``."""
    settings = settings or PlannerSettings()
    return VerticalPolicy(pipeline, profile,
                          plan(pipeline, profile, Load(mean_rps), settings=settings),
                          settings=settings)
