"""What a local-mode run records, second by second: the shared shape of the controller's
output, the live view's input and the report's.

Times are seconds since the load started. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StageSample:
    """One stage at one tick, over the interval since the previous tick."""

    stage: str
    replicas_ready: int
    replicas_starting: int
    #: Cores per replica the scaler last asked for (what the cgroups are set to).
    cores_per_replica: float
    #: Cores in force, as the ready replicas' runtimes report them (they follow the quota).
    cores_in_force: float
    #: Cores of every replica process running, ready or starting: what the run pays for.
    cores_allocated: float
    max_batch_size: int
    max_delay_ms: float
    queue_depth: int
    arrival_rps: float
    #: Latency at the stage, at the SLO's percentile, over the interval (None: nothing
    #: answered).
    latency_ms: float | None
    #: Over the interval: answered in time or late, answered late, refused.
    answered: int
    late: int
    refused: int
    #: CPU the stage's replicas used over the interval, in cores (their cgroups' own
    #: accounting): beside the cores allocated, how full the quotas ran.
    cores_used: float = 0.0

    @property
    def missed(self) -> int:
        """Late or refused over the interval."""
        return self.late + self.refused


@dataclass(frozen=True)
class Tick:
    """The pipeline at one tick, over the interval since the previous tick."""

    t_s: float
    #: Requests per second arriving at the pipeline's entrance, refused ones included.
    entrance_rps: float
    #: End-to-end answers in time, and misses (late or refused), over the interval.
    ok: int
    missed: int
    #: End-to-end latency at the SLO's percentile over the interval (None: none answered).
    latency_ms: float | None
    stages: tuple[StageSample, ...]
    #: CPU the router used over the interval, in cores: the machine's cores the stages
    #: share with it (it runs without a quota).
    router_cores_used: float = 0.0

    def stage(self, name: str) -> StageSample:
        """The sample of stage ``name``."""
        return next(s for s in self.stages if s.stage == name)


@dataclass(frozen=True)
class ActionRecord:
    """One scaling action: when it was decided, what it asked, why, and when it took effect.

    ``effective_s`` is when the capacity was in force: for a resize, the first tick at
    which every ready replica's runtime reported the new cores; for a scale-out, when the
    last new replica joined the router; for batching, when the admin API accepted it.
    None while pending (or never: the run ended first).
    """

    t_s: float
    stage: str
    #: resize | replicas | batching | variant
    kind: str
    #: What was asked, for people: "1.5 cores", "3 replicas at 1 core", "batch 16, 2 ms".
    detail: str
    reason: str
    effective_s: float | None = None

    @property
    def reaction_s(self) -> float | None:
        """From the decision to the capacity in force."""
        return None if self.effective_s is None else self.effective_s - self.t_s


@dataclass
class ReplicaRecord:
    """One replica process over its life: when it started, served, left, and what it
    answered (its runtime's own count, last read)."""

    name: str
    stage: str
    variant: str
    started_s: float
    cores: float
    serving_s: float | None = None
    retired_s: float | None = None
    answered: int = 0


@dataclass
class RunTimeline:
    """Everything one run recorded, in order."""

    pipeline: str
    policy: str
    slo_ms: float
    percentile: float
    stages: tuple[str, ...]
    #: False when cgroups could not be written (--no-quota): no vertical scaling.
    quota: bool = True
    #: A fused pipeline's stages, which each replica of its one unit runs (empty: isolated).
    fused_stages: tuple[str, ...] = ()
    ticks: list[Tick] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    replicas: dict[str, ReplicaRecord] = field(default_factory=dict)
