"""``sluice up``: the pipeline on this machine, as local processes under real CPU quotas and
a scaling policy, with load, a live view, a report and plots.

    sluice up PIPELINE.yaml --profiles FILE [--model-root DIR] [--model STAGE=PATH]...
        (--trace FILE [--mean-rate R] | --rate R [--mmpp]) [--duration-s S] [--serve]
        [--policy static|horizontal|vertical|hybrid|all] [--rows-per-request N]
        [--out DIR] [--cgroup-root DIR | --no-quota] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sluice_core.fused import fused_unit
from sluice_core.profiles import PipelineProfile
from sluice_core.scaling import registry
from sluice_core.simulate import SimConfig, SimulationError, simulate
from sluice_core.spec import FUSED, Pipeline

from sluice_local.cli import CommandError
from sluice_local.commands.simulate import load_inputs
from sluice_local.commands.workload import add_workload_arguments, workload_counts
from sluice_local.models import ModelLocationError, local_model_source
from sluice_local.profiling.quota import QuotaError, find_hierarchy
from sluice_local.up.plots import plot_comparison, plot_run
from sluice_local.up.report import build_report, format_table, per_second_rows, write_csv
from sluice_local.up.run import RunError, RunOutcome, RunSpec, StopFlag, run_policy
from sluice_local.up.topology import CPU_POLL_INTERVAL_S

#: Policies a live system can run (the clairvoyant bound needs the future).
LOCAL_POLICIES = ("static", "horizontal", "vertical", "hybrid")
ALL = "all"
#: Seconds of load under ``--rate`` when ``--duration-s`` is not given.
DEFAULT_DURATION_S = 120.0
#: A new local replica's start before its model loads: an interpreter and its imports
#: (the profile's load and warm-up come on top), what the simulator is told.
LOCAL_START_S = 1.0


def register(subparsers: Any) -> None:
    """Add ``up`` to the ``sluice`` command line."""
    parser = subparsers.add_parser(
        "up", help="run a pipeline locally under a scaling policy",
        description="Run the pipeline as local processes (one runtime per stage replica "
                    "and the router; fused, replicas running every stage behind a "
                    "balancer), each in its own CPU cgroup, drive load at it, and "
                    "scale it with the decision core's policies: in place (the cgroup "
                    "quota) and out (replica processes). Ends with a report and plots.")
    parser.add_argument("pipeline", type=Path, metavar="PIPELINE.yaml",
                        help="the InferencePipeline manifest")
    parser.add_argument("--profiles", type=Path, metavar="FILE",
                        help="the pipeline's profile file (sluice profile)")
    parser.add_argument("--model-root", type=Path, metavar="DIR",
                        help="the directory file:///models/ stands for")
    parser.add_argument("--model", action="append", default=[], metavar="STAGE=PATH",
                        help="serve this file for STAGE (repeatable)")
    add_workload_arguments(parser, DEFAULT_DURATION_S, "send load")
    parser.add_argument("--serve", action="store_true",
                        help="send no load: serve until Ctrl-C (plans for --rate R) and "
                             "print the endpoint for your own clients")
    parser.add_argument("--policy", default="hybrid", metavar="NAME",
                        help=f"one of {', '.join(LOCAL_POLICIES)}, or {ALL} (one after "
                             "another, side by side); default hybrid")
    parser.add_argument("--rows-per-request", type=int, default=8, metavar="N",
                        help="rows each request carries (default 8)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where to write reports, plots and logs (default "
                             "./sluice-up-TIME)")
    parser.add_argument("--cgroup-root", type=Path, metavar="DIR",
                        help="make the processes' cgroups under this cgroup directory (a "
                             "delegated v2 subtree) instead of the system's root")
    parser.add_argument("--no-quota", action="store_true",
                        help="run without CPU cgroups (no vertical scaling)")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed of the workload and the simulation (default 0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run every asked policy, then report."""
    names = _policies(args.policy)
    if args.rows_per_request < 1:
        raise CommandError(f"--rows-per-request must be at least 1, got {args.rows_per_request}")
    pipeline, profile = load_inputs(args)
    sources = _model_sources(pipeline, args)
    fused_stages: tuple[str, ...] = ()
    if pipeline.composition == FUSED:
        # Its replicas are the whole pipeline: the policies and the simulator scale them
        # as the one stage they are.
        fused_stages = tuple(s.name for s in pipeline.stages)
        pipeline, profile = fused_unit(pipeline, profile)
    profile = profile.per_request(args.rows_per_request)
    counts = _counts(args)
    hierarchy = None
    if not args.no_quota:
        try:
            hierarchy = find_hierarchy(args.cgroup_root)
        except QuotaError as exc:
            raise CommandError(f"{exc}; or pass --no-quota to run without CPU limits (no "
                               "vertical scaling, as the report says)") from None
    spec = RunSpec(pipeline, args.pipeline, sources, args.rows_per_request,
                   None if args.serve else counts, args.seed, hierarchy, fused_stages)
    out = args.out or Path(f"sluice-up-{time.strftime('%Y%m%d-%H%M%S')}")
    context = registry.PolicyContext(pipeline=pipeline, profile=profile,
                                     mean_rps=sum(counts) / len(counts),
                                     peak_rps=float(max(counts)))
    reports = []
    stop = StopFlag()
    with stop.installed():
        for name in names:
            policy = registry.make_policy(name, context)
            try:
                outcome = run_policy(spec, policy, out / name, sys.stdout, stop)
            except RunError as exc:
                raise CommandError(f"policy {name}: {exc}") from None
            reports.append(_report(outcome, spec, profile, policy, counts))
            if outcome.interrupted:
                break
    _write_summary(reports, out)
    return 0


def _report(outcome: RunOutcome, spec: RunSpec, profile: PipelineProfile,
            policy: registry.Policy, counts: Sequence[int]) -> dict[str, Any]:
    """Write one run's report, CSV and plot; the report."""
    simulated = None
    if spec.counts is not None and not outcome.interrupted:
        simulated = _simulate(spec, profile, policy, counts)
    report = build_report(outcome.timeline, outcome.requests, outcome.duration_s, spec.seed,
                          simulated)
    report["interrupted"] = outcome.interrupted
    (outcome.directory / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    write_csv(outcome.directory / "per-second.csv",
              per_second_rows(outcome.timeline, outcome.requests, outcome.duration_s))
    plot_run(report, outcome.directory / "run.png")
    return report


def _simulate(spec: RunSpec, profile: PipelineProfile, policy: registry.Policy,
              counts: Sequence[int]) -> dict[str, Any] | None:
    """The same run in the simulator, with local mode's start and resize delays. Local
    quotas are limits, not reservations: nothing stops them adding up to more than the
    machine's cores, so the simulated node holds every replica the stages' bounds allow."""
    room = sum(s.max_replicas * s.cpu.max_value for s in spec.pipeline.stages)
    config = SimConfig(seed=spec.seed, nodes=1, node_cores=room,
                       platform_start_s=LOCAL_START_S, resize_delay_s=CPU_POLL_INTERVAL_S)
    try:
        return simulate(spec.pipeline, profile, policy, list(counts), config).to_json()
    except SimulationError as exc:
        print(f"sluice up: the simulation of {policy.name} failed: {exc}", file=sys.stderr)
        return None


def _write_summary(reports: list[dict[str, Any]], out: Path) -> None:
    if not reports:
        return
    print(format_table(reports))
    if fused := reports[0]["fused_stages"]:
        print(f"{reports[0]['pipeline']} is fused: each replica runs {', '.join(fused)} in "
              "one process, behind a balancer, and scales as one unit")
    if not reports[0]["quota"]:
        print("no CPU quotas (--no-quota): every process could use every core, and no "
              "resize was applied")
    for report in reports:
        used = report["cores_used"]
        print(f"{report['policy']}: the stages used {used['stages_mean_cores']:.2f} of the "
              f"{report['mean_cores']:.2f} cores allocated on average, the router "
              f"{used['router_mean_cores']:.2f} (of the machine's {os.cpu_count()})")
    for report in reports:
        directory = out / str(report["policy"])
        print(f"{report['policy']}: {directory / 'report.json'}, "
              f"{directory / 'per-second.csv'}, {directory / 'run.png'}")
    if len(reports) > 1:
        print(f"comparison: {plot_comparison(reports, out / 'comparison.png')}")


def _policies(name: str) -> Sequence[str]:
    if name == ALL:
        return LOCAL_POLICIES
    if name not in LOCAL_POLICIES:
        raise CommandError(f"unknown policy {name!r}: choose from "
                           f"{', '.join(LOCAL_POLICIES)}, or {ALL}")
    return (name,)


def _counts(args: argparse.Namespace) -> list[int]:
    if args.serve and args.rate is None:
        raise CommandError("--serve plans for a load: give it as --rate R")
    if args.serve and args.trace is not None:
        raise CommandError("--serve sends no load: give --rate R (what to plan for), not "
                           "--trace")
    return workload_counts(args, DEFAULT_DURATION_S)


def _model_sources(pipeline: Pipeline, args: argparse.Namespace) -> dict[tuple[str, str], str]:
    """Every (stage, variant)'s model on this machine; --model overrides a stage's own."""
    overrides = {}
    for text in args.model:
        stage, sep, path = text.partition("=")
        if not sep or not path:
            raise CommandError(f"--model wants STAGE=PATH, got {text!r}")
        if stage not in {s.name for s in pipeline.stages}:
            raise CommandError(f"--model names {stage!r}, which is not a stage of "
                               f"{pipeline.name}")
        overrides[stage] = str(Path(path).resolve())
    sources = {}
    for stage in pipeline.stages:
        for variant in stage.variants:
            if variant.name == "default" and stage.name in overrides:
                sources[(stage.name, variant.name)] = overrides[stage.name]
                continue
            try:
                sources[(stage.name, variant.name)] = local_model_source(variant.model.uri,
                                                                         args.model_root)
            except ModelLocationError as exc:
                raise CommandError(f"stage {stage.name}: {exc}") from None
    return sources
