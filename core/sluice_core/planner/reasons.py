"""The planner's reasons: one sentence per choice, with the figures behind it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sluice_core.planner.frontier import Option, StageSpace
from sluice_core.planner.types import Load
from sluice_core.spec import FUSED, ISOLATED, Pipeline

if TYPE_CHECKING:
    from sluice_core.planner.compose import Outcome


def stage_reason(pipeline: Pipeline, space: StageSpace, option: Option, budget_ms: float,
                 composition: str, feasible: bool, chosen: Sequence[Option]) -> str:
    """Why this stage runs what it runs."""
    est = option.estimate
    pct = f"p{pipeline.percentile:g}"
    replicas = _count(option.replicas, "replica")
    if not feasible:
        head = f"best effort: the most within bounds, {option.cores:g} cores x {replicas}"
        if not est.stable:
            return (f"{head}, cannot keep up: the load needs {est.utilisation:.0%} of its "
                    f"capacity{_variant_note(pipeline, space, option, chosen, feasible)}")
    elif composition == FUSED:
        head = (f"{option.cores:g} cores of each fused replica ({replicas}) is the smallest "
                f"share predicted to meet its {budget_ms:.1f} ms budget")
    else:
        head = (f"{option.cores:g} cores x {replicas} is the cheapest allocation predicted "
                f"to meet its {budget_ms:.1f} ms budget")
    causes = {"batch formation": est.formation_ms, "the running batch": est.residual_ms,
              "queueing behind full batches": est.queueing_ms}
    cause, wait = max(causes.items(), key=lambda item: item[1])
    waiting = f"{wait:.1f} ms waiting for {cause} + " if wait > 0.05 else ""
    figures = (f"{pct} {option.latency_ms:.1f} ms = {waiting}{est.service_ms:.1f} ms "
               f"compute at batches of ~{est.batch_rows:.1f} (max {est.max_batch_size}), "
               f"{est.utilisation:.0%} of capacity")
    return f"{head} ({figures}){_variant_note(pipeline, space, option, chosen, feasible)}"


def _variant_note(pipeline: Pipeline, space: StageSpace, option: Option,
                  chosen: Sequence[Option], feasible: bool) -> str:
    notes = []
    if len(space.candidates) > 1:
        best = max(space.candidates, key=lambda c: c.variant.accuracy)
        name = f"variant {option.variant} (accuracy {option.accuracy:g})"
        if option.accuracy >= best.variant.accuracy:
            notes.append(f"{name} is the most accurate")
        elif not feasible:
            notes.append(f"{name} is the fastest combination with the others")
        elif pipeline.min_accuracy is not None:
            total = math.prod(o.accuracy for o in chosen)
            notes.append(f"{name} is cheaper than {best.variant.name} "
                         f"({best.variant.accuracy:g}) and end-to-end accuracy "
                         f"{total:.4g} still meets the floor {pipeline.min_accuracy:g}")
        else:
            notes.append(f"{name}: the more accurate {best.variant.name} "
                         f"({best.variant.accuracy:g}) does not fit the SLO with the other "
                         "stages at this load")
    if space.skipped:
        notes.append(f"no profile for variant(s) {', '.join(space.skipped)}: skipped")
    return "".join(f"; {note}" for note in notes)


def plan_reason(pipeline: Pipeline, spaces: Sequence[StageSpace], load: Load,
                chosen: Outcome, other: Outcome | None) -> str:
    """Why the plan as a whole: the composition, the figures, and what is short."""
    pct = f"p{pipeline.percentile:g}"
    at = f"at {load.rate_rps:g} req/s (arrival SCV {load.arrival_scv:g})"
    if chosen.feasible:
        hops = (f" ({chosen.hops_ms:.1f} ms of it in {len(spaces)} hops)"
                if chosen.composition == ISOLATED else "")
        text = (f"{chosen.composition} {at}: predicted {pct} {chosen.predicted_ms:.1f} ms "
                f"within the {pipeline.latency_ms} ms SLO{hops}, {chosen.cost:g} cores, "
                f"accuracy {chosen.accuracy:.4g}")
    else:
        text = (f"no allocation within bounds meets the {pipeline.latency_ms} ms {pct} SLO "
                f"{at}: best effort ({chosen.composition}) predicts "
                f"{_ms(chosen.predicted_ms)}; {_shortfall(pipeline, spaces, chosen)}")
    if other is not None:
        text += "; " + _comparison(spaces, chosen, other)
    return text


def _comparison(spaces: Sequence[StageSpace], chosen: Outcome, other: Outcome) -> str:
    if not other.feasible:
        return (f"{other.composition} cannot meet the SLO (best effort "
                f"{_ms(other.predicted_ms)})")
    text = (f"{other.composition} would predict {other.predicted_ms:.1f} ms at "
            f"{other.cost:g} cores, accuracy {other.accuracy:.4g}")
    if chosen.composition == FUSED and chosen.feasible:
        cold = sum(_cold(spaces, o) for o in chosen.options)
        text += (f"; fused saves {len(spaces)} hops ({other.hops_ms:.1f} ms) and starts one "
                 f"pod ({cold:.2f} s cold start) instead of one per stage")
    elif chosen.composition == ISOLATED and chosen.feasible:
        text += "; isolated lets the stages scale apart, which earns back the hops here"
    return text


def _cold(spaces: Sequence[StageSpace], option: Option) -> float:
    """Cold start of the model an option runs."""
    for space in spaces:
        for candidate in space.candidates:
            if candidate.variant.name == option.variant:
                return candidate.model.cold_start_s
    return 0.0


def _shortfall(pipeline: Pipeline, spaces: Sequence[StageSpace], chosen: Outcome) -> str:
    overloaded = [
        f"{space.stage.name} cannot keep up even at {option.cores:g} cores x "
        f"{_count(option.replicas, 'replica')} ({option.estimate.utilisation:.0%} of its "
        "capacity): raise its max replicas or cores"
        for space, option in zip(spaces, chosen.options, strict=True)
        if not option.estimate.stable
    ]
    if overloaded:
        return "; ".join(overloaded)
    total = sum(o.latency_ms for o in chosen.options)
    slowest = max(zip(spaces, chosen.options, strict=True), key=lambda so: so[1].latency_ms)
    text = (f"the stages' fastest latencies add up to {total:.1f} ms against a budget of "
            f"{chosen.budget_ms:.1f} ms")
    if chosen.hops_ms:
        text += f" after {chosen.hops_ms:.1f} ms of hops"
    return text + (f"; the slowest is {slowest[0].stage.name} "
                   f"({slowest[1].latency_ms:.1f} ms)")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if math.isfinite(value) else "no finite latency"
