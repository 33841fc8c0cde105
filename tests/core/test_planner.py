"""The planner: the budget DP against brute force, variants and the accuracy floor, fused
against isolated both ways, best effort, errors, and the plan's shape."""

from __future__ import annotations

import itertools
import json
import math
import random
from typing import Any

import pytest
from sluice_core.planner import Load, PlannerSettings, plan
from sluice_core.planner.frontier import StageSpace, steps_of
from sluice_core.planner.search import Point, VariantChoices, best_assignment, objective, pareto
from sluice_core.profiles import PipelineProfile, ProfileError, StageProfile
from sluice_core.spec import parse_pipeline

from tests.core.test_planner_model import synthetic_model

# Building pipelines and profiles ------------------------------------------------------------


def stage_manifest(name: str, *, variants: tuple[tuple[str, float], ...] = (),
                   accuracy: float = 1.0, cpu: tuple[str, str] = ("500m", "2"),
                   replicas: tuple[int, int] = (1, 4)) -> dict[str, Any]:
    return {
        "name": name, "model": {"uri": f"file:///models/{name}.onnx"}, "accuracy": accuracy,
        "batching": {"maxBatchSize": 8, "maxDelayMs": 2},
        "resources": {"cpu": {"initial": cpu[0], "min": cpu[0], "max": cpu[1]}},
        "replicas": {"min": replicas[0], "max": replicas[1]},
        "variants": [{"name": v, "model": {"uri": f"file:///models/{name}-{v}.onnx"},
                      "accuracy": a} for v, a in variants],
    }


def pipeline(stages: list[dict[str, Any]], *, slo_ms: int = 100, percentile: float = 99,
             composition: str = "isolated", min_accuracy: float | None = None):
    slo: dict[str, Any] = {"latencyMs": slo_ms, "percentile": percentile}
    if min_accuracy is not None:
        slo["minAccuracy"] = min_accuracy
    return parse_pipeline({"metadata": {"name": "p"}, "spec": {
        "slo": slo, "composition": composition, "stages": stages}})


def profile(models: dict[str, dict[str, Any]], hop_ms: tuple[float, float] = (5.0, 8.0),
            ) -> PipelineProfile:
    return PipelineProfile("p", {}, {
        stage: StageProfile(stage, dict(variants)) for stage, variants in models.items()
    }, hop_ms={1: hop_ms})


def three_stages(slo_ms: int = 100, composition: str = "isolated", hop=(5.0, 8.0)):
    spec = pipeline([stage_manifest(n) for n in ("a", "b", "c")], slo_ms=slo_ms,
                    composition=composition)
    prof = profile({n: {"default": synthetic_model(overhead_ms=1 + i, per_row_ms=0.05 * (i + 1))}
                    for i, n in enumerate(("a", "b", "c"))}, hop_ms=hop)
    return spec, prof


# The assignment DP against brute force --------------------------------------------------------

def brute_force(stages, budget: int, floor: float | None):
    best = None
    for variants in itertools.product(*stages):
        accuracy = math.prod(v.accuracy for v in variants)
        if floor is not None and accuracy < floor - 1e-12:
            continue
        for points in itertools.product(*(v.points for v in variants)):
            steps = sum(p.steps for p in points)
            if steps > budget:
                continue
            key = objective(math.log(accuracy), sum(p.cost for p in points), steps, floor)
            best = key if best is None or key < best else best
    return best


def random_stages(rng: random.Random):
    stages = []
    for s in range(rng.randint(1, 4)):
        variants = []
        for v in range(rng.randint(1, 3)):
            points = [Point(rng.randint(0, 12), round(rng.uniform(0.5, 10), 2))
                      for _ in range(rng.randint(0, 5))]
            variants.append(VariantChoices(f"s{s}v{v}", rng.choice([0.7, 0.8, 0.9, 0.95, 1.0]),
                                           pareto(points)))
        stages.append(variants)
    return stages


@pytest.mark.parametrize("seed", range(300))
def test_best_assignment_matches_brute_force(seed):
    rng = random.Random(seed)
    stages = random_stages(rng)
    budget = rng.randint(0, 30)
    floor = rng.choice([None, None, 0.5, 0.7, 0.85])
    expected = brute_force(stages, budget, floor)
    found = best_assignment(stages, budget, floor)
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert objective(math.log(found.accuracy), found.cost, found.steps, floor) == expected
    # The picks are what the solution says they are.
    assert sum(p.steps for _, p in found.picks) == found.steps <= budget
    assert sum(p.cost for _, p in found.picks) == pytest.approx(found.cost)
    assert math.prod(v.accuracy for v, _ in found.picks) == pytest.approx(found.accuracy)
    for (choices, point), variants in zip(found.picks, stages, strict=True):
        assert choices in variants
        assert point in choices.points


def test_pareto_keeps_only_undominated_points():
    points = [Point(3, 5.0), Point(1, 9.0), Point(3, 4.0), Point(5, 4.0), Point(6, 1.0),
              Point(2, 9.5)]
    assert pareto(points) == (Point(1, 9.0), Point(3, 4.0), Point(6, 1.0))


# The whole planner against brute force over its own options ------------------------------

def brute_force_plan(spec, prof, load: Load, settings: PlannerSettings):
    """Every (variant, cores, replicas) per stage, isolated, with the same latency model and
    the same rounding to budget steps; the best objective."""
    q = spec.slo_quantile
    hops = prof.hop_latency_ms(1, q) * len(spec.stages)
    budget_ms = spec.latency_ms - hops
    step_ms = budget_ms / settings.budget_steps
    per_stage = []
    for stage in spec.stages:
        space = StageSpace(stage, prof.stage(stage.name), load, q, settings)
        options = [space.option(i, c, n) for i in range(len(space.candidates))
                   for c in space.cores
                   for n in range(space.min_replicas, space.max_replicas + 1)]
        per_stage.append([o for o in options if o.estimate.stable])
    best = None
    for combo in itertools.product(*per_stage):
        steps = sum(steps_of(o.latency_ms, step_ms) for o in combo)
        if steps > settings.budget_steps:
            continue
        accuracy = math.prod(o.accuracy for o in combo)
        if spec.min_accuracy is not None and accuracy < spec.min_accuracy - 1e-12:
            continue
        key = objective(math.log(accuracy), sum(o.cost_cores for o in combo), 0,
                        spec.min_accuracy)[:2]
        best = key if best is None or key < best else best
    return best


@pytest.mark.parametrize("seed", range(12))
def test_plan_is_optimal_over_its_grid(seed):
    rng = random.Random(seed)
    names = ("a", "b")
    spec = pipeline(
        [stage_manifest(n, variants=(("lite", rng.choice([0.8, 0.9])),), cpu=("500m", "1500m"),
                        replicas=(1, 3)) for n in names],
        slo_ms=rng.choice([30, 50, 80]),
        min_accuracy=rng.choice([None, None, 0.75, 0.85]),
    )
    prof = profile({n: {
        "default": synthetic_model(overhead_ms=rng.uniform(1, 6), per_row_ms=rng.uniform(0.05, 1)),
        "lite": synthetic_model(overhead_ms=rng.uniform(0.5, 3), per_row_ms=rng.uniform(0.02, 0.5)),
    } for n in names}, hop_ms=(2.0, 3.0))
    load = Load(rng.choice([50, 400, 1500]), rng.choice([1.0, 4.0]))
    settings = PlannerSettings(budget_steps=40, cores_step=0.5)
    result = plan(spec, prof, load, settings=settings)
    expected = brute_force_plan(spec, prof, load, settings)
    if expected is None:
        assert not result.feasible
        return
    assert result.feasible
    key = objective(math.log(result.accuracy), result.cost_cores, 0, spec.min_accuracy)[:2]
    assert key == expected
    assert result.predicted_ms <= spec.latency_ms


def brute_force_fused(spec, prof, load: Load, settings: PlannerSettings):
    """Every replica count and (variant, cores) per stage at it, fused (no hops)."""
    q = spec.slo_quantile
    step_ms = spec.latency_ms / settings.budget_steps
    spaces = [StageSpace(stage, prof.stage(stage.name), load, q, settings)
              for stage in spec.stages]
    best = None
    for replicas in range(1, max(s.max_replicas for s in spec.stages) + 1):
        per_stage = [[o for o in (space.option(i, c, replicas)
                                  for i in range(len(space.candidates)) for c in space.cores)
                      if o.estimate.stable] for space in spaces]
        for combo in itertools.product(*per_stage):
            if sum(steps_of(o.latency_ms, step_ms) for o in combo) > settings.budget_steps:
                continue
            accuracy = math.prod(o.accuracy for o in combo)
            if spec.min_accuracy is not None and accuracy < spec.min_accuracy - 1e-12:
                continue
            key = objective(math.log(accuracy), sum(o.cost_cores for o in combo), 0,
                            spec.min_accuracy)[:2]
            best = key if best is None or key < best else best
    return best


@pytest.mark.parametrize("seed", range(12))
def test_fused_plan_is_optimal_over_its_grid(seed):
    rng = random.Random(100 + seed)
    names = ("a", "b", "c")
    spec = pipeline(
        [stage_manifest(n, variants=(("lite", rng.choice([0.8, 0.9])),), cpu=("500m", "1500m"),
                        replicas=(1, 4)) for n in names],
        slo_ms=rng.choice([20, 40, 80]), composition="fused",
        min_accuracy=rng.choice([None, None, 0.6, 0.75]),
    )
    prof = profile({n: {
        "default": synthetic_model(overhead_ms=rng.uniform(1, 6), per_row_ms=rng.uniform(0.05, 1)),
        "lite": synthetic_model(overhead_ms=rng.uniform(0.5, 3), per_row_ms=rng.uniform(0.02, 0.5)),
    } for n in names})
    load = Load(rng.choice([50, 400, 1500, 4000]))
    settings = PlannerSettings(budget_steps=40, cores_step=0.5)
    result = plan(spec, prof, load, settings=settings)
    expected = brute_force_fused(spec, prof, load, settings)
    if expected is None:
        assert not result.feasible
        return
    assert result.feasible
    assert result.composition == "fused"
    key = objective(math.log(result.accuracy), result.cost_cores, 0, spec.min_accuracy)[:2]
    assert key == expected


def test_finer_budget_steps_never_cost_more():
    spec, prof = three_stages(slo_ms=60)
    costs = [plan(spec, prof, Load(2000), settings=PlannerSettings(budget_steps=k)).cost_cores
             for k in (10, 50, 200, 1000)]
    assert costs == sorted(costs, reverse=True)


# Plans -----------------------------------------------------------------------------------------

def test_a_plan_meets_its_budget_and_adds_up():
    spec, prof = three_stages()
    result = plan(spec, prof, Load(800))
    assert result.feasible
    assert result.composition == "isolated"
    assert result.hops_ms == pytest.approx(3 * 8.0)
    assert sum(s.budget_ms for s in result.stages) == pytest.approx(100 - 24)
    for s in result.stages:
        assert s.predicted_ms <= s.budget_ms + 1e-9
        assert s.utilisation <= 0.9
        assert 0.5 <= s.cores <= 2
        assert 1 <= s.replicas <= 4
    assert result.predicted_ms == pytest.approx(sum(s.predicted_ms for s in result.stages) + 24)
    assert result.predicted_ms <= 100
    assert result.cost_cores == pytest.approx(sum(s.cores * s.replicas for s in result.stages))
    assert "cheapest allocation" in result.stages[0].reason
    assert "within the 100 ms SLO" in result.reason


def test_more_load_costs_more_and_no_load_costs_the_minimum():
    spec, prof = three_stages()
    idle = plan(spec, prof, Load(0))
    assert idle.feasible
    assert idle.cost_cores == pytest.approx(3 * 0.5)
    costs = [plan(spec, prof, Load(rate)).cost_cores for rate in (0, 500, 2000, 6000, 12000)]
    assert costs == sorted(costs)
    assert costs[-1] > costs[0]


def test_burstier_arrivals_never_cost_less():
    spec, prof = three_stages(slo_ms=50)
    costs = [plan(spec, prof, Load(8000, scv)).cost_cores for scv in (0.5, 1, 4, 16)]
    assert costs == sorted(costs)


def test_plans_are_deterministic():
    spec, prof = three_stages()
    assert plan(spec, prof, Load(3000)) == plan(spec, prof, Load(3000))


def test_overload_gives_a_best_effort_that_says_what_is_short():
    spec, prof = three_stages()
    result = plan(spec, prof, Load(200_000))
    assert not result.feasible
    assert all(s.cores == 2 and s.replicas == 4 for s in result.stages)
    assert "cannot keep up" in result.reason
    assert "raise its max replicas or cores" in result.reason
    doc = json.loads(json.dumps(result.to_json()))  # no infinities in the JSON
    assert doc["feasible"] is False
    assert doc["predicted_ms"] is None


def test_a_slo_below_the_hops_is_infeasible():
    spec, prof = three_stages(slo_ms=20, hop=(6.0, 9.0))
    result = plan(spec, prof, Load(10))
    assert not result.feasible
    assert "after 27.0 ms of hops" in result.reason


def test_json_round_trips_and_names_every_field():
    spec, prof = three_stages()
    doc = json.loads(json.dumps(plan(spec, prof, Load(500)).to_json()))
    assert doc["composition"] == "isolated"
    assert doc["slo"] == {"latency_ms": 100.0, "percentile": 99.0}
    assert doc["load"] == {"rate_rps": 500, "arrival_scv": 1.0}
    assert [s["stage"] for s in doc["stages"]] == ["a", "b", "c"]
    assert set(doc["stages"][0]) >= {"variant", "max_batch_size", "max_delay_ms", "cores",
                                     "replicas", "budget_ms", "predicted_ms", "utilisation",
                                     "accuracy", "reason", "cost_cores"}


def test_load_is_validated():
    with pytest.raises(ValueError, match="rate_rps"):
        Load(-1)
    with pytest.raises(ValueError, match="arrival_scv"):
        Load(1, math.inf)


# Variants and the accuracy floor ------------------------------------------------------------

def variant_pipeline(slo_ms: int, min_accuracy: float | None = None):
    """Stage x has a slow accurate default and a fast 'lite' (0.9); stage y has one model."""
    spec = pipeline([stage_manifest("x", variants=(("lite", 0.9),), accuracy=0.98),
                     stage_manifest("y")], slo_ms=slo_ms, min_accuracy=min_accuracy)
    prof = profile({
        "x": {"default": synthetic_model(overhead_ms=12, per_row_ms=1.0),
              "lite": synthetic_model(overhead_ms=2, per_row_ms=0.1)},
        "y": {"default": synthetic_model(overhead_ms=1, per_row_ms=0.05)},
    }, hop_ms=(1.0, 2.0))
    return spec, prof


def test_the_most_accurate_variant_when_it_fits():
    spec, prof = variant_pipeline(slo_ms=200)
    result = plan(spec, prof, Load(200))
    assert result.stage("x").variant == "default"
    assert result.accuracy == pytest.approx(0.98)
    assert "is the most accurate" in result.stage("x").reason


def test_a_less_accurate_variant_when_only_it_fits():
    spec, prof = variant_pipeline(slo_ms=15)
    result = plan(spec, prof, Load(200))
    assert result.feasible
    assert result.stage("x").variant == "lite"
    assert result.accuracy == pytest.approx(0.9)
    assert "does not fit the SLO" in result.stage("x").reason


def test_under_a_floor_the_cheapest_variant_that_keeps_it():
    loose = plan(*variant_pipeline(slo_ms=200, min_accuracy=0.85), Load(1500))
    assert loose.stage("x").variant == "lite"  # cheaper, and 0.9 >= 0.85
    assert "still meets the floor 0.85" in loose.stage("x").reason
    unconstrained = plan(*variant_pipeline(slo_ms=200), Load(1500))
    assert unconstrained.stage("x").variant == "default"
    assert loose.cost_cores < unconstrained.cost_cores
    strict = plan(*variant_pipeline(slo_ms=200, min_accuracy=0.95), Load(1500))
    assert strict.stage("x").variant == "default"


def test_a_floor_no_fast_enough_variant_meets_is_a_best_effort_above_the_floor():
    spec, prof = variant_pipeline(slo_ms=15, min_accuracy=0.95)
    result = plan(spec, prof, Load(200))
    assert not result.feasible
    assert result.stage("x").variant == "default"  # the floor still holds
    assert result.accuracy >= 0.95


def test_a_variant_without_a_profile_is_skipped_with_a_note():
    spec = pipeline([stage_manifest("x", variants=(("lite", 0.9), ("tiny", 0.8)))])
    prof = profile({"x": {"default": synthetic_model(), "lite": synthetic_model()}})
    result = plan(spec, prof, Load(100))
    assert result.feasible
    assert "no profile for variant(s) tiny: skipped" in result.stage("x").reason


def test_a_stage_without_any_profiled_variant_is_an_error():
    spec = pipeline([stage_manifest("x", variants=(("lite", 0.9),))])
    prof = profile({"x": {"other": synthetic_model()}})
    with pytest.raises(ProfileError, match="no profile for variant 'default'"):
        plan(spec, prof, Load(100))


def test_a_stage_missing_from_the_profile_is_an_error():
    spec = pipeline([stage_manifest("x"), stage_manifest("y")])
    prof = profile({"x": {"default": synthetic_model()}})
    with pytest.raises(ProfileError, match="no stage 'y'"):
        plan(spec, prof, Load(100))


# Fused or isolated ----------------------------------------------------------------------

def test_auto_fuses_when_the_hops_cost_more_than_scaling_apart_saves():
    # Similar stages and expensive hops: fusing saves three hops and costs no more.
    spec, prof = three_stages(slo_ms=60, composition="auto", hop=(12.0, 15.0))
    result = plan(spec, prof, Load(1500))
    assert result.composition == "fused"
    assert result.feasible
    assert result.hops_ms == 0
    assert len({s.replicas for s in result.stages}) == 1
    assert "fused saves 3 hops" in result.reason
    assert "isolated would predict" in result.reason or "isolated cannot meet" in result.reason


def test_auto_isolates_when_one_stage_needs_many_replicas_and_hops_are_cheap():
    # One heavy compute-bound stage needs four replicas at its most cores; fused would give
    # the light stages four replicas too.
    spec = pipeline([stage_manifest("heavy", cpu=("1", "2")),
                     stage_manifest("light1", cpu=("500m", "2")),
                     stage_manifest("light2", cpu=("500m", "2"))],
                    slo_ms=200, composition="auto")
    prof = profile({
        "heavy": {"default": synthetic_model(overhead_ms=0.5, per_row_ms=8.0, parallel=0.95)},
        "light1": {"default": synthetic_model(overhead_ms=0.5, per_row_ms=0.01)},
        "light2": {"default": synthetic_model(overhead_ms=0.5, per_row_ms=0.01)},
    }, hop_ms=(0.3, 0.5))
    result = plan(spec, prof, Load(380))
    assert result.feasible
    assert result.composition == "isolated"
    assert result.stage("heavy").replicas > result.stage("light1").replicas
    assert "fused would predict" in result.reason
    fused_only = plan(pipeline([stage_manifest(n, cpu=c) for n, c in (
        ("heavy", ("1", "2")), ("light1", ("500m", "2")), ("light2", ("500m", "2")))],
        slo_ms=200, composition="fused"), prof, Load(380))
    assert fused_only.composition == "fused"
    assert fused_only.cost_cores > result.cost_cores


def test_a_fused_spec_plans_fused_with_equal_replicas():
    spec, prof = three_stages(composition="fused")
    result = plan(spec, prof, Load(5000))
    assert result.composition == "fused"
    assert result.feasible
    assert len({s.replicas for s in result.stages}) == 1
    assert sum(s.budget_ms for s in result.stages) == pytest.approx(100)


def test_the_isolated_router_counts_when_asked():
    spec, prof = three_stages(composition="isolated")
    bare = plan(spec, prof, Load(500))
    counted = plan(spec, prof, Load(500), settings=PlannerSettings(router_cores=0.5))
    assert counted.cost_cores == pytest.approx(bare.cost_cores + 0.5)
    assert counted.to_json()["overhead_cores"] == 0.5


# The example pipeline --------------------------------------------------------------------

def test_the_example_dialogue_pipeline_plans(tmp_path):
    from pathlib import Path

    from sluice_core.spec import load_pipeline
    spec = load_pipeline(Path(__file__).resolve().parents[2] / "examples/pipelines/dialogue.yaml")
    prof = profile({s.name: {"default": synthetic_model(overhead_ms=0.4, per_row_ms=0.02)}
                    for s in spec.stages}, hop_ms=(6.0, 10.0))
    result = plan(spec, prof, Load(1000))
    assert result.feasible
    assert [s.stage for s in result.stages] == ["intent", "policy", "response"]
