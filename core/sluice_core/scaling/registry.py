"""Policies by name: what the simulator, local mode and the benchmark ask for."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sluice_core.planner import PlannerSettings
from sluice_core.profiles import PipelineProfile
from sluice_core.scaling.clairvoyant import ClairvoyantPolicy
from sluice_core.scaling.horizontal import HorizontalPolicy
from sluice_core.scaling.hybrid import hybrid_policy
from sluice_core.scaling.static import static_policy
from sluice_core.scaling.types import Policy
from sluice_core.scaling.vertical import vertical_policy
from sluice_core.spec import Pipeline


@dataclass(frozen=True)
class PolicyContext:
    """What a policy may be built from: the pipeline, its profiles and the load it faces.

    ``counts_per_second`` is the whole arrival series, known in advance only to the
    clairvoyant bound (the simulator has it; a live system does not).
    """

    pipeline: Pipeline
    profile: PipelineProfile
    mean_rps: float
    peak_rps: float
    counts_per_second: Sequence[int] | None = None
    #: How the planner plans and the policies size cores (headroom, core granularity).
    settings: PlannerSettings = field(default_factory=PlannerSettings)


PolicyFactory = Callable[[PolicyContext], Policy]


def _static(context: PolicyContext) -> Policy:
    return static_policy(context.pipeline, context.profile, context.peak_rps, context.settings)


def _horizontal(context: PolicyContext) -> Policy:
    return HorizontalPolicy(context.pipeline, context.profile)


def _vertical(context: PolicyContext) -> Policy:
    return vertical_policy(context.pipeline, context.profile, context.mean_rps,
                           context.settings)


def _hybrid(context: PolicyContext) -> Policy:
    return hybrid_policy(context.pipeline, context.profile, context.mean_rps, context.settings)


def _clairvoyant(context: PolicyContext) -> Policy:
    if context.counts_per_second is None:
        raise ValueError("the clairvoyant bound needs the whole arrival series in advance")
    return ClairvoyantPolicy(context.pipeline, context.profile,
                             tuple(context.counts_per_second), settings=context.settings)


_FACTORIES: dict[str, PolicyFactory] = {
    "static": _static,
    "horizontal": _horizontal,
    "vertical": _vertical,
    "hybrid": _hybrid,
    "clairvoyant": _clairvoyant,
}

#: Every policy, in the order reports list them.
POLICY_NAMES: tuple[str, ...] = ("static", "horizontal", "vertical", "hybrid", "clairvoyant")


def make_policy(name: str, context: PolicyContext) -> Policy:
    """The policy called ``name``; ValueError listing the known ones otherwise."""
    factories: Mapping[str, PolicyFactory] = _FACTORIES
    if name not in factories:
        raise ValueError(f"unknown policy {name!r}: choose from {', '.join(POLICY_NAMES)}")
    return factories[name](context)
