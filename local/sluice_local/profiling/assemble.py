"""Turn the measurement workers' documents into profile records: pure.

Each worker measured one model under one CPU quota, at every thread count the runtime
may give a lone batch there. A profile point keeps, per (cores, batch), the thread count
the runtime would pick: the lowest mean latency (its latency model predicts means), fewer
threads on a tie, as :func:`sluice_runtime.parallelism.choose_threads` decides.

Cold start and memory are one figure per model: load and warm-up as measured at the
allocation closest to one core (below it on a tie: the slower figure), where a stage's
pods usually start; resident memory the largest seen, which is at the most cores, where
the runtime holds a session per thread count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

from sluice_core.profiles import (
    LatencyPoint,
    ModelProfile,
    PipelineProfile,
    StageProfile,
    point_from_samples,
)

from sluice_local.profiling.grid import Job, Target

MEASURE_FORMAT = "sluice.measure/v1"
#: A quota the worker saw off by more than this (cores) was not the one asked for.
QUOTA_TOLERANCE_CORES = 0.01


class MeasurementError(ValueError):
    """A worker's document is unusable (one line for the user)."""


@dataclass(frozen=True)
class Measured:
    """What one job produced: the job and the worker's JSON document."""

    job: Job
    document: Mapping[str, Any]


def check_document(job: Job, document: Mapping[str, Any], cpus: int) -> None:
    """MeasurementError unless ``document`` is a worker's answer measured under ``job``'s
    quota (the quota in force, seen by the worker as the runtime sees it)."""
    where = f"{job.target.stage}/{job.target.variant} at {job.cores:g} cores"
    if document.get("format") != MEASURE_FORMAT:
        raise MeasurementError(f"{where}: the worker answered format "
                               f"{document.get('format')!r}, expected {MEASURE_FORMAT!r}")
    seen = document.get("cpu_allocation_cores")
    expected = min(job.cores, float(cpus))
    if not isinstance(seen, int | float) or abs(seen - expected) > QUOTA_TOLERANCE_CORES:
        raise MeasurementError(f"{where}: the worker ran with {seen} cores, not the "
                               f"{expected:g} of its quota: the cgroup did not limit it")
    runs = document.get("runs")
    if not isinstance(runs, list) or not runs:
        raise MeasurementError(f"{where}: the worker measured nothing")
    for run in runs:
        if not run.get("latencies_ms"):
            raise MeasurementError(f"{where}: no latency at batch {run.get('batch')}")


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean of a non-empty sequence."""
    return sum(values) / len(values)


def best_threads(latencies_by_threads: Mapping[int, Sequence[float]]) -> int:
    """The thread count with the lowest mean latency; the fewest among equals."""
    return min(latencies_by_threads, key=lambda t: (mean(latencies_by_threads[t]), t))


def points_of(measured: Measured) -> list[LatencyPoint]:
    """One point per batch size of a job, at the thread count the runtime would choose."""
    by_batch: dict[int, dict[int, list[float]]] = {}
    for run in measured.document["runs"]:
        by_batch.setdefault(int(run["batch"]), {})[int(run["threads"])] = [
            float(v) for v in run["latencies_ms"]]
    points = []
    for batch, by_threads in sorted(by_batch.items()):
        threads = best_threads(by_threads)
        points.append(point_from_samples(measured.job.cores, batch, threads,
                                         by_threads[threads]))
    return points


def model_name(source: str) -> str:
    """The file name a model source ends in (``file:///models/intent.onnx`` -> intent.onnx)."""
    path = urlparse(source).path if "://" in source else source
    return PurePosixPath(path).name or source


def cold_start_job(results: Sequence[Measured]) -> Measured:
    """The measurement whose load and warm-up stand for the model's cold start."""
    return min(results, key=lambda m: (abs(m.job.cores - 1.0), m.job.cores))


def model_profile(target: Target, results: Sequence[Measured]) -> ModelProfile:
    """A model's profile from every allocation it was measured at."""
    if not results:
        raise MeasurementError(f"{target.stage}/{target.variant}: nothing was measured")
    cold = cold_start_job(results).document
    return ModelProfile(
        model=model_name(target.source),
        sha256=str(results[0].document["sha256"]),
        accuracy=target.accuracy,
        # Rounded past any precision they have, so regenerated files stay readable.
        load_s=round(float(cold["load_s"]), 4),
        warmup_s=round(float(cold["warmup_s"]), 4),
        rss_mib=round(max(float(m.document["rss_mib"]) for m in results), 1),
        points=tuple(p for m in results for p in points_of(m)),
    )


def pipeline_profile(pipeline: str, results: Sequence[Measured],
                     host: Mapping[str, Any]) -> PipelineProfile:
    """The pipeline's profile: stages and variants in the order they were measured."""
    by_target: dict[Target, list[Measured]] = {}
    for measured in results:
        by_target.setdefault(measured.job.target, []).append(measured)
    stages: dict[str, dict[str, ModelProfile]] = {}
    for target, measured in by_target.items():
        stages.setdefault(target.stage, {})[target.variant] = model_profile(target, measured)
    return PipelineProfile(
        pipeline=pipeline,
        host=dict(host),
        stages={name: StageProfile(name, variants) for name, variants in stages.items()},
    )
