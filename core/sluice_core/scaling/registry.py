"""Policies by name: what the simulator, local mode and the benchmark ask for."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sluice_core.profiles import PipelineProfile
from sluice_core.scaling.types import Policy
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


PolicyFactory = Callable[[PolicyContext], Policy]

_FACTORIES: dict[str, PolicyFactory] = {}

#: Every policy, in the order reports list them.
POLICY_NAMES: tuple[str, ...] = ("static", "horizontal", "vertical", "hybrid", "clairvoyant")


def make_policy(name: str, context: PolicyContext) -> Policy:
    """The policy called ``name``; ValueError listing the known ones otherwise."""
    factories: Mapping[str, PolicyFactory] = _FACTORIES
    if name not in factories:
        raise ValueError(f"unknown policy {name!r}: choose from {', '.join(POLICY_NAMES)}")
    return factories[name](context)
