"""Local mode's four policies on a real arrival trace, measured on this machine (issue 9).

``sluice up --policy all`` runs the example dialogue pipeline (its replicas and the router
as processes in their own CPU cgroups) under static, horizontal (Knative's KPA), vertical
and hybrid, one after another on the same arrivals: Twitter window a of ``--traces``
scaled to ``--mean-rate`` (what this machine serves; a synthetic bursty MMPP of that mean
stands in for a missing file), its first ``--duration-s`` seconds. Each run is simulated
with the same inputs beside it. This script then puts the four reports side by side and
judges the goals:

- hybrid >= 99.5 % SLO attainment;
- >= 15x fewer misses than horizontal-only, at <= its core-seconds;
- >= 25 % fewer core-seconds than static, at equal or better attainment;
- vertical reaction (decision -> the new cores in force, read from each runtime's own
  ``sluice_cpu_allocation_cores``) under 1 s, beside horizontal reaction (decision -> the
  new replica serving behind the router).

Needs root (CPU cgroups). Usage::

    python bench/local.py --traces ../shared/traces [--mean-rate 60] [--duration-s 180]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "examples" / "pipelines" / "dialogue.yaml"
PROFILE = ROOT / "examples" / "profiles" / "dialogue.json"
WINDOW = "twitter-window-a.txt"
POLICIES = ("static", "horizontal", "vertical", "hybrid")


def reactions_s(report: dict[str, Any], kind: str) -> list[float]:
    """Decision-to-effect seconds of a run's actions of ``kind`` that took effect."""
    return [a["reaction_s"] for a in report["actions"]
            if a["kind"] == kind and a["reaction_s"] is not None]


def spread(values: list[float]) -> str:
    """Median and max, or "-"."""
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} (max {max(values):.2f}, n={len(values)})"


def table(reports: dict[str, dict[str, Any]]) -> str:
    """The policies side by side, measured and simulated."""
    lines = [f"{'policy':<11} {'SLO met':>8} {'misses':>7} {'p99 ms':>7} {'core-s':>8} "
             f"{'sim met':>8} {'sim core-s':>10} {'resize s':>22} {'scale-out s':>22}"]
    for name, r in reports.items():
        sim = r.get("simulated") or {}
        lines.append(
            f"{name:<11} {100 * r['slo_attainment']:>7.2f}% {r['misses']:>7} "
            f"{r['p99_ms'] or 0:>7.1f} {r['core_seconds']:>8.1f} "
            f"{100 * (sim.get('slo_attainment') or 0):>7.2f}% "
            f"{sim.get('core_seconds', 0):>10.1f} {spread(reactions_s(r, 'resize')):>22} "
            f"{spread(reactions_s(r, 'replicas')):>22}")
    return "\n".join(lines)


def goals(reports: dict[str, dict[str, Any]]) -> list[tuple[str, bool, str]]:
    """Each goal: what it says, met or not, and the figures."""
    hybrid, horizontal, static = reports["hybrid"], reports["horizontal"], reports["static"]
    fewer = horizontal["misses"] / max(hybrid["misses"], 1)
    saving = 1 - hybrid["core_seconds"] / static["core_seconds"]
    vertical = reactions_s(hybrid, "resize") + reactions_s(reports["vertical"], "resize")
    out = [
        ("hybrid >= 99.5% SLO attainment", hybrid["slo_attainment"] >= 0.995,
         f"{100 * hybrid['slo_attainment']:.2f}%"),
        (">= 15x fewer misses than horizontal at <= its core-seconds",
         fewer >= 15 and hybrid["core_seconds"] <= horizontal["core_seconds"],
         f"{horizontal['misses']} vs {hybrid['misses']} misses ({fewer:.1f}x), "
         f"{hybrid['core_seconds']:.0f} vs {horizontal['core_seconds']:.0f} core-s"),
        (">= 25% fewer core-seconds than static at equal or better attainment",
         saving >= 0.25 and hybrid["slo_attainment"] >= static["slo_attainment"],
         f"{100 * saving:.0f}% fewer; {100 * hybrid['slo_attainment']:.2f}% vs "
         f"{100 * static['slo_attainment']:.2f}%"),
        ("vertical reaction under 1 s", bool(vertical) and max(vertical) < 1.0,
         f"resize {spread(vertical)} s vs scale-out "
         f"{spread(reactions_s(hybrid, 'replicas') + reactions_s(horizontal, 'replicas'))} s"),
    ]
    return out


def main() -> int:
    """Run the four policies through ``sluice up``, then judge."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=ROOT.parent / "shared" / "traces")
    parser.add_argument("--mean-rate", type=float, default=60.0)
    parser.add_argument("--duration-s", type=float, default=180.0)
    parser.add_argument("--rows-per-request", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / (
        f"local-{time.strftime('%Y%m%d-%H%M%S')}"))
    parser.add_argument("--models", type=Path, default=ROOT / "examples" / "models")
    args = parser.parse_args()
    argv = [sys.executable, "-m", "sluice_local", "up", str(MANIFEST), "--profiles",
            str(PROFILE), "--model-root", str(args.models), "--trace",
            str(args.traces / WINDOW), "--mean-rate", str(args.mean_rate), "--duration-s",
            str(args.duration_s), "--rows-per-request", str(args.rows_per_request),
            "--policy", "all", "--out", str(args.out)]
    print("$ " + " ".join(argv), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with (args.out.parent / f"{args.out.name}.log").open("w") as log:
        status = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT,
                                check=False).returncode
    if status != 0:
        print(f"sluice up failed ({status}): see {args.out}.log", file=sys.stderr)
        return status
    reports = {p: json.loads((args.out / p / "report.json").read_text()) for p in POLICIES}
    print(f"window a, first {args.duration_s:g} s at mean {args.mean_rate:g} req/s x "
          f"{args.rows_per_request} rows, SLO {reports['hybrid']['slo_ms']:g} ms at "
          f"p{reports['hybrid']['percentile']:g}")
    print(table(reports))
    for text, met, figures in goals(reports):
        print(f"{'met    ' if met else 'not met'} {text}: {figures}")
    print(f"reports and plots: {args.out} (comparison.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
