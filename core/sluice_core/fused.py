"""A fused pipeline as the one unit a scaler moves.

Fused, every stage runs in one process: its replicas are the unit of horizontal scaling and
its cores (one cgroup, one container) the unit of vertical scaling. Seen that way it is a
one-stage pipeline whose stage is the whole pipeline, served behind a load balancer, which
is how local mode runs it and how the policies and the simulator, written per stage, scale
it unchanged. Pure.

The unit's figures come from its stages': bounds add up (the process holds every stage's
share), the batch is the smallest every stage takes, waits add up along the stages (a
unit delay spreads evenly over them), a batch's latency is the stages' in sequence (the
sum of their quantiles: an upper bound of the sum's quantile), and one process loads every
model in turn. It runs each stage's own model: variants are per stage, and a combination
of them is not offered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal

from sluice_core import quantities
from sluice_core.profiles import (
    QUANTILES,
    LatencyPoint,
    ModelProfile,
    PipelineProfile,
    StageProfile,
)
from sluice_core.spec import FUSED, ISOLATED, Bounds, ModelRef, Pipeline, Stage


def fused_unit(pipeline: Pipeline, profile: PipelineProfile
               ) -> tuple[Pipeline, PipelineProfile]:
    """The one-stage pipeline and profile a fused ``pipeline`` scales as (module docstring);
    its stage is named after the pipeline, as the model its replicas serve is."""
    if pipeline.composition != FUSED:
        raise ValueError(f"pipeline {pipeline.name} is {pipeline.composition}, not fused")
    stages = pipeline.stages
    unit = Stage(
        name=pipeline.name,
        model=ModelRef("fused:" + "+".join(s.uri for s in stages)),
        accuracy=math.prod(s.accuracy for s in stages),
        max_batch_size=min(s.max_batch_size for s in stages),
        max_delay_ms=sum(s.max_delay_ms for s in stages),
        cpu=_summed([s.cpu for s in stages], quantities.format_cpu),
        memory=_summed([s.memory for s in stages], quantities.format_memory),
        min_replicas=stages[0].min_replicas,
        max_replicas=stages[0].max_replicas,
    )
    models = [profile.stage(s.name).variant() for s in stages]
    unit_profile = PipelineProfile(
        profile.pipeline, profile.host,
        {unit.name: StageProfile(unit.name, {"default": _in_sequence(pipeline.name, models)})},
        profile.hop_ms)
    return (Pipeline(pipeline.name, pipeline.latency_ms, pipeline.percentile, ISOLATED,
                     pipeline.scaling_mode, (unit,), pipeline.min_accuracy, pipeline.image,
                     pipeline.image_pull_policy, pipeline.namespace, pipeline.uid,
                     pipeline.generation),
            unit_profile)


def stage_delay_ms(unit_delay_ms: float, stages: int) -> float:
    """Each stage's batching delay when the unit's is ``unit_delay_ms``."""
    return unit_delay_ms / stages


def _summed(bounds: Sequence[Bounds], text: Callable[[Decimal], str]) -> Bounds:
    def total(values: list[str]) -> str:
        return text(quantities.total(values))

    return Bounds(total([b.initial for b in bounds]), total([b.min for b in bounds]),
                  total([b.max for b in bounds]))


def _in_sequence(name: str, models: Sequence[ModelProfile]) -> ModelProfile:
    cores = sorted({c for m in models for c in m.cores_measured})
    batches = sorted({b for m in models for b in m.batches_measured})
    points = tuple(
        LatencyPoint(c, b, max((p.threads for m in models for p in m.points if p.cores == c),
                               default=1), 0,
                     *(sum(m.latency_ms(b, c, q) for m in models) for _, q in QUANTILES),
                     sum(m.mean_latency_ms(b, c) for m in models))
        for c in cores for b in batches)
    return ModelProfile(name, None, math.prod(m.accuracy for m in models),
                        sum(m.load_s for m in models), sum(m.warmup_s for m in models),
                        sum(m.rss_mib for m in models), points)
