"""The workload options ``sluice simulate`` and ``sluice up`` share, read the same way, so a
run and its simulation replay the very same per-second counts."""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from sluice_core.arrivals import read_trace
from sluice_core.simulate import SimulationError, mmpp_counts, poisson_counts, trace_counts

from sluice_local.cli import CommandError


def add_workload_arguments(parser: argparse.ArgumentParser, default_rate_duration_s: float,
                           verb: str) -> None:
    """``--trace FILE [--mean-rate R] | --rate R [--mmpp]``, ``--duration-s S``."""
    load = parser.add_argument_group("workload (one of --trace and --rate)")
    load.add_argument("--trace", type=Path, metavar="FILE",
                      help="requests per second, one integer per line; Poisson within "
                           "each second (absent, with --mean-rate: a synthetic bursty "
                           "stand-in)")
    load.add_argument("--mean-rate", type=float, metavar="R",
                      help="scale the trace to a mean of R requests/s")
    load.add_argument("--rate", type=float, metavar="R",
                      help="Poisson arrivals at R requests/s")
    load.add_argument("--mmpp", action="store_true",
                      help="with --rate: a two-state MMPP of mean R (0.4x and 1.6x, 5 s "
                           "dwell) instead of Poisson")
    parser.add_argument("--duration-s", type=float, metavar="S",
                        help=f"seconds to {verb} (default: the whole trace, or "
                             f"{default_rate_duration_s:g} s with --rate)")


def workload_counts(args: argparse.Namespace, default_rate_duration_s: float) -> list[int]:
    """Requests per second the options ask for (seeded by ``args.seed``)."""
    if (args.trace is None) == (args.rate is None):
        raise CommandError("give the workload as --trace FILE or --rate R (one of them)")
    if args.mean_rate is not None and args.trace is None:
        raise CommandError("--mean-rate scales a trace: use it with --trace")
    if args.mmpp and args.rate is None:
        raise CommandError("--mmpp shapes --rate: use it with --rate")
    if args.duration_s is not None and not args.duration_s >= 1:
        raise CommandError(f"--duration-s must be at least 1, got {args.duration_s:g}")
    rng = random.Random(f"sluice-workload-{args.seed}")
    try:
        if args.trace is not None:
            return _trace(args, rng, default_rate_duration_s)
        duration_s = args.duration_s or default_rate_duration_s
        if args.mmpp:
            return mmpp_counts(args.rate, duration_s, rng)
        return poisson_counts(args.rate, duration_s, rng)
    except SimulationError as exc:
        raise CommandError(str(exc)) from None


def _trace(args: argparse.Namespace, rng: random.Random,
           default_rate_duration_s: float) -> list[int]:
    if not args.trace.exists() and args.mean_rate is not None:
        print(f"trace {args.trace} not found: a synthetic bursty MMPP at "
              f"{args.mean_rate:g} requests/s stands in for it", file=sys.stderr)
        return mmpp_counts(args.mean_rate, args.duration_s or default_rate_duration_s, rng)
    try:
        trace = read_trace(args.trace)
    except OSError as exc:
        raise CommandError(f"cannot read trace {args.trace}: {exc.strerror or exc} (with "
                           "--mean-rate R a synthetic bursty stand-in is used)") from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return trace_counts(trace, rng, args.mean_rate, args.duration_s)
