"""Static, vertical, hybrid and clairvoyant decisions, table-tested on scripted observations.

Each scenario drives ``decide`` second by second with what a stage would report (rate,
backlog, replicas ready or starting, cores in force, resize state), applying the actions
to a small model of the deployment in the test: replicas become ready after a start-up
delay (or never), resizes land after a second (or are deferred). Decisions are pure: the
same inputs give the same outputs, and nothing passed in is changed.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import pytest
from sluice_core.planner import Load, plan
from sluice_core.profiles import LatencyPoint, ModelProfile, PipelineProfile, StageProfile
from sluice_core.scaling.clairvoyant import ClairvoyantPolicy
from sluice_core.scaling.hybrid import hybrid_policy
from sluice_core.scaling.registry import POLICY_NAMES, PolicyContext, make_policy
from sluice_core.scaling.static import static_policy
from sluice_core.scaling.types import (
    RESIZE_DEFERRED,
    RESIZE_NONE,
    Observation,
    ReplicaObservation,
    Resize,
    SetBatching,
    SetReplicas,
    StageObservation,
)
from sluice_core.scaling.vertical import vertical_policy
from sluice_core.spec import parse_pipeline

CORES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
BATCHES = (1, 2, 4, 8, 16, 32)


def compute_bound(ms_per_row: float, fixed_ms: float = 0.5, serial: float = 0.1) -> ModelProfile:
    """A model whose batch takes ``fixed + rows * ms_per_row`` on one core, of which a
    ``serial`` fraction does not speed up with cores (Amdahl)."""
    points = []
    for cores in CORES:
        speedup = 1 / (serial + (1 - serial) / cores) if cores >= 1 else cores
        for batch in BATCHES:
            ms = (fixed_ms + batch * ms_per_row) / speedup
            points.append(LatencyPoint(cores, batch, max(1, int(cores)), 100, 0.9 * ms, ms,
                                       1.2 * ms, 1.4 * ms, 1.6 * ms))
    return ModelProfile("m.onnx", None, 1.0, 0.5, 0.1, 50.0, tuple(points))


def pipeline(max_replicas=20, cpu_max="4", slo_ms=100):
    return parse_pipeline({
        "metadata": {"name": "p"},
        "spec": {"slo": {"latencyMs": slo_ms, "percentile": 99},
                 "stages": [{"name": "a", "model": {"uri": "file:///a.onnx"},
                             "resources": {"cpu": {"initial": "1", "min": "250m",
                                                   "max": cpu_max}},
                             "replicas": {"min": 1, "max": max_replicas}}]}})


PROFILE = PipelineProfile("p", {}, {"a": StageProfile("a", {"default": compute_bound(2.0)})},
                          hop_ms={1: (0.0, 0.0)})


@dataclasses.dataclass
class Replica:
    ready_at: float
    cores: float
    desired: float
    resize_at: float = math.inf
    resize: str = RESIZE_NONE


class Deployment:
    """The stage as a platform runs it: start-up delay, resize delay, deferrals."""

    def __init__(self, allocation, start_s=10.0, resize_s=1.0, never_ready=False,
                 defer_resizes_above=math.inf):
        self.start_s, self.resize_s = start_s, resize_s
        self.never_ready = never_ready
        self.defer_above = defer_resizes_above
        self.replicas = [Replica(0.0, allocation.cores, allocation.cores)
                         for _ in range(allocation.replicas)]
        self.batching = (allocation.max_batch_size, allocation.max_delay_ms)
        self.actions = []

    def tick(self, now):
        for r in self.replicas:
            if now >= r.resize_at:
                r.cores, r.resize_at, r.resize = r.desired, math.inf, RESIZE_NONE

    def observe(self, now, rate, queue=0):
        self.tick(now)
        replicas = tuple(ReplicaObservation(now >= r.ready_at, r.cores, r.desired, r.resize)
                         for r in self.replicas)
        return Observation(now, {"a": StageObservation(
            arrival_rps=rate, queue_depth=queue, in_flight=rate * 0.01, answered=int(rate),
            missed=0, latency_ms=None, replicas=replicas, max_batch_size=self.batching[0],
            max_delay_ms=self.batching[1], variant="default")})

    def apply(self, actions, now):
        self.actions += [(now, a) for a in actions]
        for action in actions:
            if isinstance(action, Resize):
                for r in self.replicas:
                    r.desired = action.cores
                    if action.cores > self.defer_above:
                        r.resize = RESIZE_DEFERRED
                    else:
                        r.resize_at = now + self.resize_s
            elif isinstance(action, SetReplicas):
                while len(self.replicas) < action.replicas:
                    ready_at = math.inf if self.never_ready else now + self.start_s
                    self.replicas.append(Replica(ready_at, action.cores, action.cores))
                del self.replicas[action.replicas:]
            elif isinstance(action, SetBatching):
                self.batching = (action.max_batch_size, action.max_delay_ms)

    @property
    def cores(self):
        return sum(r.cores for r in self.replicas)

    @property
    def desired_cores(self):
        return sum(r.desired for r in self.replicas)


def run(policy, rates, **deployment):
    """Drive ``policy`` through per-second ``rates``; the deployment and every decision."""
    state = policy.initial_state()
    world = Deployment(policy.initial_allocation()["a"], **deployment)
    for second, rate in enumerate(rates):
        now = float(second)
        observation = world.observe(now, rate)
        before = (copy.deepcopy(observation), copy.deepcopy(state))
        actions, new_state = policy.decide(observation, state, now)
        assert (observation, state) == before, "decide changed what it was given"
        assert actions == policy.decide(observation, state, now)[0], "not deterministic"
        assert all(a.reason for a in actions)
        world.apply(actions, now)
        state = new_state
    return world


def kinds(world, kind):
    return [(t, a) for t, a in world.actions if isinstance(a, kind)]


# --- static ------------------------------------------------------------------------------


def test_static_deploys_the_peak_plan_and_never_acts():
    policy = static_policy(pipeline(), PROFILE, peak_rps=2000)
    peak = plan(pipeline(), PROFILE, Load(2000))
    assert policy.initial_allocation()["a"].replicas == peak.stage("a").replicas
    world = run(policy, [100] * 30 + [2000] * 30)
    assert world.actions == []


# --- vertical ----------------------------------------------------------------------------


def test_vertical_follows_a_burst_up_at_once_and_down_after_its_window():
    policy = vertical_policy(pipeline(), PROFILE, mean_rps=200)
    world = run(policy, [200] * 20 + [900] * 10 + [200] * 30)
    resizes = kinds(world, Resize)
    ups = [(t, a.cores) for t, a in resizes if t >= 20 and t < 30]
    assert ups
    assert ups[0][0] == 20, "the burst is met within the same second"
    assert all(isinstance(a, Resize) for _, a in world.actions), "one replica, never more"
    downs = [(t, a.cores) for t, a in resizes if t >= 30]
    assert downs, "cores come back down"
    assert downs[0][0] >= 30 + policy.down_window_s - 1, "not before the window has passed"
    assert downs[-1][1] < ups[-1][1]


def test_vertical_plateau_causes_no_resizes_after_settling():
    world = run(vertical_policy(pipeline(), PROFILE, mean_rps=300), [300] * 60)
    assert [t for t, _ in world.actions if t > 0] == []


def test_vertical_says_when_cpu_max_falls_short():
    world = run(vertical_policy(pipeline(cpu_max="2"), PROFILE, mean_rps=200), [5000] * 3)
    (_, first), = kinds(world, Resize)
    assert first.cores == 2.0
    assert "fall short" in first.reason


# --- hybrid ------------------------------------------------------------------------------


def test_hybrid_absorbs_a_short_burst_vertically_without_a_cold_start():
    policy = hybrid_policy(pipeline(), PROFILE, initial_rps=300)
    world = run(policy, [300] * 20 + [500] * 4 + [300] * 40)
    assert kinds(world, Resize)[0][0] == 20, "vertical answers in the burst's first second"
    assert kinds(world, SetReplicas) == [], "a 4 s burst is not worth a new replica"


def test_hybrid_settles_a_lasting_rise_on_replicas_then_steps_cores_back_down():
    policy = hybrid_policy(pipeline(), PROFILE, initial_rps=300)
    world = run(policy, [300] * 20 + [1200] * 60, start_s=10.0)
    scale_outs = kinds(world, SetReplicas)
    assert scale_outs, "a lasting rise gets replicas"
    first_out = scale_outs[0][0]
    assert 20 < first_out <= 20 + policy.persist_s, "after the persistence span, not before"
    up = [t for t, a in kinds(world, Resize) if t >= 20]
    assert up[0] == 20, "cores bridge the cold start"
    down_after_ready = [(t, a) for t, a in kinds(world, Resize)
                        if first_out + 10 <= t <= first_out + 12]
    assert down_after_ready
    assert "ready now" in down_after_ready[0][1].reason
    assert world.cores < 1.5 * plan(pipeline(), PROFILE, Load(1200)).cost_cores


def test_hybrid_scales_in_after_the_load_has_stayed_low():
    policy = hybrid_policy(pipeline(cpu_max="1"), PROFILE, initial_rps=2500)
    start = policy.initial_allocation()["a"].replicas
    assert start >= 4
    world = run(policy, [2500] * 10 + [150] * 150)
    ins = kinds(world, SetReplicas)
    assert ins
    assert all(a.replicas < start for _, a in ins)
    assert ins[0][0] >= policy.scale_down_s - 1, "only once the window is full"
    # at most half at a time
    counts = [start] + [a.replicas for _, a in ins]
    assert all(b >= math.ceil(a / 2) for a, b in itertools.pairwise(counts))


def test_hybrid_does_not_oscillate_on_a_noisy_plateau():
    noisy = [600 + (37 * s) % 120 - 60 for s in range(240)]
    world = run(hybrid_policy(pipeline(), PROFILE, initial_rps=600), noisy)
    assert len(kinds(world, SetReplicas)) <= 1
    late = [t for t, _ in world.actions if t > 120 and not isinstance(_, SetBatching)]
    assert len(late) <= 4


def test_hybrid_turns_a_deferred_resize_into_replicas_at_once():
    policy = hybrid_policy(pipeline(), PROFILE, initial_rps=300)
    allocation = policy.initial_allocation()["a"]
    world = run(policy, [300] * 10 + [700] * 5, defer_resizes_above=allocation.cores)
    resize_t = kinds(world, Resize)[0][0]
    outs = kinds(world, SetReplicas)
    assert outs
    assert outs[0][0] == resize_t + 1, "the next decision sees the deferral"
    assert "deferred" in outs[0][1].reason


def test_hybrid_does_not_run_away_when_a_replica_never_becomes_ready():
    policy = hybrid_policy(pipeline(max_replicas=50), PROFILE, initial_rps=300)
    world = run(policy, [300] * 5 + [1500] * 60, never_ready=True)
    outs = kinds(world, SetReplicas)
    assert 1 <= len(outs) <= 2, [a.replicas for _, a in outs]
    asked = max(a.replicas * a.cores for _, a in outs)
    assert asked <= 2 * plan(pipeline(max_replicas=50), PROFILE, Load(1500)).cost_cores
    # the ready replicas keep being sized for the load meanwhile
    assert kinds(world, Resize)


def test_hybrid_retunes_batching_when_replanning_at_a_new_load():
    policy = hybrid_policy(pipeline(), PROFILE, initial_rps=20)
    world = run(policy, [20] * 5 + [1500] * 70)
    planned = plan(pipeline(), PROFILE, Load(20)).stage("a")
    later = plan(pipeline(), PROFILE, Load(1500)).stage("a")
    if (planned.max_batch_size, planned.max_delay_ms) != (later.max_batch_size,
                                                          later.max_delay_ms):
        assert kinds(world, SetBatching)


# --- clairvoyant -------------------------------------------------------------------------


def test_clairvoyant_takes_each_seconds_cheapest_plan_and_costs_no_more_than_static():
    counts = [100] * 10 + [1500] * 10 + [100] * 10
    clairvoyant = ClairvoyantPolicy(pipeline(), PROFILE, counts)
    assert clairvoyant.instant
    peak_cost = plan(pipeline(), PROFILE, Load(1500)).cost_cores
    before_peak = run(clairvoyant, counts[:10])
    assert before_peak.desired_cores == pytest.approx(peak_cost, rel=0.03), "a second ahead"
    assert run(clairvoyant, counts[:9]).desired_cores < peak_cost
    after = run(clairvoyant, counts)
    assert after.desired_cores < peak_cost
    assert peak_cost <= static_policy(pipeline(), PROFILE, 1500).plan.cost_cores


# --- registry ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_policy_is_built_by_name(name):
    context = PolicyContext(pipeline(), PROFILE, mean_rps=300, peak_rps=900,
                            counts_per_second=[300] * 10)
    policy = make_policy(name, context)
    assert policy.name == name
    assert set(policy.initial_allocation()) == {"a"}


def test_an_unknown_policy_names_the_known_ones():
    context = PolicyContext(pipeline(), PROFILE, mean_rps=300, peak_rps=900)
    with pytest.raises(ValueError, match="static, horizontal"):
        make_policy("diagonal", context)


def test_demand_is_the_entrance_rate_when_refusals_upstream_hide_it():
    policy = vertical_policy(pipeline(), PROFILE, mean_rps=200)
    world = Deployment(policy.initial_allocation()["a"])
    seen = world.observe(0.0, 200)
    hidden = dataclasses.replace(seen, entrance_rps=900.0)
    (resize,), _ = policy.decide(hidden, policy.initial_state(), 0.0)
    assert "900 rows/s" in resize.reason
    assert policy.decide(seen, policy.initial_state(), 0.0)[0] == []


def test_hybrid_resizes_the_replicas_that_stay_before_scaling_in():
    policy = hybrid_policy(pipeline(cpu_max="2"), PROFILE, initial_rps=2500)
    world = run(policy, [2500] * 10 + [150] * 120)
    scale_in = [(t, a) for t, a in kinds(world, SetReplicas)]
    prepare = [(t, a) for t, a in kinds(world, Resize) if "before scaling in" in a.reason]
    assert scale_in
    assert prepare
    assert prepare[0][0] < scale_in[0][0]
    assert scale_in[0][0] - prepare[0][0] >= 1, "after the resize has landed"


def test_hybrid_calls_a_scale_in_off_when_the_node_defers_its_resize():
    policy = hybrid_policy(pipeline(cpu_max="2"), PROFILE, initial_rps=2500)
    size = policy.initial_allocation()["a"].cores
    world = run(policy, [2500] * 10 + [150] * 120, defer_resizes_above=size - 0.5)
    assert any("called off" in a.reason for _, a in kinds(world, Resize))
    start = policy.initial_allocation()["a"].replicas
    assert all(a.replicas <= start for _, a in kinds(world, SetReplicas)), "no scale-out"


def test_hybrid_follows_a_ramp_up_without_giving_capacity_back():
    policy = hybrid_policy(pipeline(), PROFILE, initial_rps=300)
    ramp = [300 + 20 * s for s in range(60)] + [1500] * 30
    world = run(policy, ramp)
    outs = [a.replicas for _, a in kinds(world, SetReplicas)]
    assert outs
    assert outs == sorted(outs), "no scale-in while the load climbs"
    assert world.cores >= 0.9 * plan(pipeline(), PROFILE, Load(1500)).cost_cores


def test_hybrid_adds_one_replica_for_a_deferred_resize_not_one_a_second():
    policy = hybrid_policy(pipeline(max_replicas=50), PROFILE, initial_rps=300)
    allocation = policy.initial_allocation()["a"]
    # Every resize up is deferred and new replicas wait for room that never comes.
    world = run(policy, [300] * 5 + [700] * 30, defer_resizes_above=allocation.cores,
                never_ready=True)
    outs = [a.replicas for _, a in kinds(world, SetReplicas)]
    assert outs
    assert outs[-1] <= allocation.replicas + 2
