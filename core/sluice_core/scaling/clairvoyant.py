"""The clairvoyant bound: every second, the cheapest allocation that meets the SLO for
that second's load, known in advance and applied without delay.

Not a policy a live system can run (it reads the future, and the simulator applies its
actions instantly: ``instant = True``); the lower bound on core-seconds every real
policy is measured against. Each second it takes the plan for the larger of that
second's and the next second's rate (an allocation changes on second boundaries, and the
arrivals of a second straddle its decision), rounded up to a 2 % grid of rates so that a
day's trace needs a few hundred plans, not tens of thousands.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from sluice_core.planner import Load, Plan, PlannerSettings, plan
from sluice_core.profiles import PipelineProfile
from sluice_core.scaling.types import (
    Action,
    Allocation,
    Observation,
    Resize,
    SetBatching,
    SetReplicas,
    SetVariant,
    plan_allocation,
)
from sluice_core.spec import Pipeline

#: Rates are rounded up to powers of this: plans at most 2 % above the need.
_RATE_GRID = 1.02


@dataclass(frozen=True)
class ClairvoyantPolicy:
    """The per-second optimum for a load known in advance (module docstring)."""

    name: ClassVar[str] = "clairvoyant"
    #: The simulator applies this policy's actions with no resize or start-up delay.
    instant: ClassVar[bool] = True
    pipeline: Pipeline
    profile: PipelineProfile
    counts_per_second: Sequence[int]
    interval_s: float = 1.0
    settings: PlannerSettings = field(default_factory=PlannerSettings)
    _plans: dict[float, Plan] = field(init=False, repr=False, compare=False,
                                      default_factory=dict)

    def plan_at(self, second: int) -> Plan:
        """The plan for second ``second`` (memoised by rounded rate)."""
        counts = self.counts_per_second
        if not counts:
            raise ValueError("the clairvoyant bound needs the arrivals of every second")
        rate = max(counts[min(second, len(counts) - 1)],
                   counts[min(second + 1, len(counts) - 1)])
        rounded = _round_up(float(rate))
        if rounded not in self._plans:
            self._plans[rounded] = plan(self.pipeline, self.profile, Load(rounded),
                                        settings=self.settings)
        return self._plans[rounded]

    def initial_allocation(self) -> Mapping[str, Allocation]:
        """Second zero's plan."""
        return plan_allocation(self.plan_at(0))

    def initial_state(self) -> Mapping[str, Allocation]:
        """What is deployed: second zero's allocation."""
        return self.initial_allocation()

    def decide(self, observation: Observation, state: Mapping[str, Allocation],
               now_s: float) -> tuple[list[Action], Mapping[str, Allocation]]:
        """Move every stage to this second's plan."""
        actions: list[Action] = []
        deployed = dict(state)
        target = self.plan_at(int(now_s))
        why = f"second {int(now_s)}: planned for {target.load.rate_rps:g} req/s"
        wanted = plan_allocation(target)
        for stage in target.stages:
            now = deployed[stage.stage]
            if stage.variant != now.variant:
                actions.append(SetVariant(stage.stage, stage.variant, why))
            if stage.replicas != now.replicas:
                actions.append(SetReplicas(stage.stage, stage.replicas, stage.cores, why))
            if stage.cores != now.cores:
                actions.append(Resize(stage.stage, stage.cores, why))
            if (stage.max_batch_size, stage.max_delay_ms) != (now.max_batch_size,
                                                               now.max_delay_ms):
                actions.append(SetBatching(stage.stage, stage.max_batch_size,
                                           stage.max_delay_ms, why))
            deployed[stage.stage] = wanted[stage.stage]
        return actions, deployed


def _round_up(rate: float) -> float:
    if rate <= 1.0:
        return 1.0
    return round(_RATE_GRID ** math.ceil(math.log(rate, _RATE_GRID) - 1e-9), 6)
