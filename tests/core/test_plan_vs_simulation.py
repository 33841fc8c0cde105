"""The planner checked against the simulator: a plan it calls feasible, deployed as it is,
meets the SLO for the simulated requests at the load it was made for.

On the example pipeline's measured profile, under Poisson arrivals. (At high load the
planner is more optimistic than the simulator: docs/decisions.md says by how much.)
"""

import random
from pathlib import Path

import pytest
from sluice_core.planner import Load, plan
from sluice_core.profiles import load_profile
from sluice_core.scaling.static import StaticPolicy
from sluice_core.simulate import SimConfig, poisson_counts, simulate
from sluice_core.spec import load_pipeline

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = load_pipeline(ROOT / "examples" / "pipelines" / "dialogue.yaml")
PROFILE = load_profile(ROOT / "examples" / "profiles" / "dialogue.json")


@pytest.mark.parametrize("rate_rps", [50, 400])
def test_a_feasible_plan_meets_its_slo_in_the_simulator(rate_rps):
    planned = plan(PIPELINE, PROFILE, Load(rate_rps))
    assert planned.feasible
    result = simulate(PIPELINE, PROFILE, StaticPolicy(planned),
                      poisson_counts(rate_rps, 20, random.Random(3)), SimConfig(seed=3))
    assert result.slo_attainment >= PIPELINE.slo_quantile
    assert result.p99_ms <= PIPELINE.latency_ms


def test_an_infeasible_plan_is_said_to_be_so_and_misses_in_the_simulator():
    heavy = PROFILE.per_request(128)
    planned = plan(PIPELINE, heavy, Load(1500))
    assert not planned.feasible
    result = simulate(PIPELINE, heavy, StaticPolicy(planned),
                      poisson_counts(1500, 10, random.Random(3)), SimConfig(seed=3))
    assert result.slo_attainment < PIPELINE.slo_quantile
