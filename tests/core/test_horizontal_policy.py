"""The horizontal policy (Knative's KPA per stage) driven through load scenarios.

The profile makes the arithmetic easy: one replica (1 core, batches of 8) takes 10 ms a
batch, so it sustains 800 rps and holds 8 requests at that rate; KPA aims at 70%: 5.6
in flight, or 560 rps, per replica.
"""

import copy
import itertools
import math

import pytest
from sluice_core.profiles import LatencyPoint, ModelProfile, PipelineProfile, StageProfile
from sluice_core.scaling.horizontal import HorizontalPolicy, HorizontalState, replica_total
from sluice_core.scaling.kpa import KpaConfig
from sluice_core.scaling.types import (
    Allocation,
    Observation,
    ReplicaObservation,
    SetReplicas,
    StageObservation,
)
from sluice_core.spec import parse_pipeline

TARGET = 5.6  # 8 in flight x 70%


def model(batch, p50_ms):
    point = LatencyPoint(cores=1.0, batch=batch, threads=1, samples=100, min_ms=p50_ms * 0.8,
                         p50_ms=p50_ms, p95_ms=p50_ms * 1.2, p99_ms=p50_ms * 1.4,
                         max_ms=p50_ms * 2)
    return ModelProfile(model="m.onnx", sha256=None, accuracy=1.0, load_s=0.5, warmup_s=0.1,
                        rss_mib=50.0, points=(point,))


def stage_manifest(name, *, batch=8, cpu="1", low=1, high=20):
    return {"name": name, "model": {"uri": f"file:///models/{name}.onnx"},
            "batching": {"maxBatchSize": batch, "maxDelayMs": 2},
            "resources": {"cpu": {"initial": cpu, "min": "500m", "max": "2"}},
            "replicas": {"min": low, "max": high}}


def pipeline(*stages):
    return parse_pipeline({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "InferencePipeline",
        "metadata": {"name": "demo"},
        "spec": {"slo": {"latencyMs": 100}, "stages": list(stages)},
    })


def profile(**models):
    return PipelineProfile("demo", {}, {
        name: StageProfile(name, {"default": m}) for name, m in models.items()})


def policy(*, low=1, high=20, config=None, metric="concurrency"):
    return HorizontalPolicy(pipeline(stage_manifest("a", low=low, high=high)),
                            profile(a=model(8, 10.0)), config or KpaConfig(), metric)


class Cluster:
    """Replicas that become ready ``ready_after_s`` after being asked for; the first
    ``never_ready`` replicas added after the start never do."""

    def __init__(self, replicas, *, ready_after_s=2.0, never_ready=0):
        self.ready_at = [0.0] * replicas
        self.ready_after_s = ready_after_s
        self.never_ready = never_ready

    def scale(self, replicas, now_s):
        while len(self.ready_at) < replicas:
            if self.never_ready > 0:
                self.never_ready -= 1
                self.ready_at.append(math.inf)
            else:
                self.ready_at.append(now_s + self.ready_after_s)
        # Knative removes pods that are not ready first.
        self.ready_at.sort()
        del self.ready_at[replicas:]

    def replicas(self, now_s):
        return tuple(ReplicaObservation(ready=now_s >= at, cores=1.0, desired_cores=1.0)
                     for at in self.ready_at)


def observe(now_s, in_flight, replicas, *, rps=0.0, stage="a"):
    return Observation(now_s, {stage: StageObservation(
        arrival_rps=rps, queue_depth=0, in_flight=in_flight, answered=0, missed=0,
        latency_ms=None, replicas=replicas, max_batch_size=8, max_delay_ms=2.0,
        variant="default")})


def run(scaler, load, duration_s, *, cluster=None, state=None, start_s=0.0, metric="in_flight"):
    """Drive ``scaler`` every tick; ``load(t)`` is the stage's in-flight (or rps). Returns
    (actions as (time, action), each tick as (time, replicas after it, ready replicas seen,
    the decider's panic time), state, cluster)."""
    allocation = scaler.initial_allocation()["a"]
    cluster = cluster or Cluster(allocation.replicas)
    state = state or scaler.initial_state()
    actions, history = [], []
    now_s = start_s
    while now_s < start_s + duration_s:
        replicas = cluster.replicas(now_s)
        value = load(now_s)
        seen = (observe(now_s, value, replicas) if metric == "in_flight"
                else observe(now_s, 0.0, replicas, rps=value))
        decided, state = scaler.decide(seen, state, now_s)
        for action in decided:
            assert isinstance(action, SetReplicas)
            cluster.scale(action.replicas, now_s)
            actions.append((now_s, action))
        history.append((now_s, len(cluster.ready_at), sum(r.ready for r in replicas),
                        state.stage("a").decider.panic_time_s))
        now_s += scaler.interval_s
    return actions, history, state, cluster


def constant(value):
    return lambda _t: value


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high", "initial"),
    [(0, 4, 1), (1, 4, 1), (3, 4, 3), (2, 2, 2)],
)
def test_initial_allocation(low, high, initial):
    allocation = policy(low=low, high=high).initial_allocation()
    assert allocation == {"a": Allocation(replicas=initial, cores=1.0, max_batch_size=8,
                                          max_delay_ms=2.0, variant="default")}


def test_initial_scale_from_the_config():
    allocation = policy(config=KpaConfig(initial_scale=3)).initial_allocation()["a"]
    assert allocation.replicas == 3


@pytest.mark.parametrize(
    ("metric", "batch", "p50_ms", "total"),
    [
        ("rps", 8, 10.0, 800.0),          # 8 requests every 10 ms
        ("concurrency", 8, 10.0, 8.0),    # 800/s x 10 ms: one full batch in service
        ("rps", 4, 20.0, 200.0),
        ("concurrency", 4, 20.0, 4.0),
    ],
)
def test_replica_total_from_the_profile(metric, batch, p50_ms, total):
    assert replica_total(model(batch, p50_ms), batch, 1.0, metric) == pytest.approx(total)


def test_each_stage_gets_its_own_fixed_size_and_target():
    scaler = HorizontalPolicy(
        pipeline(stage_manifest("a"), stage_manifest("b", batch=4, cpu="500m")),
        profile(a=model(8, 10.0), b=model(4, 20.0)), metric="rps")
    by_stage = {s.stage: s for s in scaler.scaling}
    assert by_stage["a"].total == pytest.approx(800.0)
    # Half a core: the 1-core latency doubles (a quota slows work in proportion).
    assert by_stage["b"].cores == 0.5
    assert by_stage["b"].total == pytest.approx(100.0)
    assert scaler.name == "horizontal"
    assert scaler.interval_s == 2.0


def test_missing_profile_and_unknown_metric_fail_at_construction():
    with pytest.raises(ValueError, match="no stage 'a'"):
        HorizontalPolicy(pipeline(stage_manifest("a")), profile(b=model(8, 10.0)))
    with pytest.raises(ValueError, match="metric"):
        HorizontalPolicy(pipeline(stage_manifest("a")), profile(a=model(8, 10.0)),
                         metric="cpu")


# --- steady load and plateaus ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_flight", "replicas"),
    [(3.0, 1), (20.0, 4), (50.0, 9), (100.0, 18), (500.0, 20)],  # 20 is max-scale
)
def test_steady_load_converges_to_load_over_target(in_flight, replicas):
    _, history, _, _ = run(policy(), constant(in_flight), 180)
    assert history[-1][1] == replicas == min(20, math.ceil(in_flight / TARGET))


@pytest.mark.parametrize(("rps", "replicas"), [(300.0, 1), (2000.0, 4), (5000.0, 9)])
def test_rps_metric_scales_on_the_arrival_rate(rps, replicas):
    scaler = policy(metric="rps")
    _, history, _, _ = run(scaler, constant(rps), 180, metric="rps")
    assert history[-1][1] == replicas == math.ceil(rps / 560.0)


def test_plateau_with_noise_takes_no_actions():
    def noisy(t):
        return 15.0 if int(t) % 4 == 0 else 25.0  # mean 20, +-25% tick to tick

    _, _, state, cluster = run(policy(), noisy, 120)
    assert len(cluster.ready_at) == 4
    actions, _, _, _ = run(policy(), noisy, 600, cluster=cluster, state=state, start_s=120)
    assert actions == []


# --- bursts and panic --------------------------------------------------------------------------


def burst(base, peak, start_s, end_s):
    return lambda t: peak if start_s <= t < end_s else base


def test_burst_panics_within_one_tick():
    actions, _, _, _ = run(policy(), burst(5.0, 30.0, 120, 180), 130)
    assert actions[0][0] == 120
    first = actions[0][1]
    # Panic window at 120 s: seconds 115-120, two of them at 30: (4 x 5 + 2 x 30) / 6.
    assert first.replicas == math.ceil((4 * 5 + 2 * 30) / 6 / TARGET) == 3
    assert "panic mode" in first.reason


def test_panic_scale_up_is_limited_by_the_rate():
    config = KpaConfig(max_scale_up_rate=2.0)
    actions, history, _, _ = run(policy(config=config, high=100), burst(5.0, 200.0, 60, 400),
                                 140)
    ready_at = {t: ready for t, _, ready, _ in history}
    ups = [(t, a.replicas) for t, a in actions]
    assert len(ups) >= 3
    for t, replicas in ups:
        assert replicas <= math.ceil(2.0 * max(1, ready_at[t]))
    assert ups[-1][1] == math.ceil(200.0 / TARGET)


def test_no_scale_down_while_panicking_and_panic_ends_a_stable_window_later():
    # Simulated seconds throughout (the policy's clock, not the test's): 5 in flight, a
    # burst to 60 over [start, end), then 5 again.
    config = KpaConfig()
    start_s, end_s = 120, 150
    actions, history, state, _ = run(policy(), burst(5.0, 60.0, start_s, end_s), 400)
    peak = max(replicas for _, replicas, *_ in history)
    assert peak == math.ceil(60 / TARGET)
    panic_times = {panic_s for *_, panic_s in history if panic_s is not None}
    assert min(panic_times) == start_s
    # Knative's panicTime is the last tick over the threshold (here while few replicas were
    # ready, early in the burst), not the end of the burst.
    last_over_s = max(panic_times)
    load = burst(5.0, 60.0, start_s, end_s)
    assert load(last_over_s) == 60.0
    first_down_s = next(now[0] for before, now in itertools.pairwise(history)
                        if now[1] < before[1])
    # Once the panic window has slid past the burst it sees only 5 in flight (one replica's
    # worth), yet the count never falls while panicking...
    assert all(now[1] >= before[1] for before, now in itertools.pairwise(history)
               if now[3] is not None)
    # ...and comes down at the first decision out of panic mode, a stable window's worth of
    # decisions after the last one over the threshold.
    out_of_panic_s = next(t for t, _, _, panic_s in history
                          if t > last_over_s and panic_s is None)
    assert first_down_s == out_of_panic_s
    held = [t for t, *_ in history if last_over_s < t < out_of_panic_s]
    assert len(held) == config.stable_window_s / config.tick_s
    assert "stable mode" in dict(actions)[first_down_s].reason
    assert not state.stage("a").decider.panicking
    assert history[-1][1] == 1


# --- ramps and rate limits ----------------------------------------------------------------------


def window_mean(load, now_s, window_s):
    """Knative's linear stable average, worked out independently: every second holds the
    load of the observation (every 2 s) that covered it; the mean over the seconds of the
    window since the first one."""
    seconds = [s for s in range(int(now_s) - window_s + 1, int(now_s) + 1) if s >= 0]
    return sum(load(2 * math.ceil(s / 2)) for s in seconds) / len(seconds)


def ramp(low, high, up_s, hold_s, down_s):
    def load(t):
        if t < up_s:
            return low + (high - low) * t / up_s
        if t < up_s + hold_s:
            return high
        return max(low, high - (high - low) * (t - up_s - hold_s) / down_s)
    return load


def test_ramp_up_then_down():
    load = ramp(2.0, 60.0, 120, 60, 120)
    actions, history, _, _ = run(policy(), load, 500)
    ready_at = {t: ready for t, _, ready, _ in history}
    # The first steps double a single replica: panic. Once it ends, stable mode follows
    # the 60-s average, which lags a ramp by half a window: the count dips at panic exit.
    assert "panic mode" in actions[0][1].reason
    for t, action in actions:
        if "stable mode" in action.reason:
            wanted = math.ceil(window_mean(load, t, 60) / TARGET)
            assert action.replicas == max(wanted, math.floor(ready_at[t] / 2)), t
    counts = [r for _, r, *_ in history]
    assert max(counts) == math.ceil(60 / TARGET)
    down = [r for t, r, *_ in history if t >= 180]
    assert down == sorted(down, reverse=True)
    assert counts[-1] == 1


def test_scale_down_is_limited_by_the_rate():
    # A 6-s stable window follows the load quickly, so the rate limit shows.
    config = KpaConfig(stable_window_s=6)
    load = burst(1.0, 500.0, 0, 60)
    actions, history, _, _ = run(policy(config=config, high=100), load, 120)
    ready_at = {t: ready for t, _, ready, _ in history}
    downs = [(t, a.replicas) for t, a in actions if t >= 60]
    assert downs[-1][1] == 1
    halved = 0
    for t, replicas in downs:
        wanted = math.ceil(window_mean(load, t, 6) / TARGET)
        assert replicas == max(wanted, math.floor(ready_at[t] / 2))
        halved += replicas == math.floor(ready_at[t] / 2) > wanted
    assert halved >= 2


def test_scale_down_delay_postpones_the_scale_down():
    load = burst(1.0, 30.0, 0, 100)
    plain, _, _, _ = run(policy(), load, 400)
    delayed, _, _, _ = run(policy(config=KpaConfig(scale_down_delay_s=30)), load, 400)
    first_down = next(t for t, a in plain if t >= 100)
    first_delayed_down = next(t for t, a in delayed if t >= 100)
    assert first_delayed_down - first_down == pytest.approx(30.0, abs=2.0)
    assert [a.replicas for t, a in plain if t < 100] == [a.replicas for t, a in delayed
                                                         if t < 100]


# --- replicas that never become ready, zero load --------------------------------------------------


@pytest.mark.parametrize(("in_flight", "never_ready"), [(15.0, 1), (26.0, 4)])
def test_replicas_that_never_become_ready_cause_no_runaway(in_flight, never_ready):
    cluster = Cluster(1, never_ready=never_ready)
    actions, history, _, _ = run(policy(), constant(in_flight), 600, cluster=cluster)
    wanted = math.ceil(in_flight / TARGET)
    assert [a.replicas for _, a in actions] == [wanted]
    assert history[-1][2] == wanted - never_ready


@pytest.mark.parametrize(("low", "final"), [(0, 0), (1, 1), (2, 2)])
def test_zero_load_goes_to_min_scale(low, final):
    scaler = policy(low=low)
    _, _, state, cluster = run(scaler, constant(20.0), 120)
    assert len(cluster.ready_at) == 4
    actions, history, _, _ = run(scaler, constant(0.0), 300, cluster=cluster, state=state,
                                 start_s=120)
    assert history[-1][1] == final
    counts = [a.replicas for _, a in actions]
    assert counts == sorted(counts, reverse=True)


def test_traffic_after_scale_to_zero_brings_a_replica_back():
    scaler = policy(low=0)
    _, _, state, cluster = run(scaler, constant(0.0), 200)
    assert len(cluster.ready_at) == 0
    actions, _, _, _ = run(scaler, constant(3.0), 10, cluster=cluster, state=state,
                           start_s=200)
    assert [a.replicas for _, a in actions] == [1]


# --- the contract ------------------------------------------------------------------------------


def test_reason_names_mode_observed_value_target_and_limits():
    actions, _, _, _ = run(policy(), constant(20.0), 2)
    (_, action), = actions
    assert action.stage == "a"
    assert action.cores == 1.0
    for expected in ("panic mode", "concurrency 20", "target 5.6", "rate limits [0, 1000]",
                     "replicas 1..20"):
        assert expected in action.reason


def test_a_stage_without_an_observation_gets_no_decision():
    scaler = policy()
    state = scaler.initial_state()
    actions, after = scaler.decide(Observation(0.0, {}), state, 0.0)
    assert actions == []
    assert after == state


def test_decide_mutates_nothing():
    scaler = policy()
    _, _, state, cluster = run(scaler, burst(5.0, 40.0, 30, 60), 40)
    assert isinstance(state, HorizontalState)
    seen = observe(40.0, 12.0, cluster.replicas(40.0))
    kept_state, kept_seen, kept_policy = (copy.deepcopy(state), copy.deepcopy(seen),
                                          copy.deepcopy(scaler))
    scaler.decide(seen, state, 40.0)
    assert state == kept_state
    assert seen == kept_seen
    assert scaler == kept_policy
    assert scaler.scaling == kept_policy.scaling


def test_same_inputs_same_decisions():
    first = run(policy(), burst(5.0, 40.0, 60, 90), 300)[0]
    second = run(policy(), burst(5.0, 40.0, 60, 90), 300)[0]
    assert first == second
