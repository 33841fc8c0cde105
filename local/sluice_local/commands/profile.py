"""``sluice profile PIPELINE.yaml|MODEL.onnx``: measure every stage's models under real CPU
quotas and write the pipeline's profile file (docs/profiles.md)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sluice_core.profiles import PipelineProfile, save_profile
from sluice_core.spec import SpecError, load_pipeline

from sluice_local.cli import CommandError
from sluice_local.models import ModelLocationError, local_model_source
from sluice_local.profiling.assemble import Measured, MeasurementError, pipeline_profile
from sluice_local.profiling.grid import (
    DEFAULT_BATCHES,
    DEFAULT_MIN_SAMPLES,
    DEFAULT_SECONDS_PER_BATCH,
    GridError,
    Target,
    check_cores,
    default_cores,
    estimate_job_s,
    parse_batches,
    parse_cores,
    plan_jobs,
    stage_batches,
)
from sluice_local.profiling.progress import Progress, format_duration
from sluice_local.profiling.quota import QuotaError, find_hierarchy
from sluice_local.profiling.runner import (
    WORKER_MODULE,
    WorkerError,
    WorkerSettings,
    job_label,
    run_jobs,
)


def register(subparsers: Any) -> None:
    """Add ``sluice profile``."""
    parser = subparsers.add_parser(
        "profile",
        help="measure a pipeline's models under real CPU quotas; write its profile",
        description=(
            "Measure, for every stage and variant of a pipeline (or one ONNX model), batch "
            "latency (p50/p95/p99) by batch size and CPU allocation under real CPU quotas "
            "(a cgroup per allocation: needs root or a delegated cgroup), the cold start "
            "(load and warm-up) and resident memory; write one versioned profile file "
            "(docs/profiles.md) that the planner, simulator, local mode and operator read."
        ),
    )
    add = parser.add_argument
    add("target", type=Path, metavar="PIPELINE.yaml|MODEL.onnx",
        help="an InferencePipeline manifest, or one .onnx model file")
    add("--out", type=Path, metavar="FILE",
        help="the profile file to write (default: ./<pipeline>.profile.json)")
    add("--cores", metavar="C,C,...",
        help="CPU allocations to measure, in cores (default: 0.5,1,1.5,2 up to this "
             "machine's CPUs)")
    add("--batches", default=",".join(map(str, DEFAULT_BATCHES)), metavar="B,B,...",
        help="batch sizes to measure; above a stage's maxBatchSize, that size instead "
             "(default %(default)s)")
    add("--seconds-per-point", type=float, default=DEFAULT_SECONDS_PER_BATCH, metavar="S",
        help="seconds each batch size runs back to back at each thread count; at least "
             "0.4 under a fractional quota (default %(default)s)")
    add("--min-samples", type=int, default=DEFAULT_MIN_SAMPLES, metavar="N",
        help="batches timed at least per point, for slow models (default %(default)s)")
    add("--model-root", type=Path, metavar="DIR",
        help="the local directory that stands for /models, where the runtime image keeps "
             "models: file:///models/x.onnx is read as DIR/x.onnx")
    add("--cgroup-root", type=Path, metavar="DIR",
        help="make the quota cgroups under this cgroup directory (a delegated v2 subtree) "
             "instead of the system's CPU hierarchy")
    add("--free-dim", type=int, default=1, metavar="N",
        help="size of free input dimensions other than the batch axis (default %(default)s)")
    parser.set_defaults(run=run)


def available_cpus() -> int:
    """CPUs this process may be scheduled on."""
    return len(os.sched_getaffinity(0))


def targets_for(target: Path, batches: Sequence[int],
                model_root: Path | None) -> tuple[str, list[Target]]:
    """The pipeline's name and every model to profile: each variant of each stage of a
    manifest, or one model file as a one-stage pipeline named after it."""
    if target.suffix == ".onnx":
        if not target.is_file():
            raise CommandError(f"no model file at {target}")
        return target.stem, [Target(target.stem, "default", str(target.resolve()), None, 1.0,
                                    tuple(batches))]
    try:
        pipeline = load_pipeline(target)
    except SpecError as exc:
        raise CommandError(" ".join(str(exc).split())) from None
    targets = []
    for stage in pipeline.stages:
        for variant in stage.variants:
            try:
                source = local_model_source(variant.model.uri, model_root)
            except ModelLocationError as exc:
                raise CommandError(f"stage {stage.name}, variant {variant.name}: {exc}") from None
            targets.append(Target(stage.name, variant.name, source, variant.model.sha256,
                                  variant.accuracy,
                                  stage_batches(batches, stage.max_batch_size)))
    return pipeline.name, targets


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return "unknown"


def host_record(results: Sequence[Measured], cpus: int, cgroup_version: str,
                loadavg: tuple[float, float], seconds_per_point: float) -> dict[str, Any]:
    """What the profile says about where and how it was measured."""
    return {
        "cpu": _cpu_model(),
        "cores": cpus,
        "onnxruntime": results[0].document.get("onnxruntime") if results else None,
        "cgroup": cgroup_version,
        "loadavg_1m": {"before": round(loadavg[0], 2), "after": round(loadavg[1], 2)},
        "seconds_per_point": seconds_per_point,
        # The isolated-hop figures in the file are the defaults: profiling runs no servers.
        "hop_ms": "default (not measured)",
    }


def summary_lines(profile: PipelineProfile) -> list[str]:
    """Per model: cold start and memory, then p50/p99 at the smallest and largest batch
    for each allocation."""
    lines = []
    for stage in profile.stages.values():
        for variant, model in stage.variants.items():
            lines.append(f"{stage.name}/{variant} ({model.model}): load {model.load_s:.2f} s, "
                         f"warm-up {model.warmup_s:.3f} s, RSS {model.rss_mib:.0f} MiB")
            for cores in model.cores_measured:
                cells = []
                for point in sorted((p for p in model.points if p.cores == cores),
                                    key=lambda p: p.batch):
                    cells.append(f"b{point.batch} {point.p50_ms:.3g}/{point.p99_ms:.3g}")
                lines.append(f"  {cores:g} cores, p50/p99 ms: " + "  ".join(cells))
    return lines


def run(args: argparse.Namespace) -> int:
    """Profile, write the file, print a summary."""
    cpus = available_cpus()
    try:
        cores = parse_cores(args.cores) if args.cores else default_cores(cpus)
        check_cores(cores, cpus)
        batches = parse_batches(args.batches)
        if args.min_samples < 1 or args.free_dim < 1:
            raise GridError("--min-samples and --free-dim must be >= 1")
    except GridError as exc:
        raise CommandError(str(exc)) from None
    name, targets = targets_for(args.target, batches, args.model_root)
    try:
        jobs = plan_jobs(targets, cores, args.seconds_per_point, cpus)
        hierarchy = find_hierarchy(args.cgroup_root)
    except (GridError, QuotaError) as exc:
        raise CommandError(str(exc)) from None
    if importlib.util.find_spec("sluice_runtime") is None:
        raise CommandError(f"the measurement worker ({WORKER_MODULE}) is part of the runtime, "
                           "which this Python lacks: pip install 'sluice[runtime]'")
    out = args.out or Path(f"{name}.profile.json")
    estimates = [estimate_job_s(job) for job in jobs]
    print(f"profiling {name}: {len(targets)} model(s) x {len(cores)} allocation(s) "
          f"({','.join(f'{c:g}' for c in cores)} cores), about "
          f"{format_duration(sum(estimates))}", file=sys.stderr)
    loadavg_before = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="sluice-downloads-") as downloads:
            settings = WorkerSettings(min_samples=args.min_samples, free_dim=args.free_dim,
                                      download_dir=Path(downloads))
            results = run_jobs(jobs, hierarchy, settings, cpus, Progress(estimates))
        profile = pipeline_profile(name, results, host_record(
            results, cpus, hierarchy.version, (loadavg_before, os.getloadavg()[0]),
            args.seconds_per_point))
    except (WorkerError, MeasurementError, QuotaError) as exc:
        raise CommandError(" ".join(str(exc).split())) from None
    except KeyboardInterrupt:
        print("sluice profile: interrupted (its cgroups are removed)", file=sys.stderr)
        return 130
    for measured in results:
        for warning in measured.document.get("warnings") or ():
            print(f"sluice profile: warning: {job_label(measured.job)}: {warning}",
                  file=sys.stderr)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_profile(profile, out)
    except OSError as exc:
        raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from None
    for line in summary_lines(profile):
        print(line)
    print(f"wrote {out}")
    return 0
