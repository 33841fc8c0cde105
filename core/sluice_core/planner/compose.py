"""The planner: per stage the cheapest allocation meeting the SLO, isolated or fused.

``plan(pipeline, profile, load)`` builds each stage's options (:mod:`.frontier`), chooses
one per stage with the budget DP (:mod:`.search`) and, for ``composition: auto``, plans
both compositions and keeps the better by the same objective (accuracy, then cores, then
latency):

- **isolated**: one service per stage, each scaling on its own; a request crosses one
  hop per stage (router to the first, then between stages), which comes off the budget;
- **fused**: one service running every stage, so replicas are equal across stages and
  each replica's cores are shared by the stages (the planner chooses the shares); no hops
  and one cold start instead of one per stage.

When nothing meets the SLO the plan is the best effort: per stage the fastest allocation
within bounds, with the variants (meeting any accuracy floor) that predict the lowest
end-to-end latency, and a reason that says what is short.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sluice_core.planner import reasons
from sluice_core.planner.frontier import Option, StageSpace, steps_of
from sluice_core.planner.search import (
    Point,
    Solution,
    VariantChoices,
    best_assignment,
    objective,
)
from sluice_core.planner.types import Load, Plan, PlannerSettings, StagePlan
from sluice_core.profiles import PipelineProfile
from sluice_core.spec import AUTO, FUSED, ISOLATED, Pipeline


@dataclass(frozen=True)
class Outcome:
    """One composition's answer before it becomes a :class:`Plan`."""

    composition: str
    options: tuple[Option, ...]
    budget_ms: float
    hops_ms: float
    overhead_cores: float
    feasible: bool

    @property
    def accuracy(self) -> float:
        """End-to-end accuracy: the product of the stages'."""
        return math.prod(o.accuracy for o in self.options)

    @property
    def cost(self) -> float:
        """Cores allocated, overheads included."""
        return sum(o.cost_cores for o in self.options) + self.overhead_cores

    @property
    def predicted_ms(self) -> float:
        """End-to-end latency at the SLO's quantile: stages and hops summed."""
        return sum(o.latency_ms for o in self.options) + self.hops_ms


def plan(pipeline: Pipeline, profile: PipelineProfile, load: Load, *,
         settings: PlannerSettings | None = None) -> Plan:
    """The cheapest plan meeting the pipeline's SLO under ``load`` (see the module).

    Pure and deterministic. Raises ProfileError when the profile lacks a stage, or every
    variant of a stage.
    """
    settings = settings or PlannerSettings()
    q = pipeline.slo_quantile
    spaces = [StageSpace(stage, profile.stage(stage.name), load, q, settings)
              for stage in pipeline.stages]
    hop_ms = profile.hop_latency_ms(1, q)
    floor = pipeline.min_accuracy
    outcomes: dict[str, Outcome] = {}
    if pipeline.composition in (ISOLATED, AUTO):
        outcomes[ISOLATED] = _isolated(pipeline, spaces, hop_ms, settings)
    if pipeline.composition in (FUSED, AUTO):
        outcomes[FUSED] = _fused(pipeline, spaces, settings)
    chosen = min(outcomes.values(), key=lambda o: _rank(o, floor))
    other = next((o for o in outcomes.values() if o is not chosen), None)
    return _to_plan(pipeline, spaces, load, chosen, other)


def _rank(outcome: Outcome, floor: float | None) -> tuple[float, ...]:
    """Feasible before best effort; then the objective; then the lower latency (best
    efforts: the lower latency, then accuracy, then cost)."""
    if not outcome.feasible:
        return (1, outcome.predicted_ms, -outcome.accuracy, outcome.cost)
    key = objective(math.log(outcome.accuracy) if outcome.accuracy > 0 else -math.inf,
                    outcome.cost, 0, floor)
    return (0, *key[:2], outcome.predicted_ms)


def _steps(settings: PlannerSettings, budget_ms: float) -> tuple[float, int]:
    """The budget's step (ms) and the number of steps."""
    steps = settings.budget_steps
    return budget_ms / steps, steps


def _isolated(pipeline: Pipeline, spaces: Sequence[StageSpace], hop_ms: float,
              settings: PlannerSettings) -> Outcome:
    hops_ms = hop_ms * len(spaces)
    budget_ms = pipeline.latency_ms - hops_ms
    overhead = settings.router_cores
    if budget_ms > 0:
        step_ms, steps = _steps(settings, budget_ms)
        frontiers = [[space.isolated_frontier(i, step_ms, steps)
                      for i in range(len(space.candidates))] for space in spaces]
        solution = best_assignment(frontiers, steps, pipeline.min_accuracy)
        if solution is not None:
            return Outcome(ISOLATED, _options(solution), budget_ms, hops_ms, overhead, True)
    return Outcome(ISOLATED, _fastest(pipeline, spaces, None), budget_ms, hops_ms, overhead,
                   False)


def _fused(pipeline: Pipeline, spaces: Sequence[StageSpace],
           settings: PlannerSettings) -> Outcome:
    budget_ms = float(pipeline.latency_ms)
    step_ms, steps = _steps(settings, budget_ms)
    floor = pipeline.min_accuracy
    # The fused service's replica bounds, as the operator renders them.
    low = max(1, *(s.stage.min_replicas for s in spaces))
    high = max(low, *(s.stage.max_replicas for s in spaces))
    # Fewer replicas than some stage needs at its most cores cannot carry the load.
    start = max(low, *(space.fewest_fused_replicas() for space in spaces))
    least_cores = sum(min(space.cores) for space in spaces)
    best: Solution | None = None
    best_key: tuple[float, float, int] | None = None
    # The most accurate any replica count could reach (lone-request latencies at the
    # most cores); lowered once more replicas provably cannot help.
    reachable = _most_accurate(spaces, step_ms, steps, floor)
    for replicas in range(start, high + 1):
        if reachable is None:
            break
        if best_key is not None and best is not None:
            bound = objective(math.log(reachable), replicas * least_cores, 0, floor)
            if bound[:2] >= best_key[:2]:
                break
        frontiers = [[space.fused_frontier(i, replicas, step_ms, steps)
                      for i in range(len(space.candidates))] for space in spaces]
        solution = best_assignment(frontiers, steps, floor)
        if solution is not None:
            ranked = objective(math.log(solution.accuracy), solution.cost, 0, floor)
            key = (ranked[0], ranked[1], solution.steps)
            if best_key is None or key < best_key:
                best, best_key = solution, key
        if _saturated(spaces, replicas, step_ms):
            # At the most cores every variant is already as fast as a lone request, so
            # more replicas can make no further variant fit: the most accurate choice
            # here bounds every larger count.
            most = solution if floor is None else best_assignment(frontiers, steps, None)
            if most is None or (floor is not None and most.accuracy < floor - 1e-12):
                break
            reachable = min(reachable, most.accuracy)
    if best is not None:
        return Outcome(FUSED, _options(best), budget_ms, 0.0, 0.0, True)
    return Outcome(FUSED, _fastest(pipeline, spaces, high), budget_ms, 0.0, 0.0, False)


def _most_accurate(spaces: Sequence[StageSpace], step_ms: float, steps: int,
                   floor: float | None) -> float | None:
    """The highest accuracy (at or above the floor) whose variants' lone-request
    latencies at the most cores fit the budget: no replica count reaches higher."""
    stages = []
    for space in spaces:
        variants = []
        for i, candidate in enumerate(space.candidates):
            j = steps_of(space.floor_ms(i, space.cores[-1]), step_ms)
            points = (Point(j, 0.0),) if j <= steps else ()
            variants.append(VariantChoices(i, candidate.variant.accuracy, points))
        stages.append(variants)
    solution = best_assignment(stages, steps, None)
    if solution is None or (floor is not None and solution.accuracy < floor - 1e-12):
        return None
    return solution.accuracy


def _saturated(spaces: Sequence[StageSpace], replicas: int, step_ms: float) -> bool:
    """Whether, at ``replicas``, every variant at its most cores is already within a step
    of a lone request's latency (more replicas cannot make it faster)."""
    for space in spaces:
        cores = space.cores[-1]
        for i in range(len(space.candidates)):
            option = space.option(i, cores, replicas)
            if steps_of(option.latency_ms, step_ms) > steps_of(space.floor_ms(i, cores),
                                                                step_ms):
                return False
    return True


def _options(solution: Solution) -> tuple[Option, ...]:
    return tuple(point.option for _, point in solution.picks)


def _fastest(pipeline: Pipeline, spaces: Sequence[StageSpace],
             replicas: int | None) -> tuple[Option, ...]:
    """Per stage the fastest option within bounds, with the variants (meeting the floor)
    that minimise the summed latency; unstable stages compare by utilisation."""
    per_stage: list[list[Option]] = []
    for space in spaces:
        options = []
        for i in range(len(space.candidates)):
            options.append(space.fastest(i, replicas))
        per_stage.append(options)
    floor = pipeline.min_accuracy or 0.0
    best: tuple[tuple[float, ...], tuple[Option, ...]] | None = None

    def score(option: Option) -> float:
        # Unstable beats nothing; among unstable, less overloaded is closer to serving.
        return option.latency_ms if option.estimate.stable else 1e12 * (
            1 + option.estimate.utilisation)

    def visit(s: int, chosen: list[Option], accuracy: float, total: float) -> None:
        nonlocal best
        if s == len(per_stage):
            key = (total, -accuracy, sum(o.cost_cores for o in chosen))
            if best is None or key < best[0]:
                best = (key, tuple(chosen))
            return
        for option in per_stage[s]:
            if accuracy * option.accuracy * _max_rest(per_stage, s + 1) < floor - 1e-12:
                continue
            chosen.append(option)
            visit(s + 1, chosen, accuracy * option.accuracy, total + score(option))
            chosen.pop()

    visit(0, [], 1.0, 0.0)
    if best is None:  # the spec guarantees the floor is reachable; keep the defaults
        return tuple(options[0] for options in per_stage)
    return best[1]


def _max_rest(per_stage: Sequence[Sequence[Option]], start: int) -> float:
    return math.prod(max(o.accuracy for o in options) for options in per_stage[start:])


def _to_plan(pipeline: Pipeline, spaces: Sequence[StageSpace], load: Load, chosen: Outcome,
             other: Outcome | None) -> Plan:
    budgets = _shares(chosen)
    stages = []
    for space, option, budget in zip(spaces, chosen.options, budgets, strict=True):
        est = option.estimate
        candidate = next(c for c in space.candidates if c.variant.name == option.variant)
        stages.append(StagePlan(
            stage=space.stage.name, variant=option.variant,
            max_batch_size=est.max_batch_size, max_delay_ms=est.max_delay_ms,
            cores=option.cores, replicas=option.replicas, budget_ms=budget,
            predicted_ms=option.latency_ms, utilisation=est.utilisation,
            accuracy=option.accuracy,
            reason=reasons.stage_reason(pipeline, space, option, budget, chosen.composition,
                                        chosen.feasible, chosen.options),
            executors=est.executors, batch_rows=est.batch_rows,
            cold_start_s=candidate.model.cold_start_s,
        ))
    return Plan(
        pipeline=pipeline.name, composition=chosen.composition, load=load,
        stages=tuple(stages), predicted_ms=chosen.predicted_ms, accuracy=chosen.accuracy,
        feasible=chosen.feasible,
        reason=reasons.plan_reason(pipeline, spaces, load, chosen, other),
        slo_ms=float(pipeline.latency_ms), percentile=pipeline.percentile,
        hops_ms=chosen.hops_ms, overhead_cores=chosen.overhead_cores,
    )


def _shares(outcome: Outcome) -> list[float]:
    """Each stage's share of the budget: its prediction plus the slack in proportion."""
    predicted = [o.latency_ms for o in outcome.options]
    total = sum(predicted)
    if not math.isfinite(total) or total <= 0:
        even = max(outcome.budget_ms, 0.0) / len(predicted)
        return [even] * len(predicted)
    slack = max(0.0, outcome.budget_ms - total)
    return [p + slack * p / total for p in predicted]
