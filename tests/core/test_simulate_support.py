"""Builders the simulator tests share (pipelines, profiles, scripted policies), and the
service-time tables they rest on, checked against the profile they come from."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from sluice_core.profiles import LatencyPoint, ModelProfile, PipelineProfile, StageProfile
from sluice_core.scaling.types import Action, Allocation, Observation
from sluice_core.simulate.service import HopSampler, ServiceTable, TableCache
from sluice_core.spec import Pipeline, parse_pipeline

# --- builders --------------------------------------------------------------------------------


def make_pipeline(stages: Sequence[str] = ("a",), latency_ms: int = 100, *,
                  composition: str = "isolated", max_batch_size: int = 8,
                  max_delay_ms: float = 2.0, cpu: Mapping[str, str] | None = None,
                  replicas: Mapping[str, int] | None = None,
                  variants: Sequence[str] = ()) -> Pipeline:
    """A pipeline of ``stages`` with the same settings each."""
    manifest = {
        "metadata": {"name": "sim"},
        "spec": {
            "slo": {"latencyMs": latency_ms, "percentile": 99},
            "composition": composition,
            "stages": [
                {"name": name, "model": {"uri": f"file:///models/{name}.onnx"},
                 "batching": {"maxBatchSize": max_batch_size, "maxDelayMs": max_delay_ms},
                 "resources": {"cpu": dict(cpu or {"initial": "1", "min": "500m", "max": "2"})},
                 "replicas": dict(replicas or {"min": 0, "max": 8}),
                 "variants": [{"name": v, "model": {"uri": f"file:///models/{name}-{v}.onnx"},
                               "accuracy": 0.9} for v in variants]}
                for name in stages
            ],
        },
    }
    return parse_pipeline(manifest)


def model(ms: Callable[[int, float], float], *, spread: float = 0.0, load_s: float = 0.4,
          warmup_s: float = 0.1, batches: Sequence[int] = (1, 2, 4, 8, 16, 32),
          cores: Sequence[float] = (1.0, 2.0)) -> ModelProfile:
    """A model whose median batch latency is ``ms(batch, cores)``; ``spread`` widens the
    distribution (0: constant service time)."""
    points = []
    for c in cores:
        for b in batches:
            m = ms(b, c)
            points.append(LatencyPoint(c, b, int(c), 100, m * (1 - spread), m,
                                       m * (1 + spread), m * (1 + 2 * spread),
                                       m * (1 + 4 * spread)))
    return ModelProfile("m.onnx", None, 1.0, load_s, warmup_s, 64.0, tuple(points))


def constant_ms(value: float) -> Callable[[int, float], float]:
    """The same latency whatever the batch and cores."""
    return lambda _b, _c: value


def compute_bound_ms(per_row: float) -> Callable[[int, float], float]:
    """``per_row`` ms per row at one core, proportionally less with more cores."""
    return lambda b, c: per_row * b / c


def make_profile(pipeline: Pipeline, models: Mapping[str, ModelProfile] | ModelProfile, *,
                 hop_ms: tuple[float, float] = (0.0, 0.0),
                 variants: Mapping[str, ModelProfile] | None = None) -> PipelineProfile:
    """A profile giving each stage its model (one for all, or by stage name)."""
    stages = {}
    for stage in pipeline.stages:
        default = models if isinstance(models, ModelProfile) else models[stage.name]
        stages[stage.name] = StageProfile(stage.name, {"default": default, **(variants or {})})
    return PipelineProfile(pipeline.name, {}, stages, hop_ms={1: hop_ms})


@dataclass
class Scripted:
    """A policy that deploys ``allocation`` and takes the actions scripted for each tick
    (by tick time); it records every observation it is shown (a test's window into what
    the simulator reports)."""

    allocation: Mapping[str, Allocation]
    script: Mapping[float, Sequence[Action]] = field(default_factory=dict)
    interval_s: float = 1.0
    name: str = "scripted"
    seen: list[Observation] = field(default_factory=list)

    def initial_allocation(self) -> Mapping[str, Allocation]:
        return self.allocation

    def initial_state(self) -> Any:
        return 0

    def decide(self, observation: Observation, state: Any,
               now_s: float) -> tuple[list[Action], Any]:
        self.seen.append(observation)
        return list(self.script.get(round(now_s, 6), ())), state + 1

    def at(self, now_s: float) -> Observation:
        """The observation shown at ``now_s``."""
        return next(o for o in self.seen if abs(o.now_s - now_s) < 1e-9)


def fixed(pipeline: Pipeline, replicas: int = 1, cores: float = 1.0,
          script: Mapping[float, Sequence[Action]] | None = None, *,
          max_batch_size: int | None = None, max_delay_ms: float | None = None,
          interval_s: float = 1.0) -> Scripted:
    """Every stage at ``replicas`` x ``cores`` with its own batching, plus a script."""
    allocation = {
        s.name: Allocation(replicas, cores,
                           max_batch_size if max_batch_size is not None else s.max_batch_size,
                           max_delay_ms if max_delay_ms is not None else s.max_delay_ms,
                           "default")
        for s in pipeline.stages}
    return Scripted(allocation, dict(script or {}), interval_s)


# --- the service-time tables -----------------------------------------------------------------

def _measured_model() -> ModelProfile:
    # Uneven quantiles, two core counts: the table must follow the profile's own function.
    return model(lambda b, c: (0.3 + 0.05 * b) / c ** 0.8, spread=0.3,
                 batches=(1, 4, 16, 32), cores=(1.0, 2.0, 4.0))


@pytest.mark.parametrize("cores", [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
@pytest.mark.parametrize("rows", [1, 3, 16, 20, 32])
def test_table_draws_follow_the_profile(rows, cores):
    profile = _measured_model()
    table = ServiceTable(profile, cores, 32)
    for q in (0.0, 0.1, 0.5, 0.7, 0.95, 0.97, 0.99, 0.995):
        assert table.sample(rows, q) * 1000 == pytest.approx(
            profile.latency_ms(rows, cores, q), rel=1e-9)
    assert table.mean[rows] * 1000 == pytest.approx(profile.latency_ms(rows, cores, 0.5))
    assert table.upper[rows] * 1000 == pytest.approx(profile.latency_ms(rows, cores, 0.9))


def test_uniform_draws_sample_the_measured_distribution():
    profile = _measured_model()
    table = ServiceTable(profile, 1.0, 8)
    rng = random.Random(3)
    draws = sorted(table.sample(8, rng.random()) * 1000 for _ in range(20_000))
    for q in (0.5, 0.95, 0.99):
        assert draws[int(q * len(draws))] == pytest.approx(profile.latency_ms(8, 1.0, q),
                                                           rel=0.02)


def test_table_cache_shares_and_grows_tables():
    profile = _measured_model()
    cache = TableCache()
    small = cache.get(profile, 1.0, 4)
    assert small.max_rows == 4
    grown = cache.get(profile, 1.0 + 1e-12, 32)
    assert grown is small
    assert small.max_rows == 32
    assert cache.get(profile, 2.0, 4) is not small


def test_hop_sampler_follows_the_profile():
    pipeline = make_pipeline()
    profile = make_profile(pipeline, model(constant_ms(1.0)), hop_ms=(5.0, 9.0))
    hop = HopSampler(profile)
    for q in (0.0, 0.3, 0.5, 0.75, 0.99, 0.999):
        assert hop.sample(q) * 1000 == pytest.approx(profile.hop_latency_ms(1, q))
