"""The simulated platform: resize delay and deferral, cold starts, placement, draining,
variant roll-outs and the core-seconds they cost."""

from __future__ import annotations

import dataclasses

import pytest
from sluice_core.scaling.types import (
    RESIZE_DEFERRED,
    RESIZE_IN_PROGRESS,
    RESIZE_INFEASIBLE,
    RESIZE_NONE,
    Resize,
    SetReplicas,
    SetVariant,
)
from sluice_core.simulate import SimConfig, simulate

from tests.core.test_simulate_support import (
    Scripted,
    compute_bound_ms,
    constant_ms,
    fixed,
    make_pipeline,
    make_profile,
    model,
)


def _replicas(policy, now_s, stage="a"):
    return [(r.ready, r.cores, r.desired_cores, r.resize)
            for r in policy.at(now_s).stages[stage].replicas]


def test_resize_takes_effect_after_the_delay_and_speeds_up_service():
    # 10 ms per row at one core, 5 ms at two.
    pipeline = make_pipeline(("a",), latency_ms=500, max_batch_size=1)
    profile = make_profile(pipeline, model(compute_bound_ms(10.0)))
    policy = fixed(pipeline, script={5.0: [Resize("a", 2.0, "burst")]})
    result = simulate(pipeline, profile, policy, [1] * 12,
                      SimConfig(resize_delay_s=1.5))
    assert _replicas(policy, 5.0) == [(True, 1.0, 1.0, RESIZE_NONE)]
    assert _replicas(policy, 6.0) == [(True, 1.0, 2.0, RESIZE_IN_PROGRESS)]
    assert _replicas(policy, 7.0) == [(True, 2.0, 2.0, RESIZE_NONE)]
    assert policy.at(4.0).stages["a"].latency_ms == pytest.approx(10.0, abs=0.1)
    assert policy.at(9.0).stages["a"].latency_ms == pytest.approx(5.0, abs=0.1)
    assert result.vertical_actions == 1
    # The node holds the two cores from the moment it admits the resize.
    assert result.core_seconds == pytest.approx(5 * 1.0 + 7 * 2.0)
    assert result.peak_cores == 2.0


def test_resize_is_deferred_while_the_node_is_full_then_admitted():
    # One node of 2 cores, two replicas of 1: no room to grow until one leaves.
    pipeline = make_pipeline(("a",), latency_ms=500)
    profile = make_profile(pipeline, model(constant_ms(2.0)))
    policy = fixed(pipeline, replicas=2, script={
        2.0: [Resize("a", 2.0, "grow")],
        5.0: [SetReplicas("a", 1, 2.0, "make room")],
    })
    result = simulate(pipeline, profile, policy, [5] * 10,
                      SimConfig(nodes=1, node_cores=2.0, resize_delay_s=0.5))
    assert _replicas(policy, 3.0) == [(True, 1.0, 2.0, RESIZE_DEFERRED)] * 2
    assert _replicas(policy, 4.0) == [(True, 1.0, 2.0, RESIZE_DEFERRED)] * 2
    # At 5 s one drains away (idle at once), its core goes to the other's resize.
    assert _replicas(policy, 6.0) == [(True, 2.0, 2.0, RESIZE_NONE)]
    assert result.per_stage[0].resizes_deferred == 2
    assert result.core_seconds == pytest.approx(20.0)  # never more than the node


def test_resize_beyond_the_stage_bounds_is_infeasible():
    pipeline = make_pipeline(("a",), cpu={"initial": "1", "min": "500m", "max": "2"})
    profile = make_profile(pipeline, model(constant_ms(2.0)))
    policy = fixed(pipeline, script={2.0: [Resize("a", 3.0, "too much")]})
    result = simulate(pipeline, profile, policy, [5] * 5)
    assert _replicas(policy, 3.0) == [(True, 1.0, 3.0, RESIZE_INFEASIBLE)]
    assert result.per_stage[0].resizes_infeasible == 1
    assert result.core_seconds == pytest.approx(5.0)


def test_new_replicas_are_ready_after_the_cold_start_and_cost_from_placement():
    # Platform 3 s + model load 0.4 s + warm-up 0.1 s = ready 3.5 s after the decision.
    pipeline = make_pipeline(("a",), latency_ms=500)
    profile = make_profile(pipeline, model(constant_ms(2.0), load_s=0.4, warmup_s=0.1))
    policy = fixed(pipeline, script={5.0: [SetReplicas("a", 2, 1.5, "scale out")]})
    result = simulate(pipeline, profile, policy, [5] * 12,
                      SimConfig(platform_start_s=3.0))
    assert _replicas(policy, 6.0) == [(True, 1.0, 1.0, RESIZE_NONE),
                                      (False, 1.5, 1.5, RESIZE_NONE)]
    assert policy.at(8.0).stages["a"].ready_replicas == 1
    assert policy.at(9.0).stages["a"].ready_replicas == 2
    assert result.horizontal_actions == 1
    # The starting pod holds its 1.5 cores from 5 s on.
    assert result.core_seconds == pytest.approx(12 * 1.0 + 7 * 1.5)
    assert result.peak_cores == 2.5


def test_a_replica_without_room_waits_pending_and_holds_nothing():
    pipeline = make_pipeline(("a",), latency_ms=500)
    profile = make_profile(pipeline, model(constant_ms(2.0), load_s=0.0, warmup_s=0.0))
    policy = fixed(pipeline, script={
        2.0: [SetReplicas("a", 3, 1.0, "more")],
        6.0: [Resize("a", 0.5, "smaller")],
    })
    result = simulate(pipeline, profile, policy, [5] * 12,
                      SimConfig(nodes=1, node_cores=2.0, platform_start_s=1.0,
                                resize_delay_s=1.0))
    # Room for one more: the third waits, unplaced.
    assert policy.at(4.0).stages["a"].ready_replicas == 2
    assert policy.at(4.0).stages["a"].starting_replicas == 1
    # The resize frees 1.5 cores at 7 s: the pending one is placed (at 0.5) and starts.
    assert policy.at(9.0).stages["a"].ready_replicas == 3
    assert result.peak_cores == 2.0
    # 2 cores to 2 s... 1 core to 2 s, 2 to 7 s, then 3 x 0.5.
    assert result.core_seconds == pytest.approx(2 * 1.0 + 5 * 2.0 + 5 * 1.5)


@pytest.mark.parametrize(("replicas", "cores", "seconds", "expected"), [
    (1, 1.0, 10, 10.0),
    (2, 1.5, 10, 30.0),
    (3, 0.5, 4, 6.0),
])
def test_core_seconds_of_a_fixed_allocation(replicas, cores, seconds, expected):
    pipeline = make_pipeline(("a", "b"), latency_ms=500)
    profile = make_profile(pipeline, model(constant_ms(1.0)))
    result = simulate(pipeline, profile, fixed(pipeline, replicas, cores), [3] * seconds)
    assert result.core_seconds == pytest.approx(2 * expected)
    assert result.mean_cores == pytest.approx(2 * expected / seconds)
    assert [s.core_seconds for s in result.per_stage] == pytest.approx([expected] * 2)


def test_removed_replicas_finish_their_queue_first():
    # A busy stage scaled in: every queued request is still answered.
    pipeline = make_pipeline(("a",), latency_ms=1000, max_batch_size=4)
    profile = make_profile(pipeline, model(compute_bound_ms(5.0)))
    policy = fixed(pipeline, replicas=3, script={3.0: [SetReplicas("a", 1, 1.0, "in")]})
    counts = [300] * 3 + [50] * 3
    result = simulate(pipeline, profile, policy, counts)
    assert result.ok + result.late + result.rejected == result.requests == sum(counts)
    assert result.per_stage[0].refused_unavailable == 0
    assert result.per_stage[0].final_replicas == 1
    assert len(policy.at(4.0).stages["a"].replicas) == 1


def test_variant_change_rolls_replicas():
    pipeline = make_pipeline(("a",), latency_ms=500, variants=("small",))
    profile = make_profile(pipeline, model(constant_ms(8.0)), variants={
        "small": model(constant_ms(2.0), load_s=0.4, warmup_s=0.1)})
    policy = fixed(pipeline, script={2.0: [SetVariant("a", "small", "cheaper")]})
    result = simulate(pipeline, profile, policy, [10] * 10, SimConfig(platform_start_s=3.0))
    # The new replica starts at 2 s and is ready at 5.5 s; the old one then leaves.
    assert policy.at(3.0).stages["a"].variant == "small"
    assert [r.ready for r in policy.at(3.0).stages["a"].replicas] == [True, False]
    assert [r.ready for r in policy.at(6.0).stages["a"].replicas] == [True]
    # p99 at the stage: the old variant's 8 ms (more when arrivals collide), then 2 ms.
    assert policy.at(1.0).stages["a"].latency_ms >= 8.0
    assert policy.at(8.0).stages["a"].latency_ms <= 4.0
    assert result.variant_actions == 1
    assert result.rejected == 0
    assert result.core_seconds == pytest.approx(10.0 + 3.5, abs=0.05)


def test_variant_change_reverted_mid_roll_out_keeps_the_old_replicas():
    pipeline = make_pipeline(("a",), latency_ms=500, variants=("small",))
    profile = make_profile(pipeline, model(constant_ms(8.0)), variants={
        "small": model(constant_ms(2.0))})
    policy = fixed(pipeline, replicas=2, script={
        2.0: [SetVariant("a", "small", "cheaper")],
        3.0: [SetVariant("a", "default", "changed my mind")],
    })
    result = simulate(pipeline, profile, policy, [10] * 10, SimConfig(platform_start_s=3.0))
    assert len(policy.at(3.0).stages["a"].replicas) == 4
    # The starting ones of the abandoned variant leave at once; nothing new starts.
    assert [r.ready for r in policy.at(4.0).stages["a"].replicas] == [True, True]
    assert result.variant_actions == 2
    assert result.core_seconds == pytest.approx(2 * 10.0 + 2 * 1.0)


@dataclasses.dataclass
class InstantScripted(Scripted):
    """A scripted policy marked as the clairvoyant bound is: its actions land at once."""

    instant: bool = True


def test_an_instant_policy_pays_no_start_up_or_resize_delay():
    pipeline = make_pipeline(("a",), latency_ms=500)
    profile = make_profile(pipeline, model(constant_ms(2.0), load_s=0.4, warmup_s=0.1))
    script = {5.0: [SetReplicas("a", 2, 1.5, "scale out"), Resize("a", 2.0, "up")]}
    delayed = fixed(pipeline, script=script)
    simulate(pipeline, profile, delayed, [5] * 8)
    instant = InstantScripted(delayed.allocation, script)
    simulate(pipeline, profile, instant, [5] * 8)
    assert delayed.at(6.0).stages["a"].ready_replicas == 1
    assert instant.at(6.0).stages["a"].ready_replicas == 2
    assert [r.cores for r in instant.at(6.0).stages["a"].replicas] == [2.0, 2.0]
    assert [r.cores for r in delayed.at(6.0).stages["a"].replicas] == [1.0, 1.5]
