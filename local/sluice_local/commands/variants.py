"""``sluice variants MODEL.onnx``: make cheaper variants of a stage's model with
onnxruntime's quantization tools, and measure each one's size, agreement with the original
on sample inputs, and latency in the profile format; optionally list them in a manifest's
stage (docs/models.md).

    sluice variants MODEL.onnx [--manifest PIPELINE.yaml --stage NAME] [--out DIR]
        [--variants int8,...] [--kind classifier|regression]
        [--samples FILE.npy|FILE.npz | --samples-count N --seed N --int-range LOW:HIGH]
        [--cores C,...] [--batches B,...] [--cgroup-root DIR | --no-profile] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sluice_core.profiles import PipelineProfile, save_profile
from sluice_core.spec import SpecError, load_pipeline

from sluice_local.cgroupfs import CpuHierarchy
from sluice_local.cli import CommandError
from sluice_local.commands.profile import available_cpus, host_record
from sluice_local.profiling import grid as profiling_grid
from sluice_local.profiling.assemble import MeasurementError, pipeline_profile
from sluice_local.profiling.progress import Progress
from sluice_local.profiling.quota import QuotaError, find_hierarchy
from sluice_local.profiling.runner import WorkerError, WorkerSettings, job_label, run_jobs
from sluice_local.variants.agreement import (
    KINDS,
    agreement,
    detect_kind,
    relative_error,
)
from sluice_local.variants.manifest import (
    ManifestError,
    VariantEntry,
    model_stem,
    parsed,
    stage_of,
    variant_accuracy,
    with_variants,
)
from sluice_local.variants.recipes import RECIPE_NAMES, RECIPES, recipe
from sluice_local.variants.report import Made, footnote, report_document, table_lines
from sluice_local.variants.samples import (
    DEFAULT_COUNT,
    DEFAULT_INT_RANGE,
    InputSpec,
    SampleError,
    generate,
    load_samples,
)


@dataclass(frozen=True)
class Subject:
    """The model the variants are made of, and the stage and pipeline it serves."""

    model: Path
    pipeline: str
    stage: str
    accuracy: float  # the stage's own model's, which variants' figures scale
    stem: str  # variant files are <stem>-<variant>.onnx, next to the stage's model
    max_batch_size: int | None
    manifest: dict[str, Any] | None  # as written, to be rewritten with the variants
    manifest_file: Path | None


@dataclass(frozen=True)
class Grid:
    """Where latency is measured: allocations, batch sizes, and the cgroups to do it in."""

    cores: tuple[float, ...]
    batches: tuple[int, ...]
    cpus: int
    hierarchy: CpuHierarchy


def register(subparsers: Any) -> None:
    """Add ``sluice variants``."""
    parser = subparsers.add_parser(
        "variants",
        help="make quantized variants of a model; measure size, agreement and latency",
        description=(
            "Make cheaper variants of an ONNX model with onnxruntime's quantization tools "
            "(dynamic and static int8), and measure each one: size on disk, agreement with "
            "the original on sample inputs (top-1 for classifiers, relative error "
            "otherwise; not task accuracy), and batch latency on the grid `sluice profile` "
            "uses, under real CPU quotas. "
            "Writes the variant files, a profile with one entry per variant and, given a "
            "manifest and a stage, the manifest with the stage's variants listed."
        ),
        epilog="Variants: " + "; ".join(f"{r.name}: {r.description}" for r in RECIPES) + ".",
    )
    add = parser.add_argument
    add("model", type=Path, metavar="MODEL.onnx", help="the model to make variants of")
    add("--manifest", type=Path, metavar="PIPELINE.yaml",
        help="list the variants in this manifest's --stage (the manifest written to --out)")
    add("--stage", metavar="NAME", help="the stage whose model MODEL.onnx is")
    add("--out", type=Path, metavar="DIR",
        help="where the variants, the profile and the manifest go (default ./<model>-variants)")
    add("--variants", default=",".join(RECIPE_NAMES), metavar="NAME,...",
        help="which variants to make (default %(default)s)")
    add("--kind", choices=KINDS,
        help="how agreement is judged (default: classifier when the first output is a score "
             "per class or labels, else regression)")
    add("--samples", type=Path, metavar="FILE",
        help="the sample inputs: .npy (one input) or .npz (an array per input name); "
             "default: generated")
    add("--samples-count", type=int, default=DEFAULT_COUNT, metavar="N",
        help="rows to generate (default %(default)s)")
    add("--seed", type=int, default=0, help="seed of the generated samples (default 0)")
    add("--int-range", default=":".join(map(str, DEFAULT_INT_RANGE)), metavar="LOW:HIGH",
        help="generated integers are uniform in [LOW, HIGH) (default %(default)s; floats "
             "are standard normal)")
    add("--free-dim", type=int, default=1, metavar="N",
        help="size of free input dimensions other than the batch axis (default %(default)s)")
    add("--cores", metavar="C,C,...",
        help="CPU allocations to measure (default: 0.5,1,1.5,2 up to this machine's CPUs)")
    add("--batches", default=",".join(map(str, profiling_grid.DEFAULT_BATCHES)),
        metavar="B,B,...",
        help="batch sizes to measure (default %(default)s)")
    add("--seconds-per-point", type=float,
        default=profiling_grid.DEFAULT_SECONDS_PER_BATCH, metavar="S",
        help="seconds each batch size runs back to back (default %(default)s)")
    add("--min-samples", type=int, default=profiling_grid.DEFAULT_MIN_SAMPLES, metavar="N",
        help="batches timed at least per point (default %(default)s)")
    add("--cgroup-root", type=Path, metavar="DIR",
        help="make the quota cgroups under this (delegated) cgroup directory")
    add("--no-profile", action="store_true",
        help="measure no latency (no CPU cgroups needed): size and agreement only")
    add("--json", action="store_true", help="print one JSON document instead of the table")
    parser.set_defaults(run=run)


def parse_int_range(text: str) -> tuple[int, int]:
    """``0:257`` -> (0, 257); CommandError unless LOW < HIGH."""
    low, _, high = text.partition(":")
    try:
        bounds = int(low), int(high)
    except ValueError:
        raise CommandError(f"--int-range LOW:HIGH expects integers, got {text!r}") from None
    if bounds[0] >= bounds[1]:
        raise CommandError(f"--int-range LOW:HIGH needs LOW < HIGH, got {text!r}")
    return bounds


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, in hex."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def subject_of(model: Path, manifest: Path | None, stage: str | None) -> Subject:
    """The model alone (a one-stage pipeline named after its file), or stage ``stage`` of
    ``manifest``, whose model ``model`` must be."""
    if manifest is None or stage is None:
        return Subject(model, model.stem, model.stem, 1.0, model.stem, None, None, None)
    try:
        load_pipeline(manifest)  # one-line errors for unreadable or invalid files
    except SpecError as exc:
        raise CommandError(" ".join(str(exc).split())) from None
    raw = yaml.safe_load(manifest.read_text())
    try:
        pipeline = parsed(raw)
        found = pipeline.stages[stage_of(pipeline, stage)]
    except ManifestError as exc:
        raise CommandError(str(exc)) from None
    if found.sha256 and found.sha256 != file_sha256(model):
        raise CommandError(f"{model} is not the model stage {stage} pins (sha256 "
                           f"{found.sha256[:12]}… in the manifest, "
                           f"{file_sha256(model)[:12]}… here)")
    return Subject(model, pipeline.name, stage, found.accuracy, model_stem(found.uri),
                   found.max_batch_size, raw, manifest)


def sample_set(args: argparse.Namespace, inputs: Sequence[InputSpec],
               int_range: tuple[int, int]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The samples, and what they are (for the report)."""
    try:
        if args.samples is not None:
            samples = load_samples(args.samples, inputs)
            rows = len(next(iter(samples.values())))
            return samples, {"count": rows, "source": str(args.samples)}
        samples = generate(inputs, args.samples_count, args.seed, int_range, args.free_dim)
    except SampleError as exc:
        raise CommandError(str(exc)) from None
    return samples, {"count": args.samples_count, "source": "generated", "seed": args.seed,
                     "int_range": list(int_range)}


def make_all(subject: Subject, names: Sequence[str], kind: str,
             samples: dict[str, np.ndarray], out: Path) -> list[Made]:
    """The original, then each variant made in ``out`` and compared with it."""
    # onnxruntime and its quantization tools load only here: every other sluice command
    # starts without them.
    from sluice_local.variants import inference, make

    made = [Made("default", "the original", subject.model, subject.model.stat().st_size,
                 file_sha256(subject.model), 1.0, 0.0, subject.accuracy)]
    try:
        reference = inference.run(subject.model, samples)
        with make.prepared(subject.model) as prepared:
            for name in names:
                path = out / f"{subject.stem}-{name}.onnx"
                try:
                    if not make.make_variant(prepared, recipe(name), path, samples):
                        print(f"sluice variants: {name}: the model has nothing this variant "
                              "quantizes; skipped", file=sys.stderr)
                        continue
                except make.VariantError as exc:  # one recipe failing spoils no other
                    print(f"sluice variants: {exc}; skipped", file=sys.stderr)
                    continue
                outputs = inference.run(path, samples)
                agreed = agreement(kind, reference, outputs)
                made.append(Made(name, recipe(name).description, path, path.stat().st_size,
                                 file_sha256(path), agreed,
                                 relative_error(reference, outputs),
                                 variant_accuracy(subject.accuracy, agreed)))
    except (make.VariantError, inference.ModelLoadError) as exc:
        raise CommandError(str(exc)) from None
    return made


def grid_of(args: argparse.Namespace) -> Grid | None:
    """The measurement grid, None with ``--no-profile``; CommandError when it cannot be
    measured here (before anything is made)."""
    if args.no_profile:
        return None
    cpus = available_cpus()
    try:
        cores = (profiling_grid.parse_cores(args.cores) if args.cores
                 else profiling_grid.default_cores(cpus))
        profiling_grid.check_cores(cores, cpus)
        return Grid(cores, profiling_grid.parse_batches(args.batches), cpus,
                    find_hierarchy(args.cgroup_root))
    except profiling_grid.GridError as exc:
        raise CommandError(str(exc)) from None
    except QuotaError as exc:
        raise CommandError(f"{exc}; or pass --no-profile to skip the latency") from None


def measure_latency(subject: Subject, made: Sequence[Made], grid: Grid,
                    args: argparse.Namespace) -> tuple[PipelineProfile, list[str]]:
    """Every model measured under real CPU quotas by the profiler's workers, on the
    profiler's grid (batches: the stage's maxBatchSize too), and the workers' warnings."""
    batches = profiling_grid.stage_batches(grid.batches, subject.max_batch_size)
    targets = [profiling_grid.Target(subject.stage, row.name, str(row.path.resolve()),
                                     row.sha256, row.accuracy, batches) for row in made]
    jobs = profiling_grid.plan_jobs(targets, grid.cores, args.seconds_per_point, grid.cpus)
    settings = WorkerSettings(min_samples=args.min_samples, free_dim=args.free_dim)
    progress = Progress([profiling_grid.estimate_job_s(job) for job in jobs])
    load_before = os.getloadavg()[0]
    try:
        results = run_jobs(jobs, grid.hierarchy, settings, grid.cpus, progress)
        host = host_record(results, grid.cpus, grid.hierarchy.version,
                           (load_before, os.getloadavg()[0]), args.seconds_per_point)
        profile = pipeline_profile(subject.pipeline, results, host)
    except (WorkerError, MeasurementError, QuotaError) as exc:
        raise CommandError(" ".join(str(exc).split())) from None
    warnings = [f"{job_label(measured.job)}: {warning}" for measured in results
                for warning in measured.document.get("warnings") or ()]
    return profile, warnings


def updated_manifest(subject: Subject, made: Sequence[Made]) -> dict[str, Any] | None:
    """The manifest with the variants in the stage, None without a manifest."""
    if subject.manifest is None:
        return None
    entries = [VariantEntry(row.name, row.path.name, row.sha256, row.accuracy)
               for row in made[1:]]
    try:
        return with_variants(subject.manifest, subject.stage, entries)
    except ManifestError as exc:
        raise CommandError(str(exc)) from None


def write_results(out: Path, subject: Subject, profile: PipelineProfile | None,
                  manifest: dict[str, Any] | None) -> dict[str, Path | None]:
    """Write the profile and the manifest (those there are) to ``out``; their paths."""
    written: dict[str, Path | None] = {"manifest": None, "profile": None}
    try:
        if profile is not None:
            written["profile"] = out / f"{subject.pipeline}.profile.json"
            save_profile(profile, written["profile"])
        if manifest is not None and subject.manifest_file is not None:
            written["manifest"] = out / subject.manifest_file.name
            written["manifest"].write_text(yaml.safe_dump(manifest, sort_keys=False))
    except OSError as exc:
        raise CommandError(f"cannot write in {out}: {exc.strerror or exc}") from None
    return written


def run(args: argparse.Namespace) -> int:
    """Make the variants, measure them, write the files, print the table or JSON."""
    if (args.stage is None) != (args.manifest is None):
        raise CommandError("--stage needs --manifest" if args.manifest is None
                           else "--manifest needs --stage (the stage MODEL.onnx belongs to)")
    int_range = parse_int_range(args.int_range)
    if args.samples_count < 1 or args.free_dim < 1:
        raise CommandError("--samples-count and --free-dim must be >= 1")
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    if unknown := [name for name in names if name not in RECIPE_NAMES]:
        raise CommandError(f"unknown variant {unknown[0]!r} (known: {', '.join(RECIPE_NAMES)})")
    grid = grid_of(args)
    if not args.model.is_file():
        raise CommandError(f"no model file at {args.model}")
    from sluice_local.variants.inference import ModelLoadError, signature  # as in make_all

    try:
        model_signature = signature(args.model)
    except ModelLoadError as exc:
        raise CommandError(str(exc)) from None
    subject = subject_of(args.model, args.manifest, args.stage)
    samples, stated = sample_set(args, model_signature.inputs, int_range)
    kind = args.kind or detect_kind(model_signature.outputs)
    out = args.out or Path(f"{subject.stem}-variants")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot make {out}: {exc.strerror or exc}") from None
    made = make_all(subject, names, kind, samples, out)

    updated = updated_manifest(subject, made)  # refused now, not after the measurement
    profile, warnings = None, []
    if grid is not None:
        try:
            profile, warnings = measure_latency(subject, made, grid, args)
        except KeyboardInterrupt:
            print("sluice variants: interrupted (its cgroups are removed)", file=sys.stderr)
            return 130
    written = write_results(out, subject, profile, updated)
    for warning in warnings:  # the profiler's, about the measurement (a busy machine)
        print(f"sluice variants: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(report_document(subject.model, subject.stage, kind, stated, made,
                                         profile, warnings, written), indent=2))
        return 0
    for line in table_lines(made, profile, subject.stage):
        print(line)
    print(footnote(kind, stated))
    for path in written.values():
        if path is not None:
            print(f"wrote {path}")
    return 0
