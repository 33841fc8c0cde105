"""``sluice simulate``: replay a workload through a pipeline under scaling policies.

    sluice simulate PIPELINE.yaml --profiles FILE (--trace FILE [--mean-rate R] | --rate R
        [--mmpp]) [--duration-s S] --policy static|horizontal|vertical|hybrid|clairvoyant|all
        [--json PATH|-] [--seed N] [--nodes N] [--node-cores C] [--cold-start-s S]
        [--resize-delay-s S]

Other tools read the JSON (a list with ``--policy all``): keep its keys.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from sluice_core.fused import fused_unit
from sluice_core.profiles import PipelineProfile, ProfileError, load_profile
from sluice_core.scaling import registry
from sluice_core.simulate import (
    DEFAULT_NODE_CORES,
    DEFAULT_NODES,
    DEFAULT_PLATFORM_START_S,
    DEFAULT_RESIZE_DELAY_S,
    SimConfig,
    SimResult,
    SimulationError,
    simulate,
)
from sluice_core.spec import FUSED, Pipeline, SpecError, load_pipeline

from sluice_local.cli import CommandError
from sluice_local.commands.workload import add_workload_arguments, workload_counts

#: Seconds simulated under ``--rate`` when ``--duration-s`` is not given: ten minutes.
DEFAULT_RATE_DURATION_S = 600.0
ALL = "all"


def register(subparsers: Any) -> None:
    """Add ``simulate`` to the ``sluice`` command line."""
    parser = subparsers.add_parser(
        "simulate", help="simulate a pipeline under scaling policies",
        description="Replay a workload through a pipeline, with service times from its "
                    "profiles, under one scaling policy or all of them, and report SLO "
                    "attainment, latency and core-seconds.")
    parser.add_argument("pipeline", type=Path, metavar="PIPELINE.yaml",
                        help="the InferencePipeline manifest")
    parser.add_argument("--profiles", type=Path, metavar="FILE",
                        help="the pipeline's profile file (sluice profile)")
    add_workload_arguments(parser, DEFAULT_RATE_DURATION_S, "simulate")
    parser.add_argument("--policy", metavar="NAME",
                        help=f"one of {', '.join(registry.POLICY_NAMES)}, or {ALL}")
    parser.add_argument("--json", metavar="PATH|-",
                        help="write the results as JSON (a list with --policy all) to "
                             "PATH, or to standard output with -; without it, print a table")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed of the workload and of the simulation (default 0)")
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES, metavar="N",
                        help=f"nodes in the cluster (default {DEFAULT_NODES})")
    parser.add_argument("--node-cores", type=float, default=DEFAULT_NODE_CORES, metavar="C",
                        help=f"cores per node (default {DEFAULT_NODE_CORES:g})")
    parser.add_argument("--cold-start-s", type=float, default=DEFAULT_PLATFORM_START_S,
                        metavar="S",
                        help="platform start-up of a new replica before the model loads "
                             f"(default {DEFAULT_PLATFORM_START_S:g} s, typical of Knative "
                             "on a real cluster); the profile's load and warm-up come on top")
    parser.add_argument("--resize-delay-s", type=float, default=DEFAULT_RESIZE_DELAY_S,
                        metavar="S",
                        help="from an in-place resize to the new cores in use (default "
                             f"{DEFAULT_RESIZE_DELAY_S:g} s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Simulate, then print a table or write JSON."""
    names = _policies(args.policy)
    pipeline, profile = load_inputs(args)
    if pipeline.composition == FUSED:
        pipeline, profile = fused_unit(pipeline, profile)
    counts = workload_counts(args, DEFAULT_RATE_DURATION_S)
    try:
        config = SimConfig(seed=args.seed, nodes=args.nodes, node_cores=args.node_cores,
                           platform_start_s=args.cold_start_s,
                           resize_delay_s=args.resize_delay_s)
    except SimulationError as exc:
        raise CommandError(str(exc)) from None
    context = registry.PolicyContext(
        pipeline=pipeline, profile=profile, mean_rps=sum(counts) / len(counts),
        peak_rps=float(max(counts)), counts_per_second=counts)
    results = []
    for name in names:
        try:
            policy = registry.make_policy(name, context)
        except ValueError as exc:  # unknown, or cannot be built for this pipeline
            raise CommandError(f"policy {name}: {exc}") from None
        try:
            results.append(simulate(pipeline, profile, policy, counts, config))
        except (SimulationError, ProfileError) as exc:
            raise CommandError(f"policy {name}: {exc}") from None
    if args.json is None:
        print_table(pipeline, results, sys.stdout)
    else:
        documents = [r.to_json() for r in results]
        text = json.dumps(documents if args.policy == ALL else documents[0], indent=1) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            try:
                Path(args.json).write_text(text)
            except OSError as exc:
                raise CommandError(f"cannot write {args.json}: {exc.strerror or exc}") from None
    return 0


def _policies(name: str | None) -> Sequence[str]:
    known = registry.POLICY_NAMES
    if name is None:
        raise CommandError(f"--policy is required: one of {', '.join(known)}, or {ALL}")
    if name == ALL:
        return known
    if name not in known:
        raise CommandError(f"unknown policy {name!r}: choose from {', '.join(known)}, or {ALL}")
    return (name,)


def load_inputs(args: argparse.Namespace) -> tuple[Pipeline, PipelineProfile]:
    """The manifest and the profiles named on the command line (CommandError if unusable)."""
    if args.profiles is None:
        raise CommandError("--profiles FILE is required (make one with `sluice profile`)")
    try:
        pipeline = load_pipeline(args.pipeline)
    except SpecError as exc:
        raise CommandError(exc.message) from None
    try:
        profile = load_profile(args.profiles)
    except ProfileError as exc:
        raise CommandError(str(exc)) from None
    return pipeline, profile


def print_table(pipeline: Pipeline, results: Sequence[SimResult], out: TextIO) -> None:
    """The policies side by side, one line each."""
    if not results:
        return
    first = results[0]
    out.write(f"{pipeline.name}: {first.duration_s:g} s, {first.requests} requests, SLO "
              f"{first.slo_ms:g} ms at p{first.percentile:g}\n")
    header = (f"{'policy':<12} {'SLO met':>8} {'p50 ms':>8} {'p99 ms':>8} {'core-s':>10} "
              f"{'cores':>6} {'peak':>6} {'refused':>8} {'late':>7} {'vert':>5} {'horiz':>5}")
    out.write(header + "\n")
    for result in results:
        out.write(
            f"{result.policy:<12} {_percent(result.slo_attainment):>8} "
            f"{_ms(result.p50_ms):>8} {_ms(result.p99_ms):>8} {result.core_seconds:>10.1f} "
            f"{result.mean_cores:>6.2f} {result.peak_cores:>6.2f} {result.rejected:>8} "
            f"{result.late:>7} {result.vertical_actions:>5} {result.horizontal_actions:>5}\n")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
