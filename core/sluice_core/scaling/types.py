"""What a scaling policy sees, what it may do, and the shape every policy has.

A policy is pure: ``decide(observation, state, now_s)`` returns the actions to take (each
with its reason) and the policy's next state, and touches no clock and no I/O. The same
observations come from the simulator, from local mode's processes and from pods on
Kubernetes; they mirror what the runtime exports (``sluice_arrival_rate_per_second``,
``sluice_queue_depth``, ``sluice_cpu_allocation_cores``, latency histograms) and what the
platform reports about replicas (ready or starting, cores in force from status, a resize
deferred or infeasible).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sluice_core.planner.types import Plan

#: Resize states, as Kubernetes reports them through the PodResizePending and
#: PodResizeInProgress conditions (and local mode mirrors).
RESIZE_NONE = "none"
RESIZE_IN_PROGRESS = "in_progress"
RESIZE_DEFERRED = "deferred"
RESIZE_INFEASIBLE = "infeasible"


@dataclass(frozen=True)
class ReplicaObservation:
    """One replica (pod or local process) of a stage."""

    ready: bool
    #: Cores in force (status, not spec): what the replica computes with now.
    cores: float
    #: Cores asked for by the last resize (equal to ``cores`` once it took effect).
    desired_cores: float
    resize: str = RESIZE_NONE


@dataclass(frozen=True)
class StageObservation:
    """One stage over the last observation interval."""

    #: Requests arriving per second at the stage (all replicas).
    arrival_rps: float
    #: Requests waiting in the stage's queues now (all replicas).
    queue_depth: int
    #: Requests in the stage now, queued or computing (Knative's concurrency metric).
    in_flight: float
    #: Requests the stage answered over the interval, and those it answered late or refused.
    answered: int
    missed: int
    #: Latency at the stage at the pipeline's SLO percentile over the interval, or None
    #: when nothing was answered.
    latency_ms: float | None
    replicas: tuple[ReplicaObservation, ...]
    max_batch_size: int
    max_delay_ms: float
    variant: str

    @property
    def ready_replicas(self) -> int:
        """Replicas serving now."""
        return sum(1 for r in self.replicas if r.ready)

    @property
    def starting_replicas(self) -> int:
        """Replicas asked for and not ready yet."""
        return sum(1 for r in self.replicas if not r.ready)

    @property
    def ready_cores(self) -> float:
        """Cores in force on ready replicas."""
        return sum(r.cores for r in self.replicas if r.ready)


@dataclass(frozen=True)
class Observation:
    """Every stage of the pipeline at one instant (seconds on the caller's clock)."""

    now_s: float
    stages: Mapping[str, StageObservation]
    #: Requests per second arriving at the pipeline's entrance over the interval, refused
    #: ones included (the router's own rate). Every request is meant for every stage, so
    #: it is each stage's demand even when a stage downstream refuses, and refusals on its
    #: behalf keep the stages' own arrival rates below it. None where not measured.
    entrance_rps: float | None = None


@dataclass(frozen=True)
class Resize:
    """Set every replica of ``stage`` to ``cores`` (vertical: in place, no restart)."""

    stage: str
    cores: float
    reason: str


@dataclass(frozen=True)
class SetReplicas:
    """Run ``replicas`` replicas of ``stage``, each starting at ``cores`` (horizontal)."""

    stage: str
    replicas: int
    cores: float
    reason: str


@dataclass(frozen=True)
class SetBatching:
    """Change the stage's batching live (the runtime's admin API)."""

    stage: str
    max_batch_size: int
    max_delay_ms: float
    reason: str


@dataclass(frozen=True)
class SetVariant:
    """Serve ``variant`` for ``stage`` (a rolling replacement, like a horizontal action)."""

    stage: str
    variant: str
    reason: str


Action = Resize | SetReplicas | SetBatching | SetVariant


@dataclass(frozen=True)
class Allocation:
    """What a stage runs with: the starting point a policy asks for, and what the
    simulator and the edges deploy before the first decision."""

    replicas: int
    cores: float
    max_batch_size: int
    max_delay_ms: float
    variant: str


def plan_allocation(plan: Plan) -> dict[str, Allocation]:
    """Per stage, what ``plan`` deploys."""
    return {s.stage: Allocation(s.replicas, s.cores, s.max_batch_size, s.max_delay_ms,
                                s.variant) for s in plan.stages}


class Policy(Protocol):
    """A scaling policy: configured once, then asked every ``interval_s`` for a decision."""

    #: Name on the command line and in reports: static, horizontal, vertical, hybrid,
    #: clairvoyant.
    name: str
    #: Seconds between decisions.
    interval_s: float

    def initial_allocation(self) -> Mapping[str, Allocation]:
        """Per stage, what to deploy before the first decision."""
        ...

    def initial_state(self) -> Any:
        """The state before the first decision."""
        ...

    def decide(self, observation: Observation, state: Any,
               now_s: float) -> tuple[list[Action], Any]:
        """The actions to take now (each with its reason) and the next state."""
        ...
