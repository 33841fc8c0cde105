"""What the policy sees and the timeline records, from one tick's scrapes. Pure.

The figures mirror what a scaler on Kubernetes reads: each replica's own metrics (arrival
rate, queue depth, answers and refusals by outcome, the latency histogram, the cores it
follows) and the router's (the pipeline's entrance rate and end-to-end outcomes, the
requests outstanding at each stage). Counts are in requests; batch sizes go to the policy
in requests too (the runtime batches rows: ``rows_per_request`` each).

A fused pipeline's unit is read as a whole: its outcomes and latency are the whole
pipeline's at each replica, its arrivals its first stage's, its queue its stages' together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sluice_core.scaling.types import Observation, ReplicaObservation, StageObservation

from sluice_local.up.scrape import Scrape, bucket_deltas, counter_delta, merge_buckets, quantile_ms
from sluice_local.up.timeline import StageSample, Tick

LATENCY = "sluice_model_latency_seconds"
DURATION = "sluice_request_duration_seconds"
OUTCOMES = "sluice_model_requests_total"
REQUESTS = "sluice_requests_total"
#: The process's own CPU time. Not its cgroup's: where cpuacct is a v1 hierarchy apart from
#: cpu (as here), a local process's accounting cgroup is the root's, the whole machine.
CPU_USED = "process_cpu_seconds_total"
LATE = "late"
REFUSED = ("refused_deadline", "refused_queue_full", "refused_draining", "failed",
           "cancelled")


@dataclass(frozen=True)
class ReplicaView:
    """One replica process of a stage over the tick."""

    stage: str
    #: The router sends it requests (it joined and answers ready).
    serving: bool
    #: Cores its cgroup is limited to.
    cores_set: float
    before: Scrape
    after: Scrape

    @property
    def cores_in_force(self) -> float:
        """The cores its runtime reports it follows (its quota, once re-read)."""
        return self.after.get("sluice_cpu_allocation_cores")


@dataclass(frozen=True)
class StageSettings:
    """What a stage runs with now: asked cores per replica, batching in rows, variant."""

    cores_per_replica: float
    max_batch_rows: int
    max_delay_ms: float
    variant: str


@dataclass(frozen=True)
class TickInput:
    """Everything one tick read."""

    t_s: float
    interval_s: float
    pipeline: str
    percentile: float
    rows_per_request: int
    stages: Mapping[str, StageSettings]
    replicas: Sequence[ReplicaView]
    router_before: Scrape
    router_after: Scrape
    #: Requests outstanding at each stage, as the router counts them.
    in_flight: Mapping[str, int]
    #: The models each stage's replicas batch, in order, where more than its own (a fused
    #: unit, named after the pipeline, batches every stage's).
    models: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _outcomes(before: Scrape, after: Scrape, model: str) -> tuple[int, int, int]:
    """(answered, late, refused) for ``model`` between two scrapes."""
    def delta(outcome: str) -> float:
        return counter_delta(before, after, OUTCOMES, model=model, outcome=outcome)

    late = delta(LATE)
    answered = delta("ok") + late
    refused = sum(delta(outcome) for outcome in REFUSED)
    return round(answered), round(late), round(refused)


def _whole_requests(before: Scrape, after: Scrape, model: str) -> tuple[int, int, int]:
    """(arrived, answered, late) at a model served whole (a pipeline) between two scrapes:
    its requests by status code and its late answers."""
    arrived = round(counter_delta(before, after, REQUESTS, model=model))
    answered = round(counter_delta(before, after, REQUESTS, model=model, code="OK"))
    late = round(counter_delta(before, after, "sluice_late_answers_total", model=model))
    return arrived, answered, late


def _unit_outcomes(before: Scrape, after: Scrape, model: str) -> tuple[int, int, int]:
    """(answered, late, refused) for a fused unit's whole pipeline between two scrapes."""
    arrived, answered, late = _whole_requests(before, after, model)
    return answered, late, arrived - answered


def _stage(name: str, settings: StageSettings, replicas: Sequence[ReplicaView],
           tick: TickInput) -> tuple[StageObservation, StageSample]:
    models = tick.models.get(name, (name,))
    whole = models != (name,)
    outcomes, latency = (_unit_outcomes, DURATION) if whole else (_outcomes, LATENCY)
    answered = late = refused = 0
    for replica in replicas:
        a, lt, r = outcomes(replica.before, replica.after, name)
        answered, late, refused = answered + a, late + lt, refused + r
    latency_ms = quantile_ms(merge_buckets(
        bucket_deltas(r.before, r.after, latency, model=name) for r in replicas),
        tick.percentile / 100.0)
    arrival_rps = sum(r.after.get("sluice_arrival_rate_per_second", model=models[0])
                      for r in replicas)
    queue_depth = round(sum(r.after.get("sluice_queue_depth", model=model)
                            for r in replicas for model in models))
    observed = tuple(
        ReplicaObservation(ready=r.serving, cores=r.cores_in_force or r.cores_set,
                           desired_cores=r.cores_set)
        for r in replicas)
    batch_requests = max(1, settings.max_batch_rows // tick.rows_per_request)
    observation = StageObservation(
        arrival_rps=arrival_rps, queue_depth=queue_depth,
        in_flight=float(tick.in_flight.get(name, 0)), answered=answered,
        missed=late + refused, latency_ms=latency_ms, replicas=observed,
        max_batch_size=batch_requests, max_delay_ms=settings.max_delay_ms,
        variant=settings.variant)
    sample = StageSample(
        stage=name,
        replicas_ready=sum(1 for r in replicas if r.serving),
        replicas_starting=sum(1 for r in replicas if not r.serving),
        cores_per_replica=settings.cores_per_replica,
        cores_in_force=sum(r.cores_in_force for r in replicas if r.serving),
        cores_allocated=sum(r.cores_set for r in replicas),
        max_batch_size=settings.max_batch_rows, max_delay_ms=settings.max_delay_ms,
        queue_depth=queue_depth, arrival_rps=arrival_rps, latency_ms=latency_ms,
        answered=answered, late=late, refused=refused,
        cores_used=sum(_cores_used(r.before, r.after, tick.interval_s) for r in replicas))
    return observation, sample


def _cores_used(before: Scrape, after: Scrape, interval_s: float) -> float:
    """A process's CPU use over the interval, in cores; 0 for a process first read now
    (its loading and warm-up are not the interval's)."""
    if interval_s <= 0 or not before.values:
        return 0.0
    return counter_delta(before, after, CPU_USED) / interval_s


def observe(tick: TickInput) -> tuple[Observation, Tick]:
    """The policy's observation and the timeline's tick."""
    observations: dict[str, StageObservation] = {}
    samples = []
    for name, settings in tick.stages.items():
        replicas = [r for r in tick.replicas if r.stage == name]
        observations[name], sample = _stage(name, settings, replicas, tick)
        samples.append(sample)
    before, after = tick.router_before, tick.router_after
    entrance, answered, late = _whole_requests(before, after, tick.pipeline)
    entrance_rps = entrance / tick.interval_s if tick.interval_s > 0 else 0.0
    # The router's duration histogram counts refusals too (at their short latency): at the
    # tail it reads the answered requests' percentile slightly optimistically.
    latency_ms = quantile_ms(bucket_deltas(before, after, DURATION, model=tick.pipeline),
                             tick.percentile / 100.0)
    observation = Observation(now_s=tick.t_s, stages=observations, entrance_rps=entrance_rps)
    return observation, Tick(t_s=tick.t_s, entrance_rps=entrance_rps, ok=answered - late,
                             missed=entrance - answered + late, latency_ms=latency_ms,
                             stages=tuple(samples),
                             router_cores_used=_cores_used(before, after, tick.interval_s))
