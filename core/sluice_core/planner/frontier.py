"""One stage's choices: the grids the planner tries and the Pareto frontier they give.

An *option* is a (variant, cores per replica, replicas) with the batching that predicts
the lowest latency for it (batch size and delay do not change the cost, so for a given
allocation the best batching is simply the fastest). The frontier of a variant is, per
budget step, the cheapest option predicted to fit it.

The enumeration is exact for the grids yet evaluates few of their points. The predicted
latency never rises with more replicas or more cores (the planner does not try delays a
full batch would cut short, which is what makes this hold; see :mod:`.model`), so for one
cores value the budget steps an option takes form a non-increasing step function of the
replicas, and only the fewest replicas of each step can be on the frontier: a bisection
finds those steps' edges. Cores are tried from the most down, and replicas stop where an
option already on the frontier is as cheap and at least as fast as anything more replicas
could give (nothing beats a lone request's service time at those cores).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sluice_core.planner.model import (
    StageEstimate,
    best_estimate,
    cores_grid,
    curves_for,
)
from sluice_core.planner.search import Point, VariantChoices, pareto
from sluice_core.planner.service import service_curve
from sluice_core.planner.types import Load, PlannerSettings
from sluice_core.profiles import ModelProfile, StageProfile
from sluice_core.spec import Stage, Variant

#: Batch sizes tried (capped by what each variant's profile measured).
BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class Option:
    """One allocation of a stage and what the model predicts for it."""

    variant: str
    accuracy: float
    cores: float
    replicas: int
    estimate: StageEstimate

    @property
    def cost_cores(self) -> float:
        """Cores allocated: cores per replica times replicas."""
        return self.cores * self.replicas

    @property
    def latency_ms(self) -> float:
        """Predicted latency at the SLO's quantile."""
        return self.estimate.latency_ms


@dataclass(frozen=True)
class Candidate:
    """A variant the stage may run: the spec's figures and the measured profile."""

    variant: Variant
    model: ModelProfile
    batch_sizes: tuple[int, ...]


class StageSpace:
    """Everything the planner may choose for one stage under one load."""

    def __init__(self, stage: Stage, profile: StageProfile, load: Load, q: float,
                 settings: PlannerSettings) -> None:
        self.stage = stage
        self.load = load
        self.q = q
        self.settings = settings
        self.candidates: list[Candidate] = []
        #: Variants of the spec without a profile, skipped (others exist).
        self.skipped: list[str] = []
        for variant in stage.variants:
            model = profile.variants.get(variant.name)
            if model is None:
                self.skipped.append(variant.name)
                continue
            measured = max(model.batches_measured)
            sizes = {b for b in BATCH_SIZES if b <= measured} | {min(measured, 1024)}
            if stage.max_batch_size <= measured:
                sizes.add(stage.max_batch_size)
            self.candidates.append(Candidate(variant, model, tuple(sorted(sizes))))
        if not self.candidates:
            # Nothing to plan with: the profile's own error names what it has.
            profile.variant(stage.variants[0].name)
        low, high = stage.cpu.min_value, stage.cpu.max_value
        step = settings.cores_step
        # Widen the step (by whole multiples) until the range fits the points allowed.
        step *= max(1, math.ceil((high - low) / step / (settings.max_cores_points - 1) - 1e-9))
        self.cores = cores_grid(low, high, step)
        self.min_replicas = max(1, stage.min_replicas)
        self.max_replicas = max(self.min_replicas, stage.max_replicas)
        self._delays = tuple(sorted({*settings.delays_ms, stage.max_delay_ms}))
        self._options: dict[tuple[int, float, int], Option] = {}

    def option(self, index: int, cores: float, replicas: int) -> Option:
        """Candidate ``index`` on ``replicas`` replicas of ``cores`` cores, batching as
        predicts fastest."""
        key = (index, cores, replicas)
        found = self._options.get(key)
        if found is None:
            candidate = self.candidates[index]
            estimate = best_estimate(
                curves_for(candidate.model, cores, self.q), self.load.rate_rps, replicas,
                candidate.batch_sizes, self._delays, self.load.arrival_scv, self.q,
                self.settings.max_utilisation, filled_delays=False)
            found = Option(candidate.variant.name, candidate.variant.accuracy, cores,
                           replicas, estimate)
            self._options[key] = found
        return found

    def floor_ms(self, index: int, cores: float) -> float:
        """No allocation of ``cores`` cores per replica predicts less: a lone request's
        service time at the quantile."""
        return service_curve(self.candidates[index].model, cores).quantile_table(self.q)[0]

    def fewest_replicas(self, index: int, cores: float) -> int:
        """The fewest replicas (at least the stage's minimum) whose capacity at the max
        batch carries the load within the utilisation cap."""
        rate_per_ms = self.load.rate_rps / 1000.0
        if rate_per_ms <= 0:
            return self.min_replicas
        candidate = self.candidates[index]
        capacity = 0.0
        for executors, (curve, _) in curves_for(candidate.model, cores, self.q).items():
            for size in candidate.batch_sizes:
                rows = min(size, curve.max_batch)
                capacity = max(capacity, executors * rows / curve.at(curve.mean, rows))
        needed = math.ceil(rate_per_ms / (self.settings.max_utilisation * capacity) - 1e-9)
        return max(self.min_replicas, needed)

    def fastest(self, index: int, replicas: int | None = None) -> Option:
        """The lowest-latency option of candidate ``index`` within bounds: the most cores
        and ``replicas`` (default the most), judged without the utilisation cap (a best
        effort takes what it can get)."""
        count = self.max_replicas if replicas is None else replicas
        cores = self.cores[-1]
        candidate = self.candidates[index]
        estimate = best_estimate(
            curves_for(candidate.model, cores, self.q), self.load.rate_rps, count,
            candidate.batch_sizes, self._delays, self.load.arrival_scv, self.q)
        return Option(candidate.variant.name, candidate.variant.accuracy, cores, count,
                      estimate)

    def isolated_frontier(self, index: int, step_ms: float, steps: int) -> VariantChoices:
        """Candidate ``index``'s frontier when the stage scales on its own."""
        best: list[Point | None] = [None] * (steps + 1)
        cheapest = [math.inf] * (steps + 1)
        for cores in reversed(self.cores):
            floor_steps = steps_of(self.floor_ms(index, cores), step_ms)
            if floor_steps > steps:
                break  # fewer cores are slower still
            low = self.fewest_replicas(index, cores)
            high = self.max_replicas
            bound = min(cheapest[:floor_steps + 1])
            if math.isfinite(bound):
                # From this many replicas on, an option on the frontier is as cheap and at
                # least as fast as anything these cores can do.
                high = min(high, math.ceil((bound - 1e-9) / cores) - 1)
            if low > high:
                continue

            def steps_at(replicas: int, cores: float = cores) -> int:
                return steps_of(self.option(index, cores, replicas).latency_ms, step_ms)

            for replicas in _edges(steps_at, low, high):
                option = self.option(index, cores, replicas)
                j = steps_of(option.latency_ms, step_ms)
                if j <= steps:
                    _keep(best, cheapest, j, Point(j, cores * replicas, option))
        return self._choices(index, best)

    def fused_frontier(self, index: int, replicas: int, step_ms: float,
                       steps: int) -> VariantChoices:
        """Candidate ``index``'s frontier when every stage runs ``replicas`` replicas
        (fused: the stage's share of each replica's cores varies)."""
        best: list[Point | None] = [None] * (steps + 1)
        cheapest = [math.inf] * (steps + 1)
        grid = self.cores

        def steps_at(i: int) -> int:
            return steps_of(self.option(index, grid[i], replicas).latency_ms, step_ms)

        for i in _edges(steps_at, 0, len(grid) - 1):
            option = self.option(index, grid[i], replicas)
            j = steps_of(option.latency_ms, step_ms)
            if j <= steps:
                _keep(best, cheapest, j, Point(j, grid[i] * replicas, option))
        return self._choices(index, best)

    def fewest_fused_replicas(self) -> int:
        """The fewest replicas at which some variant of this stage keeps up at its most
        cores (fused replicas below it cannot serve the load)."""
        return min(self.fewest_replicas(i, self.cores[-1]) for i in range(len(self.candidates)))

    def _choices(self, index: int, best: Sequence[Point | None]) -> VariantChoices:
        candidate = self.candidates[index]
        return VariantChoices(index, candidate.variant.accuracy,
                              pareto([p for p in best if p is not None]))


def _edges(steps_at: Callable[[int], int], low: int, high: int) -> list[int]:
    """For a non-increasing ``steps_at`` on ``[low, high]``: ``low`` and every ``n`` where
    ``steps_at(n) < steps_at(n - 1)``, found by bisection (evaluations grow with the
    number of edges times log of the range, not with the range)."""
    edges = [low]
    if high <= low:
        return edges
    pending = [(low, high, steps_at(low), steps_at(high))]
    while pending:
        lo, hi, at_lo, at_hi = pending.pop()
        if at_lo == at_hi:
            continue
        if hi == lo + 1:
            edges.append(hi)
            continue
        mid = (lo + hi) // 2
        at_mid = steps_at(mid)
        pending.append((mid, hi, at_mid, at_hi))
        pending.append((lo, mid, at_lo, at_mid))
    return sorted(edges)


def _keep(best: list[Point | None], cheapest: list[float], j: int, point: Point) -> None:
    """Record ``point`` at step ``j`` if it is cheaper (or as cheap and faster)."""
    current = best[j]
    if current is None or point.cost < current.cost - 1e-9 or (
            point.cost <= current.cost + 1e-9
            and point.option.latency_ms < current.option.latency_ms):
        best[j] = point
        cheapest[j] = point.cost


def steps_of(latency_ms: float, step_ms: float) -> int:
    """Budget steps a latency takes, rounded up (a hair of float noise forgiven)."""
    if not math.isfinite(latency_ms):
        return 2**31
    return max(0, math.ceil(latency_ms / step_ms - 1e-9))
