"""The horizontal-only policy: Knative's KPA per stage, replicas of a fixed size.

This is the baseline a Knative user gets today: each stage is a Knative Service scaled by
the KPA (:mod:`sluice_core.scaling.kpa`) on concurrency or requests per second; every
replica keeps the stage's initial CPU (``cpu.initial``), the spec's batching and the
default variant. Only the replica count moves.

The per-replica target (``autoscaling.knative.dev/target``) is what an operator who had
measured the model would set, taken from the profile of the stage's default variant so
the comparison with the other policies is fair:

- ``rps``: the requests per second one replica of the fixed size sustains back to back,
  ``ModelProfile.throughput_rps(max_batch_size, cores)`` (full batches: a replica's
  capacity; under lighter load batches are smaller, but then it is not at capacity).
- ``concurrency``: the requests one replica holds at that throughput, by Little's law with
  the batch's median latency, ``throughput_rps x latency_ms / 1000`` (one full batch in
  service, i.e. ``max_batch_size`` when the profile is consistent).

The KPA then aims at 70% of it (the target utilisation), as Knative does.

Observations feed the KPA's per-second buckets: ``StageObservation.in_flight`` is the
stage's concurrency and ``arrival_rps`` its request rate, each averaged over the interval
since the previous observation; ``ready_replicas`` are Knative's ready pods. A stage
missing from an observation gets no decision (no data, no action).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from sluice_core.profiles import ModelProfile, PipelineProfile
from sluice_core.scaling.kpa import (
    CONCURRENCY,
    METRICS,
    RPS,
    KpaConfig,
    KpaState,
    KpaStep,
    kpa_step,
)
from sluice_core.scaling.types import Action, Allocation, Observation, SetReplicas
from sluice_core.spec import DEFAULT_VARIANT, Pipeline, Stage


def replica_total(model: ModelProfile, batch: int, cores: float, metric: str) -> float:
    """What one replica of ``cores`` sustains at ``batch`` in ``metric``'s unit: requests
    per second, or (Little's law) the requests it holds at that rate."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    throughput_rps = model.throughput_rps(batch, cores)
    if metric == RPS:
        return throughput_rps
    return throughput_rps * model.latency_ms(batch, cores, 0.5) / 1000.0


@dataclass(frozen=True)
class StageScaling:
    """How one stage's Knative Service is configured for the KPA."""

    stage: str
    #: Cores of every replica (the stage's ``cpu.initial``).
    cores: float
    max_batch_size: int
    max_delay_ms: float
    #: The per-replica target at full use (``autoscaling.knative.dev/target``).
    total: float
    #: ``min-scale`` / ``max-scale``.
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True)
class HorizontalState:
    """One KPA state per stage, in the pipeline's stage order."""

    stages: tuple[tuple[str, KpaState], ...]

    def stage(self, name: str) -> KpaState:
        """The KPA state of stage ``name``; KeyError when there is none."""
        for stage, state in self.stages:
            if stage == name:
                return state
        raise KeyError(f"no KPA state for stage {name!r}")


@dataclass(frozen=True)
class HorizontalPolicy:
    """Knative's KPA on every stage, each replica of a fixed size (the ``horizontal``
    policy)."""

    name: ClassVar[str] = "horizontal"

    pipeline: Pipeline
    profile: PipelineProfile
    config: KpaConfig = field(default_factory=KpaConfig)
    #: ``autoscaling.knative.dev/metric``: concurrency or rps.
    metric: str = CONCURRENCY
    scaling: tuple[StageScaling, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {list(METRICS)}, got {self.metric!r}")
        # Resolved once, so a stage without a profile fails here rather than mid-run.
        object.__setattr__(self, "scaling",
                           tuple(self._stage_scaling(s) for s in self.pipeline.stages))

    @property
    def interval_s(self) -> float:
        """Seconds between decisions: the KPA's tick (2 s by default)."""
        return self.config.tick_s

    def initial_allocation(self) -> Mapping[str, Allocation]:
        """Per stage: the initial scale (at least min-scale) of fixed-size replicas."""
        return {s.stage: Allocation(self._initial_replicas(s), s.cores, s.max_batch_size,
                                    s.max_delay_ms, DEFAULT_VARIANT)
                for s in self.scaling}

    def initial_state(self) -> HorizontalState:
        """A fresh KPA per stage, its revision deployed at the initial allocation."""
        return HorizontalState(tuple(
            (s.stage, KpaState.initial(self.config, self._initial_replicas(s)))
            for s in self.scaling))

    def decide(self, observation: Observation, state: HorizontalState,
               now_s: float) -> tuple[list[Action], HorizontalState]:
        """One KPA tick per observed stage: SetReplicas where the wanted count changes."""
        actions: list[Action] = []
        states: list[tuple[str, KpaState]] = []
        for scaling in self.scaling:
            previous = state.stage(scaling.stage)
            seen = observation.stages.get(scaling.stage)
            if seen is None:
                states.append((scaling.stage, previous))
                continue
            value = seen.in_flight if self.metric == CONCURRENCY else seen.arrival_rps
            step, current = kpa_step(self.config, scaling.total, value, seen.ready_replicas,
                                     scaling.min_replicas, scaling.max_replicas, previous,
                                     now_s)
            states.append((scaling.stage, current))
            if step.replicas != previous.autoscaler.replicas:
                actions.append(SetReplicas(scaling.stage, step.replicas, scaling.cores,
                                           self._reason(scaling, step,
                                                        previous.autoscaler.replicas)))
        return actions, HorizontalState(tuple(states))

    def _stage_scaling(self, stage: Stage) -> StageScaling:
        model = self.profile.stage(stage.name).variant(DEFAULT_VARIANT)
        cores = stage.cpu.initial_value
        total = replica_total(model, stage.max_batch_size, cores, self.metric)
        return StageScaling(stage.name, cores, stage.max_batch_size, stage.max_delay_ms, total,
                            stage.min_replicas, stage.max_replicas)

    def _initial_replicas(self, scaling: StageScaling) -> int:
        return min(scaling.max_replicas, max(scaling.min_replicas, self.config.initial_scale))

    def _reason(self, scaling: StageScaling, step: KpaStep, before: int) -> str:
        unit = "" if self.metric == CONCURRENCY else " rps"
        parts = [f"KPA {before} -> {step.replicas} replicas"]
        decision = step.decision
        if decision is not None:
            parts.append(
                f"{decision.mode} mode: {self.metric} {decision.observed_stable:.3g}{unit} "
                f"over {self.config.stable_window_s:g} s, {decision.observed_panic:.3g}{unit} "
                f"over {self.config.panic_window_s} s; target {decision.target:.3g}{unit} "
                f"per replica ({decision.total:.3g} x {self.config.target_utilization:g}) "
                f"-> stable {decision.stable_pods}, panic {decision.panic_pods}; "
                f"ready {decision.ready_pods}, rate limits "
                f"[{decision.max_scale_down}, {decision.max_scale_up}] -> "
                f"{decision.desired_pods}")
            if decision.undelayed_pods is not None:
                parts.append(f"scale-down delay {self.config.scale_down_delay_s:g} s holds "
                             f"{decision.desired_pods} (wanted {decision.undelayed_pods})")
        parts.append(f"replicas {scaling.min_replicas}..{scaling.max_replicas} -> "
                     f"{step.reconcile.bounded}")
        if step.reconcile.note:
            parts.append(step.reconcile.note)
        return "; ".join(parts)
