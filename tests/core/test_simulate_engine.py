"""The simulator's requests: conservation, latency by hand, batching, overload, deadlines,
observations and determinism."""

from __future__ import annotations

import itertools
import random

import pytest
from sluice_core.scaling.types import Allocation, Resize, SetBatching, SetReplicas
from sluice_core.simulate import SimConfig, SimulationError, poisson_counts, simulate
from sluice_core.simulate.flow import Flow
from sluice_core.simulate.results import bucket_quantile_ms

from tests.core.test_simulate_support import (
    Scripted,
    compute_bound_ms,
    constant_ms,
    fixed,
    make_pipeline,
    make_profile,
    model,
)


def _conserved(result, counts):
    assert result.requests == sum(counts)
    assert result.ok + result.late + result.rejected == result.requests
    assert result.misses == result.late + result.rejected
    stages = result.per_stage
    assert stages[0].arrivals == result.requests
    for before, after in itertools.pairwise(stages):
        assert after.arrivals == before.answered
    for stage in stages:
        assert stage.answered + stage.refused == stage.arrivals
    assert stages[-1].answered == result.ok + result.late


@pytest.mark.parametrize(("rate", "replicas", "cores", "spread", "hop"), [
    (50, 1, 1.0, 0.0, (0.0, 0.0)),
    (400, 1, 1.0, 0.5, (3.0, 8.0)),
    (3000, 1, 0.5, 0.5, (3.0, 8.0)),  # overloaded: most refused
    (1500, 2, 2.0, 0.3, (1.0, 2.0)),
])
def test_every_request_ends_exactly_once(rate, replicas, cores, spread, hop):
    pipeline = make_pipeline(("a", "b", "c"), latency_ms=60)
    profile = make_profile(pipeline, model(lambda b, c: (0.5 + 0.2 * b) / c, spread=spread),
                           hop_ms=hop)
    counts = poisson_counts(rate, 12, random.Random(7))
    policy = fixed(pipeline, replicas, cores, {
        4.0: [SetReplicas("b", replicas + 1, cores, "grow")],
        6.0: [Resize("a", 2.0, "up")],
        8.0: [SetReplicas("b", 1, cores, "shrink"), SetBatching("c", 4, 1.0, "narrow")],
    })
    result = simulate(pipeline, profile, policy, counts, SimConfig(seed=3))
    _conserved(result, counts)
    assert result.drain_s < 1.0


def test_lone_request_latency_is_service_plus_hops():
    # One request every second: no queue, no batching wait (an idle executor starts at once).
    pipeline = make_pipeline(("a", "b"), latency_ms=100, max_delay_ms=5.0)
    profile = make_profile(pipeline, model(constant_ms(10.0)), hop_ms=(4.0, 4.0))
    result = simulate(pipeline, profile, fixed(pipeline), [1] * 20)
    assert result.ok == 20
    # Two hops (router -> a, a -> b) of 4 ms and two batches of 10 ms each.
    assert result.p50_ms == pytest.approx(28.0, abs=0.1)
    assert result.max_ms == pytest.approx(28.0, abs=0.1)
    for stage in result.per_stage:
        assert stage.p50_ms == pytest.approx(10.0, abs=0.1)
        assert stage.largest_batch == 1


def test_batches_stay_within_size_and_delay():
    # 1 ms per batch of any size: batching is free, so only its limits shape it.
    pipeline = make_pipeline(("a",), latency_ms=100)
    profile = make_profile(pipeline, model(constant_ms(1.0)))
    busy = simulate(pipeline, profile, fixed(pipeline, max_batch_size=8, max_delay_ms=4.0),
                    poisson_counts(20_000, 3, random.Random(1)))
    stage = busy.per_stage[0]
    assert stage.largest_batch == 8
    assert stage.mean_batch_size > 7
    # At 300/s one more request is expected within the 4 ms delay, so batches wait for it,
    # but never beyond the delay: a request spends at most the delay plus one batch.
    waiting = simulate(pipeline, profile, fixed(pipeline, max_batch_size=8, max_delay_ms=4.0),
                       poisson_counts(300, 10, random.Random(2)))
    stage = waiting.per_stage[0]
    assert stage.mean_batch_size > 1.3
    assert stage.max_ms <= 4.0 + 1.0 + 0.1
    assert stage.p50_ms > 1.5  # they do wait


def test_overload_refuses_instead_of_answering_late():
    # 10 ms per row on one core: 100 requests/s at most, offered 300/s.
    pipeline = make_pipeline(("a",), latency_ms=100, max_batch_size=8)
    profile = make_profile(pipeline, model(compute_bound_ms(10.0)))
    counts = [300] * 20
    result = simulate(pipeline, profile, fixed(pipeline), counts)
    _conserved(result, counts)
    assert result.late == 0
    assert result.rejected > 0.6 * result.requests
    assert result.ok == pytest.approx(100 * 20, rel=0.1)
    assert result.max_ms <= 100.0
    stage = result.per_stage[0]
    assert stage.refused_deadline > 0


def test_queue_cap_refuses_the_rest():
    # A long SLO lets the queue grow to its cap.
    pipeline = make_pipeline(("a",), latency_ms=600_000, max_batch_size=1)
    profile = make_profile(pipeline, model(compute_bound_ms(10.0)))
    result = simulate(pipeline, profile, fixed(pipeline), [500] * 5,
                      SimConfig(max_queue_size=50))
    assert result.per_stage[0].refused_queue_full > 0
    assert result.ok + result.late + result.rejected == result.requests


@pytest.mark.parametrize(("slo_ms", "ok"), [(50, 0), (70, 20)])
def test_the_deadline_travels_across_stages(slo_ms, ok):
    # 30 ms per stage: after the first, 20 ms are left of a 50 ms budget, so the second
    # refuses at once; with 70 ms both fit.
    pipeline = make_pipeline(("a", "b"), latency_ms=slo_ms)
    profile = make_profile(pipeline, model(constant_ms(30.0)))
    result = simulate(pipeline, profile, fixed(pipeline), [1] * 20)
    assert result.ok == ok
    assert result.late == 0
    first, second = result.per_stage
    assert first.answered == 20
    assert second.refused == 20 - ok


def test_router_reserves_what_the_stages_after_take():
    flow = Flow(SimConfig(), random.random, None, 3, 10.0)
    flow.reserve[:] = [0.010, 0.0, 0.030]
    assert [flow.reserve_from(k) for k in range(4)] == pytest.approx([0.04, 0.03, 0.03, 0.0])


def test_the_first_stage_keeps_time_for_the_stages_after():
    # The second stage takes 60 ms (never queueing), the first 10 ms a row on one core and is
    # offered 150/s, half again what it can do. The router reserves the second stage's
    # 60 ms, so the first refuses what it could only finish in the last 40 ms of the budget,
    # rather than passing on requests the second would have to refuse.
    pipeline = make_pipeline(("a", "b"), latency_ms=100, max_batch_size=1)
    profile = make_profile(pipeline, {"a": model(compute_bound_ms(10.0)),
                                      "b": model(constant_ms(60.0))})
    policy = Scripted({"a": Allocation(1, 1.0, 1, 0.0, "default"),
                       "b": Allocation(8, 1.0, 1, 0.0, "default")})
    result = simulate(pipeline, profile, policy, [150] * 10)
    first, second = result.per_stage
    assert first.refused_deadline > 0.25 * result.requests
    # Before the first answers from the second stage the router knows nothing of it.
    assert second.refused < 0.02 * result.requests
    assert first.p99_ms <= 40.0 + 0.5
    assert result.late == 0


def test_observations_report_the_interval():
    pipeline = make_pipeline(("a", "b"), latency_ms=100, max_delay_ms=0.0)
    profile = make_profile(pipeline, model(constant_ms(5.0)))
    policy = fixed(pipeline, replicas=2, cores=1.5)
    counts = [40] * 10
    simulate(pipeline, profile, policy, counts)
    assert [o.now_s for o in policy.seen] == [float(t) for t in range(1, 10)]
    observation = policy.at(5.0)
    stage = observation.stages["a"]
    assert stage.arrival_rps == pytest.approx(40, abs=1)
    assert stage.answered == pytest.approx(40, abs=3)
    assert stage.missed == 0
    # At the SLO's percentile (p99): 5 ms, plus a wait when arrivals collide.
    assert 5.0 <= stage.latency_ms <= 10.0
    # Little's law: 40 requests/s x 5 ms.
    assert stage.in_flight == pytest.approx(0.2, rel=0.15)
    assert len(stage.replicas) == 2
    assert all(r.ready and r.cores == 1.5 and r.desired_cores == 1.5 for r in stage.replicas)
    assert (stage.max_batch_size, stage.max_delay_ms, stage.variant) == (8, 0.0, "default")


def test_observations_carry_the_entrance_rate_of_the_interval():
    pipeline = make_pipeline(("a", "b"), latency_ms=60, max_delay_ms=0.0)
    profile = make_profile(pipeline, model(constant_ms(1.0)))
    policy = fixed(pipeline, interval_s=2.0)
    simulate(pipeline, profile, policy, [50] * 5 + [150] * 5)
    # The interval ending at 6 s holds seconds 4 (50) and 5 (150).
    assert [policy.at(t).entrance_rps for t in (2.0, 4.0, 6.0, 8.0)] == [50, 50, 100, 150]


def test_set_batching_applies_at_once():
    pipeline = make_pipeline(("a",), latency_ms=100)
    profile = make_profile(pipeline, model(constant_ms(1.0)))
    policy = fixed(pipeline, script={2.0: [SetBatching("a", 3, 0.5, "smaller")]},
                   max_batch_size=16)
    result = simulate(pipeline, profile, policy, [20_000] * 4)
    assert policy.at(2.0).stages["a"].max_batch_size == 16
    assert policy.at(3.0).stages["a"].max_batch_size == 3
    assert policy.at(3.0).stages["a"].max_delay_ms == 0.5
    assert result.batching_actions == 1


def test_same_seed_same_result_and_common_arrivals():
    pipeline = make_pipeline(("a", "b"), latency_ms=40)
    profile = make_profile(pipeline, model(lambda b, c: (1 + 0.5 * b) / c, spread=0.6),
                           hop_ms=(2.0, 6.0))
    counts = poisson_counts(600, 10, random.Random(5))

    def run(seed, policy=None):
        return simulate(pipeline, profile, policy or fixed(pipeline), counts,
                        SimConfig(seed=seed))

    assert run(1).to_json() == run(1).to_json()
    assert run(1).to_json() != run(2).to_json()
    grown = run(1, fixed(pipeline, replicas=2))
    # Another policy faces the very same requests.
    assert grown.requests == run(1).requests == sum(counts)


def test_fused_composition_is_refused_with_a_reason():
    pipeline = make_pipeline(("a", "b"), composition="fused")
    profile = make_profile(pipeline, model(constant_ms(1.0)))
    with pytest.raises(SimulationError, match="fused is not simulated"):
        simulate(pipeline, profile, fixed(pipeline), [1])


@pytest.mark.parametrize(("allocation", "message"), [
    ({}, "no initial allocation"),
    ({"a": Allocation(1, 1.0, 8, 2.0, "huge")}, "no variant 'huge'"),
])
def test_bad_allocations_are_refused(allocation, message):
    pipeline = make_pipeline(("a",))
    profile = make_profile(pipeline, model(constant_ms(1.0)))
    with pytest.raises(SimulationError, match=message):
        simulate(pipeline, profile, Scripted(allocation), [1])


def test_actions_on_unknown_stages_are_policy_bugs():
    pipeline = make_pipeline(("a",))
    profile = make_profile(pipeline, model(constant_ms(1.0)))
    policy = fixed(pipeline, script={1.0: [Resize("nope", 1.0, "typo")]})
    with pytest.raises(SimulationError, match="unknown stage"):
        simulate(pipeline, profile, policy, [1, 1, 1])


@pytest.mark.parametrize(("cores", "lone_ms", "capacity_rps"), [
    (1.0, 10.0, 100),
    (1.5, 10.0 / 1.5, 150),  # one executor with 1.5 cores
    (2.0, 5.0, 200),  # two executors: a lone batch takes both, a queue runs side by side
])
def test_executors_follow_the_cores(cores, lone_ms, capacity_rps):
    # 10 ms a row on one core, in proportion to the cores (the profile measured 1 and 2).
    pipeline = make_pipeline(("a",), latency_ms=200, max_batch_size=1,
                             cpu={"initial": "1", "min": "500m", "max": "4"})
    profile = make_profile(pipeline, model(compute_bound_ms(10.0)))
    lone = simulate(pipeline, profile, fixed(pipeline, cores=cores), [1] * 10)
    assert lone.per_stage[0].p50_ms == pytest.approx(lone_ms, abs=0.1)
    busy = simulate(pipeline, profile, fixed(pipeline, cores=cores), [400] * 10)
    assert busy.ok == pytest.approx(capacity_rps * 10, rel=0.08)


@pytest.mark.parametrize(("counts", "q", "expected"), [
    ({}, 0.5, None),
    ({100: 1}, 0.99, 10.05),
    ({100: 50, 200: 49, 300: 1}, 0.5, 10.05),
    ({100: 50, 200: 49, 300: 1}, 0.99, 20.05),
    ({100: 50, 200: 49, 300: 1}, 1.0, 30.05),
])
def test_percentiles_from_buckets(counts, q, expected):
    assert bucket_quantile_ms(counts, q) == (pytest.approx(expected) if expected else None)
