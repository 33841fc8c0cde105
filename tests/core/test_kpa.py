"""The KPA re-implementation against values worked out by hand from Knative's definitions
(knative/serving knative-v1.23.0: pkg/autoscaler/aggregation/bucketing.go,
pkg/autoscaler/scaling/autoscaler.go, pkg/reconciler/autoscaling/kpa/scaler.go)."""

import copy
import math

import pytest
from sluice_core.scaling.kpa import (
    ACTIVATING,
    ACTIVE,
    INACTIVE,
    PROXY,
    SERVE,
    DeciderState,
    DelayWindow,
    KpaConfig,
    KpaState,
    MetricWindows,
    PodAutoscalerState,
    ScaleDecision,
    WindowedAverage,
    apply_bounds,
    decide_scale,
    kpa_step,
    reconcile_scale,
    smoothing_coefficient,
)

# --- configuration -----------------------------------------------------------------------


def test_defaults_are_knatives():
    config = KpaConfig()
    assert config.stable_window_s == 60
    assert config.panic_window_s == 6  # 10% of 60 s
    assert config.stable_buckets == 60
    assert config.panic_threshold == 2.0
    assert config.target_utilization == 0.7
    assert (config.max_scale_up_rate, config.max_scale_down_rate) == (1000, 2)
    assert config.scale_down_delay_s == 0
    assert config.initial_scale == 1
    assert config.enable_scale_to_zero
    assert config.scale_to_zero_grace_period_s == 30
    assert config.target_burst_capacity == 211
    assert config.default_total("concurrency") == 100
    assert config.default_total("rps") == 200
    assert config.aggregation == "linear"
    assert config.tick_s == 2


@pytest.mark.parametrize(
    ("stable_s", "percentage", "panic_s"),
    [
        (60, 10, 6),
        (60, 1, 1),      # 0.6 s rounds to 1 s
        (10, 1, 1),      # 0.1 s is below a bucket: one bucket
        (25, 10, 3),     # 2.5 s rounds half away from zero, as Go's Duration.Round
        (3600, 100, 3600),
    ],
)
def test_panic_window(stable_s, percentage, panic_s):
    config = KpaConfig(stable_window_s=stable_s, panic_window_percentage=percentage)
    assert config.panic_window_s == panic_s


@pytest.mark.parametrize(
    ("total", "utilization", "target"),
    [(100, 0.7, 70.0), (8, 0.7, 5.6), (10, 1.0, 10.0), (0.005, 0.7, 0.01)],
)
def test_target_is_total_times_utilization_at_least_the_minimum(total, utilization, target):
    assert KpaConfig(target_utilization=utilization).target(total) == pytest.approx(target)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"stable_window_s": 5}, "stable_window_s"),
        ({"stable_window_s": 60.5}, "stable_window_s"),
        ({"panic_window_percentage": 0.5}, "panic_window_percentage"),
        ({"target_utilization": 0}, "target_utilization"),
        ({"target_utilization": 1.5}, "target_utilization"),
        ({"max_scale_up_rate": 1.0}, "max_scale_up_rate"),
        ({"max_scale_down_rate": 1.0}, "max_scale_down_rate"),
        ({"scale_down_delay_s": -2}, "scale_down_delay_s"),
        ({"scale_down_delay_s": 1.5}, "scale_down_delay_s"),
        ({"initial_scale": 0}, "initial_scale"),
        ({"activation_scale": 1}, "activation_scale"),
        ({"target_burst_capacity": -2}, "target_burst_capacity"),
        ({"aggregation": "median"}, "aggregation"),
        ({"tick_s": 0.5}, "tick_s"),
    ],
)
def test_invalid_configs_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        KpaConfig(**changes)


def test_target_refuses_a_non_positive_total():
    with pytest.raises(ValueError, match="total"):
        KpaConfig().target(0)


# --- windowed averaging ------------------------------------------------------------------


def series(window_s, writes):
    buckets = WindowedAverage(window_s)
    for second, value in writes:
        buckets = buckets.record(second, value)
    return buckets


@pytest.mark.parametrize(
    ("window_s", "writes", "now_s", "average"),
    [
        # Two buckets since the first write: (4 + 6) / 2.
        (5, [(10, 4), (11, 6)], 11, 5.0),
        # A fractional now reads the bucket it falls in.
        (5, [(10, 4), (11, 6)], 11.9, 5.0),
        # Seconds 11 and 12 were missed: zeros, (4 + 0 + 0 + 6) / 4.
        (5, [(10, 4), (13, 6)], 13, 2.5),
        # A full window: (1 + 2 + 3 + 4 + 5) / 5.
        (5, [(10, 1), (11, 2), (12, 3), (13, 4), (14, 5)], 14, 3.0),
        # Two seconds without data: buckets 10 and 11 leave the window, (3 + 4 + 5) / 3.
        (5, [(10, 1), (11, 2), (12, 3), (13, 4), (14, 5)], 16, 4.0),
        # A young series read late: both buckets still in the window, (2 + 4) / 2.
        (5, [(10, 2), (11, 4)], 13, 3.0),
        # A whole window without data: zero.
        (5, [(10, 1), (11, 2), (12, 3), (13, 4), (14, 5)], 19, 0.0),
        # A write a whole window after the last starts afresh.
        (5, [(10, 100), (15, 2)], 15, 2.0),
        # The window slides: only the last three of five writes, (3 + 4 + 5) / 3.
        (3, [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)], 5, 4.0),
        # Rounded to six decimals: 4 / 3.
        (5, [(1, 1), (2, 1), (3, 2)], 3, 1.333333),
        # A second written twice keeps the latest value.
        (5, [(10, 4), (10, 8)], 10, 8.0),
        # A late write inside the window lands in its own bucket: (7 + 6) / 2.
        (5, [(10, 4), (11, 6), (10, 7)], 11, 6.5),
        # A write older than a window before the last is ignored.
        (5, [(10, 4), (11, 6), (3, 100)], 11, 5.0),
        # A late write before the first extends the series: (3 + 0 + 4 + 6) / 4.
        (5, [(10, 4), (11, 6), (8, 3)], 11, 3.25),
        # Nothing written.
        (5, [], 3, 0.0),
    ],
)
def test_linear_average_by_hand(window_s, writes, now_s, average):
    assert series(window_s, writes).linear_average(now_s) == pytest.approx(average, abs=1e-9)


@pytest.mark.parametrize(
    ("writes", "now_s", "empty"),
    [([], 0, True), ([(14, 1)], 19, False), ([(14, 1)], 20, True), ([(14, 1)], 14, False)],
)
def test_is_empty_after_a_whole_window_without_data(writes, now_s, empty):
    assert series(5, writes).is_empty(now_s) is empty


@pytest.mark.parametrize(
    ("buckets", "smoothing"),
    [
        (4, 0.9),                                  # 1 - 0.0001 ** (1/4)
        (6, 1 - 0.0001 ** (1 / 6)),                # about 0.785
        (60, 0.2),                                 # 0.142 is below the minimum
    ],
)
def test_smoothing_coefficient(buckets, smoothing):
    assert smoothing_coefficient(buckets) == pytest.approx(smoothing)


@pytest.mark.parametrize(
    ("now_s", "average"),
    [
        # Newest first: 5*0.9 + 5*0.9*0.1 + 10*0.9*0.01 + 10*0.9*0.001.
        (4, 5.049),
        # One second without data counts as a zero bucket in front of them.
        (5, 5 * 0.09 + 5 * 0.009 + 10 * 0.0009),
        # A whole window later: nothing.
        (9, 0.0),
    ],
)
def test_weighted_average_by_hand(now_s, average):
    buckets = series(4, [(1, 10), (2, 10), (3, 5), (4, 5)])
    assert buckets.weighted_average(now_s) == pytest.approx(average)
    assert buckets.average(now_s, "weighted-exponential") == pytest.approx(average)


def test_weighted_average_weighs_recent_buckets_more():
    rising = series(4, [(1, 5), (2, 5), (3, 10), (4, 10)])
    falling = series(4, [(1, 10), (2, 10), (3, 5), (4, 5)])
    assert rising.linear_average(4) == falling.linear_average(4) == 7.5
    assert rising.weighted_average(4) > 7.5 > falling.weighted_average(4)


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_record_refuses_impossible_values(value):
    with pytest.raises(ValueError, match="finite"):
        WindowedAverage(5).record(1, value)


def test_record_does_not_change_the_series_it_is_called_on():
    before = series(5, [(1, 1), (2, 2)])
    kept = copy.deepcopy(before)
    before.record(3, 9)
    assert before == kept


# --- observations into buckets -------------------------------------------------------------


def observed(config, observations):
    windows = MetricWindows.empty(config)
    for now_s, value in observations:
        windows = windows.observe(now_s, value)
    return windows


@pytest.mark.parametrize(
    "observations",
    [
        [(0, 10), (2, 20)],                  # every 2 s: the second fills buckets 1 and 2
        [(0, 10), (1, 20), (2, 20)],         # every second
        [(0.5, 10), (2.5, 20)],              # every 2 s, off the second
    ],
)
def test_observations_fill_every_second_they_cover(observations):
    windows = observed(KpaConfig(), observations)
    assert [windows.stable.bucket(s) for s in range(3)] == [10, 20, 20]
    # (10 + 20 + 20) / 3 in both windows: three seconds of data so far.
    assert windows.values(2) == pytest.approx((16.666667, 16.666667))


def test_panic_window_forgets_before_the_stable_window():
    config = KpaConfig()
    observations = [(t, 10.0) for t in range(0, 60, 2)] + [(t, 40.0) for t in (60, 62, 64)]
    stable, panic = observed(config, observations).values(64)
    # Panic: the last 6 s are all 40. Stable: seconds 5..64, 54 of 10 and 6 of 40.
    assert panic == pytest.approx(40.0)
    assert stable == pytest.approx((54 * 10 + 6 * 40) / 60)


def test_a_long_silence_means_no_data():
    windows = observed(KpaConfig(), [(0, 5.0)])
    assert windows.values(60) is not None
    assert windows.values(61) is None


def test_observations_must_not_go_back():
    windows = observed(KpaConfig(), [(10, 1.0)])
    with pytest.raises(ValueError, match="back in time"):
        windows.observe(9, 1.0)


# --- the scale-down delay window -------------------------------------------------------------


def test_delay_window_keeps_the_largest_count_for_its_span():
    window = DelayWindow.for_delay(10, 2)  # five 2-s slots
    assert window.size == 5
    currents = []
    for now_s, count in [(0, 4), (2, 2), (4, 3), (8, 1), (10, 1), (12, 1), (14, 1), (18, 1)]:
        window = window.record(now_s, count)
        currents.append(window.current())
    # 4 (slot 0) holds through slot 4; 3 (slot 2) through slot 6; then 1.
    assert currents == [4, 4, 4, 4, 3, 3, 1, 1]


def test_delay_window_takes_the_larger_of_two_counts_in_one_slot():
    window = DelayWindow.for_delay(10, 2).record(4, 5).record(5, 2)
    assert window.current() == 5


# --- Scale(): the decider -----------------------------------------------------------------


def decide(stable, panic, ready, *, target=10.0, config=None, state=None, now_s=100.0):
    config = config or KpaConfig(target_utilization=1.0)
    state = state or DeciderState.initial(config)
    # With utilisation 1 the total is the target.
    return decide_scale(config, target / config.target_utilization, stable, panic, ready,
                        state, now_s)


@pytest.mark.parametrize(
    ("case", "stable", "panic", "ready", "config", "desired", "mode"),
    [
        ("steady: ceil(35/10)", 35, 35, 4, {}, 4, "stable"),
        ("scale down at most halves", 5, 5, 8, {}, 4, "stable"),
        ("scale down to zero from one", 0, 0, 1, {}, 0, "stable"),
        ("zero ready counts as one", 25, 25, 0, {}, 3, "panic"),
        ("scale up limited by the rate", 100, 100, 3, {"max_scale_up_rate": 2}, 6, "panic"),
        # Knative's own example: MSUR 1.1, 3 wanted, 2 ready: ceil(2.2) lets 3 through.
        ("slow rate still grows a pod", 30, 30, 2, {"max_scale_up_rate": 1.1}, 3, "stable"),
        ("panic at exactly the threshold", 10, 40, 2, {}, 4, "panic"),
        ("just below the threshold", 10, 30, 2, {}, 1, "stable"),  # stable: ceil(10/10)
        ("panic takes the larger: panic", 50, 100, 1, {}, 10, "panic"),
        ("scale-down rate 1.1 from 100", 1, 1, 100, {"max_scale_down_rate": 1.1}, 90, "stable"),
        ("activation scale lifts 1 to 2", 10, 10, 1, {"activation_scale": 2}, 2, "stable"),
        ("activation scale leaves 0", 0, 0, 1, {"activation_scale": 2}, 0, "stable"),
    ],
)
def test_decisions(case, stable, panic, ready, config, desired, mode):
    decision, _ = decide(stable, panic, ready, config=KpaConfig(target_utilization=1.0,
                                                                **config))
    assert (decision.desired_pods, decision.mode) == (desired, mode), case


def test_decision_reports_its_figures():
    decision, _ = decide(35, 52, 4)
    assert (decision.stable_pods, decision.panic_pods) == (4, 6)
    assert (decision.max_scale_down, decision.max_scale_up) == (2, 4000)
    assert decision.target == 10.0
    assert decision.ready_pods == 4


@pytest.mark.parametrize(
    ("stable", "panic", "ready", "target", "max_panic", "desired"),
    [
        (50, 30, 5, 1.0, 5, 50),     # the stable count is larger: panic provisions for it
        (20, 30, 5, 1.0, 5, 30),     # the panic count is larger
        (10, 10, 10, 10.0, 10, 10),  # wants 5, holds the 10 panic reached: no scale down
    ],
)
def test_panic_mode_takes_the_larger_count_and_never_shrinks(stable, panic, ready, target,
                                                            max_panic, desired):
    state = DeciderState(panic_time_s=95.0, max_panic_pods=max_panic)
    decision, after = decide(stable, panic, ready, target=target, state=state)
    assert decision.panicking
    assert decision.desired_pods == desired
    assert after.max_panic_pods == desired


@pytest.mark.parametrize(
    ("panic_time_s", "panicking", "desired"),
    [
        (45.0, True, 10),   # 55 s since the last tick over the threshold: still panicking
        (40.0, True, 10),   # exactly the stable window: Knative needs strictly more
        (39.0, False, 5),   # 61 s: back to stable, which may halve 10 ready to 5
    ],
)
def test_panic_ends_a_stable_window_after_the_last_tick_over_the_threshold(
        panic_time_s, panicking, desired):
    state = DeciderState(panic_time_s=panic_time_s, max_panic_pods=10)
    decision, after = decide(1, 1, 10, state=state, now_s=100.0)
    assert (decision.panicking, decision.desired_pods) == (panicking, desired)
    assert after.panicking is panicking
    assert after.max_panic_pods == (10 if panicking else 0)


def test_panic_is_extended_while_over_the_threshold():
    _, entered = decide(10, 40, 1, now_s=100.0)
    assert entered.panic_time_s == 100.0
    _, extended = decide(10, 40, 2, state=entered, now_s=130.0)
    assert extended.panic_time_s == 130.0


def test_restarted_autoscaler_starts_in_panic_holding_its_ready_pods():
    config = KpaConfig(target_utilization=1.0)
    state = DeciderState.initial(config, ready_pods=6, now_s=10.0)
    decision, _ = decide(0, 0, 6, config=config, state=state, now_s=12.0)
    assert decision.panicking
    assert decision.desired_pods == 6
    assert not DeciderState.initial(config, ready_pods=1).panicking


def test_scale_down_delay_holds_the_largest_recent_count():
    config = KpaConfig(target_utilization=1.0, scale_down_delay_s=10,
                       max_scale_down_rate=100, panic_threshold_percentage=1000)
    state = DeciderState.initial(config)
    counts = []
    for now_s, value, ready in [(0, 40, 4), (2, 0, 4), (8, 0, 4), (10, 0, 4)]:
        decision, state = decide(value, value, ready, config=config, state=state, now_s=now_s)
        counts.append((decision.desired_pods, decision.undelayed_pods))
    assert counts == [(4, None), (4, 0), (4, 0), (0, None)]


@pytest.mark.parametrize(
    ("tbc", "ready", "panic", "excess"),
    [
        (211, 3, 50, math.floor(3 * 100 - 211 - 50)),  # 39: enough spare capacity
        (211, 1, 50, math.floor(100 - 211 - 50)),      # negative: activator in the path
        (0, 1, 50, 0),
        (-1, 9, 0, -1),
    ],
)
def test_excess_burst_capacity(tbc, ready, panic, excess):
    config = KpaConfig(target_burst_capacity=tbc)
    decision, _ = decide_scale(config, 100.0, 10, panic, ready, DeciderState.initial(config),
                               0.0)
    assert decision.excess_burst_capacity == excess


def test_decide_does_not_mutate_its_state():
    config = KpaConfig(scale_down_delay_s=10)
    state = DeciderState(panic_time_s=1.0, max_panic_pods=3,
                         delay=DelayWindow.for_delay(10, 2).record(0, 3))
    kept = copy.deepcopy(state)
    decide_scale(config, 10.0, 50, 90, 3, state, 2.0)
    assert state == kept


# --- the PodAutoscaler reconciler -----------------------------------------------------------


def wanting(pods, *, excess=-1.0):
    return ScaleDecision(desired_pods=pods, panicking=False, observed_stable=0.0,
                         observed_panic=0.0, target=1.0, total=1.0, stable_pods=pods,
                         panic_pods=pods, max_scale_up=1000, max_scale_down=0, ready_pods=1,
                         undelayed_pods=None, excess_burst_capacity=excess)


@pytest.mark.parametrize(
    ("low", "high", "desired", "bounded"),
    [(1, 4, 7, 4), (2, 4, 0, 2), (0, 0, 50, 50), (1, 4, 3, 3)],
)
def test_apply_bounds(low, high, desired, bounded):
    assert apply_bounds(low, high, desired) == bounded


def test_reconcile_applies_min_and_max_scale():
    state = PodAutoscalerState(replicas=2, status=ACTIVE, status_since_s=0.0,
                               initialized=True)
    result, _ = reconcile_scale(KpaConfig(), wanting(9), 1, 4, 2, state, 10.0)
    assert (result.replicas, result.bounded) == (4, 4)


def test_initial_scale_holds_until_reached_once():
    config = KpaConfig(initial_scale=3)
    state = PodAutoscalerState(replicas=3)
    result, state = reconcile_scale(config, wanting(1), 1, 10, 1, state, 0.0)
    assert result.replicas == 3
    assert not state.initialized
    assert state.status == ACTIVATING
    result, state = reconcile_scale(config, wanting(1), 1, 10, 3, state, 2.0)
    assert result.replicas == 3  # reached now; the floor goes from the next reconcile
    assert state.initialized
    assert state.status == ACTIVE
    result, _ = reconcile_scale(config, wanting(1), 1, 10, 3, state, 4.0)
    assert result.replicas == 1


def test_no_decision_changes_nothing():
    state = PodAutoscalerState(replicas=3, status=ACTIVE, status_since_s=0.0)
    result, after = reconcile_scale(KpaConfig(), None, 1, 10, 3, state, 5.0)
    assert result.replicas == 3
    assert after == state


def test_scale_to_zero_disabled_keeps_one():
    config = KpaConfig(enable_scale_to_zero=False)
    state = PodAutoscalerState(replicas=1, status=ACTIVE, status_since_s=0.0)
    result, _ = reconcile_scale(config, wanting(0), 0, 10, 1, state, 500.0)
    assert result.replicas == 1


def test_scale_to_zero_with_the_activator_already_in_the_path():
    config = KpaConfig()
    state = PodAutoscalerState(replicas=1, status=ACTIVE, status_since_s=0.0,
                               initialized=True, sks_mode=PROXY, sks_since_s=0.0)
    # Active for 100 s >= the stable window: marked inactive, the pod stays this time.
    result, state = reconcile_scale(config, wanting(0), 0, 10, 1, state, 100.0)
    assert result.replicas == 1
    assert state.status == INACTIVE
    # Proxied for 102 s >= the grace period: the last pod goes.
    result, state = reconcile_scale(config, wanting(0), 0, 10, 1, state, 102.0)
    assert result.replicas == 0


def test_scale_to_zero_waits_the_grace_period_when_the_activator_was_not_in_the_path():
    config = KpaConfig()
    state = PodAutoscalerState(replicas=1, status=ACTIVE, status_since_s=0.0,
                               initialized=True, sks_mode=SERVE, sks_since_s=0.0)
    replicas = []
    for now_s in range(100, 134, 2):
        result, state = reconcile_scale(config, wanting(0), 0, 10, 1, state, float(now_s))
        replicas.append((now_s, result.replicas))
    # Inactive (and proxied) from 100 s: the pod goes 30 s later.
    assert next(t for t, r in replicas if r == 0) == 130
    assert all(r == 1 for t, r in replicas if t < 130)


def test_recently_active_stage_scales_to_one_not_zero():
    state = PodAutoscalerState(replicas=3, status=ACTIVE, status_since_s=90.0,
                               initialized=True)
    result, after = reconcile_scale(KpaConfig(), wanting(0), 0, 10, 3, state, 100.0)
    assert result.replicas == 1
    assert after.status == ACTIVE


def test_retention_period_keeps_the_last_pod():
    config = KpaConfig(scale_to_zero_pod_retention_period_s=60)
    state = PodAutoscalerState(replicas=1, status=INACTIVE, status_since_s=0.0,
                               initialized=True, sks_mode=PROXY, sks_since_s=-100.0)
    result, _ = reconcile_scale(config, wanting(0), 0, 10, 1, state, 40.0)
    assert result.replicas == 1
    result, _ = reconcile_scale(config, wanting(0), 0, 10, 1, state, 60.0)
    assert result.replicas == 0


def test_traffic_from_zero_activates():
    state = PodAutoscalerState(replicas=0, status=INACTIVE, status_since_s=0.0,
                               initialized=True)
    result, after = reconcile_scale(KpaConfig(), wanting(2), 0, 10, 0, state, 50.0)
    assert result.replicas == 2
    assert after.status == ACTIVATING


def test_serve_mode_needs_spare_burst_capacity():
    state = PodAutoscalerState(replicas=3, status=ACTIVE, status_since_s=0.0,
                               initialized=True)
    _, served = reconcile_scale(KpaConfig(), wanting(3, excess=5), 1, 10, 3, state, 2.0)
    _, proxied = reconcile_scale(KpaConfig(), wanting(3, excess=-5), 1, 10, 3, state, 2.0)
    assert (served.sks_mode, proxied.sks_mode) == (SERVE, PROXY)


# --- one tick end to end -----------------------------------------------------------------------


def test_kpa_step_converges_on_steady_load():
    config = KpaConfig()
    state = KpaState.initial(config, 1)
    replicas, ready = 1, 0
    for now_s in range(0, 120, 2):
        step, state = kpa_step(config, 10.0, 20.0, ready, 1, 10, state, float(now_s))
        replicas, ready = step.replicas, step.replicas
    # 20 in flight / (10 x 0.7) per replica = 2.86.
    assert replicas == 3
