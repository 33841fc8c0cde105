"""The pipeline's replicas kept to what the scaler asks, one non-blocking step per call.

What the scaler asks of a stage is a :class:`StageTarget`. :meth:`Fleet.step` moves the
processes towards it as the operator and Knative would move pods, without waiting on any
of them: a new replica starts in its own cgroup at the target's cores and joins the
router only once its health check answers SERVING; a replica no longer wanted leaves the
router first (which drains it: nothing in flight is lost), then gets SIGTERM (it drains its
own queue), and its cgroup goes once it has exited; a batching change goes to every
serving replica's admin API; a new variant replaces the replicas one by one, the old ones
leaving once enough new ones serve. A resize (:meth:`Fleet.resize`) is written at once to
every replica's quota; as on Kubernetes, a change of replica count leaves the cores of the
replicas already running as they are.

A "stage" here is what scales: a pipeline stage, or a fused pipeline's one unit, whose
replicas each run every stage's model (:attr:`Fleet.models` says which models a unit's
batching reaches).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sluice_core.fused import stage_delay_ms
from sluice_core.invocation import RuntimeInvocation

from sluice_local.up.processes import ProcessGroup, RuntimeProcess, free_port
from sluice_local.up.topology import Batching

STARTING = "starting"
#: Answers SERVING and is in the router's replica list.
SERVING = "serving"
RETIRING = "retiring"


@dataclass(frozen=True)
class StageTarget:
    """What the scaler asks of one stage."""

    replicas: int
    #: Cores new replicas start with (the last resize's, or the last scale's).
    cores: float
    variant: str
    batching: Batching


@dataclass
class Replica:
    """One replica process of a stage and where it is in its life."""

    stage: str
    variant: str
    process: RuntimeProcess
    batching: Batching
    phase: str = STARTING
    #: When it joined the router (monotonic seconds).
    joined_s: float | None = None


#: Builds a replica's invocation: (stage, variant, port, metrics port, batching).
InvocationFor = Callable[[str, str, int, int, Batching], RuntimeInvocation]


@dataclass
class Fleet:
    """Every stage's replicas, and the router whose replica lists follow them."""

    group: ProcessGroup
    invocation_for: InvocationFor
    admin_token: str
    #: The models each stage's replicas batch (a fused unit's: its stages'); a stage that
    #: is not listed batches its own model alone.
    models: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)
    router: RuntimeProcess | None = None
    #: Replica addresses the router was last given, per stage.
    _routed: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def of(self, stage: str) -> list[Replica]:
        """The stage's replicas that are not leaving."""
        return [r for r in self.replicas if r.stage == stage and r.phase != RETIRING]

    def start_replica(self, stage: str, target: StageTarget, now_s: float) -> Replica:
        """A new replica of ``stage`` at the target's cores, variant and batching."""
        index = 1 + max((int(r.process.name.rsplit("-", 1)[1]) for r in self.replicas
                         if r.stage == stage), default=-1)
        invocation = self.invocation_for(stage, target.variant, free_port(), free_port(),
                                         target.batching)
        process = self.group.start(f"{stage}-{index}", invocation, target.cores, now_s)
        replica = Replica(stage, target.variant, process, target.batching)
        self.replicas.append(replica)
        return replica

    def step(self, targets: Mapping[str, StageTarget], now_s: float) -> None:
        """One move towards ``targets`` for every stage."""
        for stage, target in targets.items():
            self._admit_ready(stage)
            self._scale(stage, target, now_s)
            self._retune(stage, target)
        self._route(now_s)
        for replica in [r for r in self.replicas if r.phase == RETIRING]:
            if replica.process.target not in self._routed.get(replica.stage, ()):
                replica.process.stop(now_s)
        for process in self.group.reap(now_s):
            self.replicas = [r for r in self.replicas if r.process is not process]

    def _admit_ready(self, stage: str) -> None:
        for replica in self.of(stage):
            if replica.phase == STARTING and replica.process.serving():
                replica.phase = SERVING
            elif replica.phase == STARTING and replica.process.exited:
                raise RuntimeError(f"replica {replica.process.name} exited while starting: "
                                   f"see {replica.process.log_path}")

    def _scale(self, stage: str, target: StageTarget, now_s: float) -> None:
        current = [r for r in self.of(stage) if r.variant == target.variant]
        for _ in range(target.replicas - len(current)):
            self.start_replica(stage, target, now_s)
        # Replicas still starting leave first (nothing in flight is lost), then by age.
        surplus = sorted(current, key=lambda r: (r.phase == SERVING, r.process.started_s)
                         )[:max(0, len(current) - target.replicas)]
        # Another variant's replicas leave once the new ones serve in their place.
        serving_new = sum(1 for r in current if r.phase == SERVING)
        old = [r for r in self.of(stage) if r.variant != target.variant]
        surplus += old[:max(0, serving_new + len(old) - target.replicas)]
        for replica in surplus:
            replica.phase = RETIRING

    def resize(self, stage: str, cores: float) -> None:
        """Every replica of ``stage`` that is not leaving to ``cores``, in place, now."""
        for replica in self.of(stage):
            if replica.process.cores != cores:
                self.group.resize(replica.process, cores)

    def models_of(self, stage: str) -> tuple[str, ...]:
        """The models ``stage``'s replicas batch, in pipeline order."""
        return self.models.get(stage, (stage,))

    def _retune(self, stage: str, target: StageTarget) -> None:
        models = self.models_of(stage)
        # A unit's wait is its stages' together: each gets an even share.
        delay_ms = stage_delay_ms(target.batching.max_delay_ms, len(models))
        for replica in self.of(stage):
            if replica.phase == SERVING and replica.batching != target.batching:
                for model in models:
                    replica.process.admin("PUT", f"/v1/batching/{model}", self.admin_token, {
                        "max_batch_size": target.batching.max_batch_size,
                        "max_delay_ms": delay_ms})
                replica.batching = target.batching

    def _route(self, now_s: float) -> None:
        """Give the router each stage's serving replicas, where they changed."""
        if self.router is None:
            return
        for stage in {r.stage for r in self.replicas} | set(self._routed):
            serving = tuple(sorted(r.process.target for r in self.replicas
                                   if r.stage == stage and r.phase == SERVING))
            if serving and serving != self._routed.get(stage):
                self.router.admin("PUT", f"/v1/stages/{stage}/replicas", self.admin_token,
                                  {"replicas": list(serving)})
                self._routed[stage] = serving
                for replica in self.replicas:
                    if replica.process.target in serving and replica.joined_s is None:
                        replica.joined_s = now_s

    def set_router(self, router: RuntimeProcess, routed: Mapping[str, tuple[str, ...]]) -> None:
        """The router, started with ``routed`` as its stages' replicas."""
        self.router = router
        self._routed = dict(routed)
