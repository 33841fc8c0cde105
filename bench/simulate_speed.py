"""How fast ``sluice simulate`` runs: simulated requests per wall-clock second.

Two runs of the example dialogue pipeline (three stages, isolated):

1. a 10-minute window of Poisson arrivals at ``--rate``;
2. the 24-hour shape: a diurnal series (mean ``--rate``, +-50 % over the day, Poisson within
   each second). By default the busiest ``--day-sample-s`` seconds of it (around the daily
   peak) are simulated and the whole day is extrapolated from their pace; ``--full-day``
   runs all 86,400 seconds.

Service times come from ``--profiles`` or, without it, a synthetic profile shaped like the
measured MLPs (overhead-bound: batching is what makes them cheap). One core, pure Python:

    .venv/bin/python bench/simulate_speed.py [--rate 1000] [--policy static] [--full-day]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

from sluice_core.arrivals import poisson_count
from sluice_core.profiles import (
    LatencyPoint,
    ModelProfile,
    PipelineProfile,
    StageProfile,
    load_profile,
)
from sluice_core.scaling import registry
from sluice_core.simulate import SimConfig, poisson_counts, simulate
from sluice_core.spec import Pipeline, load_pipeline

ROOT = Path(__file__).resolve().parents[1]
DAY_S = 86_400


def synthetic_profile(pipeline: Pipeline) -> PipelineProfile:
    """Per stage: a fixed cost plus a small cost per row (ms), faster with a second core."""
    shapes = {0: (0.35, 0.02), 1: (0.35, 0.02)}
    stages = {}
    for index, stage in enumerate(pipeline.stages):
        base, per_row = shapes.get(index, (1.0, 0.25))
        points = []
        for cores in (0.5, 1.0, 2.0):
            speed = cores if cores <= 1 else 1.7
            for batch in (1, 2, 4, 8, 16, 32):
                ms = (base + per_row * batch) / speed
                points.append(LatencyPoint(cores, batch, max(1, int(cores)), 200, 0.85 * ms,
                                           ms, 1.25 * ms, 1.6 * ms, 2.5 * ms))
        model = ModelProfile(f"{stage.name}.onnx", None, 1.0, 0.3, 0.1, 80.0, tuple(points))
        stages[stage.name] = StageProfile(stage.name, {"default": model})
    return PipelineProfile(pipeline.name, {"synthetic": True}, stages)


def diurnal_counts(mean_rps: float, rng: random.Random) -> list[int]:
    """A day of per-second counts: a sinusoid peaking mid-afternoon, Poisson each second."""
    return [poisson_count(mean_rps * (1 + 0.5 * math.sin(2 * math.pi * (s / DAY_S - 0.375))),
                          rng) for s in range(DAY_S)]


def run(pipeline: Pipeline, profile: PipelineProfile, name: str, counts: list[int],
        seed: int) -> tuple[int, float, float, float]:
    """Requests, wall and CPU seconds, and SLO attainment of one simulation (CPU time tells
    what the simulator costs when other processes share the cores)."""
    context = registry.PolicyContext(pipeline, profile, sum(counts) / len(counts),
                                     float(max(counts)), counts)
    policy = registry.make_policy(name, context)
    wall, cpu = time.perf_counter(), time.process_time()
    result = simulate(pipeline, profile, policy, counts, SimConfig(seed=seed))
    return (result.requests, time.perf_counter() - wall, time.process_time() - cpu,
            result.slo_attainment or 0.0)


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", type=Path,
                        default=ROOT / "examples" / "pipelines" / "dialogue.yaml")
    parser.add_argument("--profiles", type=Path, help="a profile file (default: synthetic)")
    parser.add_argument("--rate", type=float, default=1000.0, help="mean requests/s")
    parser.add_argument("--policy", default="static", choices=registry.POLICY_NAMES)
    parser.add_argument("--day-sample-s", type=int, default=3600)
    parser.add_argument("--full-day", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    pipeline = load_pipeline(args.pipeline)
    profile = load_profile(args.profiles) if args.profiles else synthetic_profile(pipeline)
    rng = random.Random(args.seed)

    window = poisson_counts(args.rate, 600, rng)
    requests, wall_s, cpu_s, slo = run(pipeline, profile, args.policy, window, args.seed)
    print(f"10-minute window, {args.rate:g}/s Poisson, {args.policy}: {requests} requests in "
          f"{wall_s:.2f} s wall ({cpu_s:.2f} s CPU) = {requests / wall_s:,.0f} requests per "
          f"wall second, {requests / cpu_s:,.0f} per CPU second (SLO met {slo:.2%})")

    day = diurnal_counts(args.rate, rng)
    if args.full_day:
        requests, wall_s, cpu_s, slo = run(pipeline, profile, args.policy, day, args.seed)
        print(f"24 hours, diurnal mean {args.rate:g}/s: {requests} requests in {wall_s:.1f} s "
              f"wall ({cpu_s:.1f} s CPU) = {requests / wall_s:,.0f} requests per wall second "
              f"(SLO met {slo:.2%})")
    else:
        # The sinusoid peaks at 0.625 of the day: the sample is centred there.
        start = int(DAY_S * 0.625) - args.day_sample_s // 2
        sample = day[start:start + args.day_sample_s]
        requests, wall_s, cpu_s, slo = run(pipeline, profile, args.policy, sample, args.seed)
        pace = requests / wall_s
        print(f"24-hour shape, busiest {args.day_sample_s} s (around the peak, "
              f"{sum(sample) / len(sample):,.0f}/s): {requests} requests in {wall_s:.1f} s "
              f"wall ({cpu_s:.1f} s CPU) = {pace:,.0f} requests per wall second; the whole "
              f"day ({sum(day):,} requests) at that pace: about {sum(day) / pace / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
