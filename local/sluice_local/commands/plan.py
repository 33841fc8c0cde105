"""``sluice plan PIPELINE.yaml --profiles FILE --rate R``: the cheapest per-stage variant,
batching, cores and replicas meeting the pipeline's SLO at a load, with the reasons."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from sluice_core.planner import Load, Plan, PlannerSettings, plan
from sluice_core.profiles import ProfileError, load_profile
from sluice_core.spec import SpecError, load_pipeline

from sluice_local.cli import CommandError

#: Exit status when no allocation within bounds meets the SLO (the plan is a best effort).
EXIT_INFEASIBLE = 1


def register(subparsers: Any) -> None:
    """Add ``sluice plan``."""
    parser = subparsers.add_parser(
        "plan",
        help="plan per-stage variant, batching, cores and replicas for an SLO at a load",
        description=(
            "Choose, per stage, the model variant, max batch size and delay, cores per "
            "replica and replicas that meet the pipeline's end-to-end latency SLO at the "
            "given load at the fewest cores (highest accuracy first, or the cheapest above "
            "spec.slo.minAccuracy), and for composition auto whether to fuse the stages. "
            "Latencies come from the profile file (`sluice profile`) with queueing counted."
        ),
        epilog=f"Exit status: 0 when the plan meets the SLO, {EXIT_INFEASIBLE} when it is "
               "only a best effort, 2 on a bad manifest or profile.",
    )
    add = parser.add_argument
    add("pipeline", type=Path, metavar="PIPELINE.yaml", help="an InferencePipeline manifest")
    add("--profiles", type=Path, required=True, metavar="FILE",
        help="the pipeline's profile file (written by `sluice profile`)")
    add("--rate", type=_non_negative, required=True, metavar="R",
        help="mean arrival rate at the pipeline, requests per second")
    add("--scv", type=_non_negative, default=1.0, metavar="X",
        help="squared coefficient of variation of inter-arrival times: 1 for Poisson, "
             "more for burstier traffic (default %(default)s)")
    add("--router-cores", type=_non_negative, default=0.0, metavar="C",
        help="cores of the isolated composition's router, counted in its cost when "
             "comparing with fused (default %(default)s)")
    add("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(run=run)


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    """Plan and print; the exit status says whether the SLO is met."""
    try:
        pipeline = load_pipeline(args.pipeline)
        profile = load_profile(args.profiles)
        result = plan(pipeline, profile, Load(args.rate, args.scv),
                      settings=PlannerSettings(router_cores=args.router_cores))
    except (SpecError, ProfileError) as exc:
        # One line, as CommandError promises (a YAML error quotes the offending lines).
        raise CommandError(" ".join(str(exc).split())) from None
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(render(result))
    return 0 if result.feasible else EXIT_INFEASIBLE


_COLUMNS = ("stage", "variant", "budget", "share", "p{pct}", "util", "cores", "replicas",
            "batch", "delay", "cost")


def render(result: Plan) -> str:
    """The plan as a table, a reason line per stage, and the summary."""
    pct = f"p{result.percentile:g}"
    total_budget = sum(s.budget_ms for s in result.stages) or 1.0
    rows = [[c.format(pct=f"{result.percentile:g}") for c in _COLUMNS]]
    for s in result.stages:
        rows.append([
            s.stage, s.variant, f"{s.budget_ms:.1f} ms", f"{s.budget_ms / total_budget:.0%}",
            _ms(s.predicted_ms), f"{s.utilisation:.0%}", f"{s.cores:g}", str(s.replicas),
            str(s.max_batch_size), f"{s.max_delay_ms:g} ms", f"{s.cost_cores:g}",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [f"{result.pipeline}: {result.composition}, {pct} SLO {result.slo_ms:g} ms, "
             f"{result.load.rate_rps:g} req/s (arrival SCV {result.load.arrival_scv:g})", ""]
    for row in rows:
        cells = [cell.ljust(width) if i < 2 else cell.rjust(width)
                 for i, (cell, width) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    for s in result.stages:
        lines.append(f"{s.stage}: {s.reason}")
    lines.append("")
    hops = f" (hops {result.hops_ms:.1f} ms)" if result.hops_ms else ""
    verdict = "meets the SLO" if result.feasible else "DOES NOT MEET the SLO"
    lines.append(f"end to end: {pct} {_ms(result.predicted_ms)}{hops} of {result.slo_ms:g} ms"
                 f", {result.cost_cores:g} cores, accuracy {result.accuracy:.4g}: {verdict}")
    lines.append(f"why: {result.reason}")
    return "\n".join(lines)


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if math.isfinite(value) else "unbounded"
