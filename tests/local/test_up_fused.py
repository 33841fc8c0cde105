"""A fused pipeline in local mode, the pure parts: its replicas' manifest, the balancer in
front of them, and its one unit read from the replicas' own metrics (the runtime's metric
definitions, written by prometheus_client)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from sluice_core.spec import parse_pipeline
from sluice_local.up.observe import ReplicaView, StageSettings, TickInput, observe
from sluice_local.up.scrape import EMPTY, parse
from sluice_local.up.topology import Batching, RunFiles, fused_manifest, router_invocation
from sluice_runtime.metrics import RuntimeMetrics

from tests.conftest import ROOT

STAGES = ("intent", "policy", "response")


def manifest():
    document = yaml.safe_load((ROOT / "examples/pipelines/dialogue.yaml").read_text())
    document["spec"]["composition"] = "fused"
    return document


def test_fused_replicas_batch_every_stage_alike_and_share_the_units_wait():
    written = fused_manifest(manifest(), Batching(64, 9.0))
    pipeline = parse_pipeline(written)  # still a valid manifest
    assert [(s.max_batch_size, s.max_delay_ms) for s in pipeline.stages] == [(64, 3.0)] * 3
    assert manifest()["spec"]["stages"][0]["batching"]["maxBatchSize"] == 32  # untouched


def test_the_balancer_serves_the_pipeline_model_from_the_fused_replicas():
    files = RunFiles(Path("/run"), Path("/run/p.yaml"), Path("/run/token"))
    unit = parse_pipeline({**manifest(), "spec": {**manifest()["spec"], "stages": [
        {**manifest()["spec"]["stages"][0], "name": "whole"}]}})
    invocation = router_invocation(unit, {"whole": ("a:1", "b:2")}, 1, 2, files, fused=True)
    assert invocation.pipeline_file is None
    assert invocation.remotes == (("whole", ("a:1", "b:2")),)
    assert router_invocation(unit, {"whole": ("a:1",)}, 1, 2, files).pipeline_file == (
        "/run/p.yaml")


def fused_replica(ok: int, late: int, refused: int, queued: tuple[int, int, int]):
    """A fused replica's metrics: ``ok + late`` answered (``late`` after the deadline),
    ``refused`` refused, each stage's queue as given."""
    metrics = RuntimeMetrics(slo_s=0.1)
    for _ in range(ok + late):
        metrics.requests.labels("dialogue", "OK").inc()
        metrics.request_duration.labels("dialogue").observe(0.02)
    metrics.late.labels("dialogue").inc(late)
    metrics.requests.labels("dialogue", "RESOURCE_EXHAUSTED").inc(refused)
    for stage, depth in zip(STAGES, queued, strict=True):
        metrics.queue_depth.labels(stage).set(depth)
    metrics.arrival_rate.labels("intent").set(40.0)
    metrics.arrival_rate.labels("policy").set(39.0)
    return parse(generate_latest(metrics.registry).decode())


def test_the_fused_unit_is_read_from_its_replicas_whole_pipeline():
    replicas = [ReplicaView("dialogue", True, 1.0, EMPTY, fused_replica(30, 2, 5, (1, 2, 3))),
                ReplicaView("dialogue", True, 1.0, EMPTY, fused_replica(8, 0, 0, (0, 0, 4)))]
    observation, tick = observe(TickInput(
        t_s=1.0, interval_s=1.0, pipeline="dialogue", percentile=99, rows_per_request=8,
        stages={"dialogue": StageSettings(1.0, 64, 9.0, "default")}, replicas=replicas,
        router_before=EMPTY, router_after=EMPTY, in_flight={},
        models={"dialogue": STAGES}))
    seen = observation.stages["dialogue"]
    assert (seen.answered, seen.missed) == (40, 2 + 5)
    assert seen.arrival_rps == pytest.approx(80.0)  # every request enters the first stage
    assert seen.queue_depth == 10  # the stages' queues together
    assert seen.latency_ms == pytest.approx(20.0, rel=0.5)
    (sample,) = tick.stages
    assert (sample.answered, sample.late, sample.refused) == (40, 2, 5)
