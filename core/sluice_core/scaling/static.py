"""The static policy: the plan for the peak rate, deployed once and never changed.

What a careful operator does without an autoscaler: provision for the worst second and pay
for it all day. The baseline every scaling policy must beat on cost at equal attainment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from sluice_core.planner import Load, Plan, PlannerSettings, plan
from sluice_core.profiles import PipelineProfile
from sluice_core.scaling.types import Action, Allocation, Observation, plan_allocation
from sluice_core.spec import Pipeline


@dataclass(frozen=True)
class StaticPolicy:
    """The plan's allocation from the start; no decision ever changes it."""

    name: ClassVar[str] = "static"
    plan: Plan
    interval_s: float = 60.0

    def initial_allocation(self) -> Mapping[str, Allocation]:
        """Every stage as planned for the peak."""
        return plan_allocation(self.plan)

    def initial_state(self) -> None:
        """No state: nothing is ever decided."""
        return None

    def decide(self, observation: Observation, state: None,
               now_s: float) -> tuple[list[Action], None]:
        """No actions, whatever is observed."""
        return [], state


def static_policy(pipeline: Pipeline, profile: PipelineProfile, peak_rps: float,
                  settings: PlannerSettings | None = None) -> StaticPolicy:
    """The static policy for a load peaking at ``peak_rps``."""
    return StaticPolicy(plan(pipeline, profile, Load(peak_rps), settings=settings))
