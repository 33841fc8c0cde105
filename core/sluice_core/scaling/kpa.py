"""Knative's Pod Autoscaler (KPA), re-implemented as pure functions over immutable state.

Read from knative/serving at tag ``knative-v1.23.0`` (Go module ``knative.dev/serving``
v0.50.0) and re-expressed here, not translated line by line:

- ``pkg/autoscaler/scaling/autoscaler.go``, ``Scale()``: the desired pod counts from the
  stable and panic averages over the target, clamped to the rate limits computed from the
  ready pods (zero ready counts as one), activation scale, panic entry when the panic count
  over the ready pods reaches the panic threshold, panic held for a stable window after the
  last tick over it and never scaling down meanwhile, and the scale-down delay window.
  :func:`decide_scale` here.
- ``pkg/autoscaler/scaling/multiscaler.go``: one decision every ``tickInterval`` (2 s).
- ``pkg/autoscaler/metrics/collector.go``: a scrape a second, each recorded into a stable
  and a panic bucket series per metric (concurrency, requests per second).
- ``pkg/autoscaler/aggregation/bucketing.go``: ``TimedFloat64Buckets`` (the linear average,
  Knative's default when ``autoscaling.knative.dev/metric-aggregation-algorithm`` is unset)
  and ``WeightedFloat64Buckets`` (weighted-exponential). :class:`WindowedAverage` here.
- ``pkg/autoscaler/aggregation/max/{window,timewindow}.go``: the maximum over the
  scale-down delay. :class:`DelayWindow` here.
- ``pkg/autoscaler/config/config.go`` and ``config/core/configmaps/autoscaler.yaml``: the
  defaults and their validation; ``pkg/apis/autoscaling/register.go``: the bounds.
  :class:`KpaConfig` here.
- ``pkg/reconciler/autoscaling/resources/{metric,target}.go``: the panic window from its
  percentage of the stable window; the target as the per-pod total times the utilisation.
- ``pkg/reconciler/autoscaling/kpa/{scaler,kpa}.go``: what the PodAutoscaler reconciler
  does with the decider's count: min/max scale, initial scale until the target has been
  reached once, scale to zero (the PA turns inactive first, then the last pod goes after
  the grace period or once the activator has been in the path that long) and the Active
  condition. :func:`reconcile_scale` here.

Where this differs from Knative, on purpose:

- Every function returns the next state instead of mutating the autoscaler.
- Knative's buckets add every stat recorded in a second (scraper and activator stats share
  one); here one observation stands for the whole stage, so a second written twice keeps
  the latest value. An observation averaged over several seconds fills each of them.
- The reconciler runs once per decision (Knative also reconciles on other events, which
  moves its timing by at most a tick). The activator probe succeeds at once; the
  ServerlessService is in proxy mode (activator in the path) unless the decider wants pods
  and the excess burst capacity is non-negative, as in ``kpa.go``.
- Not modelled: unreachable revisions (a pipeline stage always has a route), the
  activation timeout (progress deadline) of a revision that never becomes ready while
  scaled to zero, ``containerConcurrency`` hard limits and the number of activators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

#: Knative's bucket size (``config.BucketSize``): one bucket a second.
BUCKET_S = 1
#: The smallest target Knative accepts (``autoscaling.TargetMin``).
TARGET_MIN = 0.01
#: Bounds of the stable window (``autoscaling.WindowMin`` / ``WindowMax``), in seconds.
STABLE_WINDOW_MIN_S = 6.0
STABLE_WINDOW_MAX_S = 3600.0

CONCURRENCY = "concurrency"
RPS = "rps"
METRICS = (CONCURRENCY, RPS)
LINEAR = "linear"
WEIGHTED_EXPONENTIAL = "weighted-exponential"
AGGREGATIONS = (LINEAR, WEIGHTED_EXPONENTIAL)

#: The PodAutoscaler's Active condition: Unknown, True, False.
ACTIVATING = "activating"
ACTIVE = "active"
INACTIVE = "inactive"
#: ServerlessService modes: the activator in the path, or traffic straight to the pods.
PROXY = "proxy"
SERVE = "serve"

# Weighted-exponential averaging (bucketing.go): the weights of a window sum to at least
# this much, and decay by at least this factor per bucket.
_WEIGHT_PRECISION = 0.9999
_MIN_SMOOTHING = 0.2
# WindowAverage rounds the linear average to this many decimal digits.
_AVERAGE_DIGITS = 6


@dataclass(frozen=True)
class KpaConfig:
    """The ``config-autoscaler`` ConfigMap (and the per-revision annotations that override
    it), with Knative's defaults. Durations are in seconds."""

    #: ``stable-window``: the averaging window of the stable mode.
    stable_window_s: float = 60.0
    #: ``panic-window-percentage``: the panic window as a percentage of the stable window.
    panic_window_percentage: float = 10.0
    #: ``panic-threshold-percentage``: panic when the panic window wants this share of the
    #: ready pods (200: twice as many).
    panic_threshold_percentage: float = 200.0
    #: ``container-concurrency-target-percentage`` (concurrency) and the RPS target
    #: utilisation, both 70% by default; a fraction in (0, 1].
    target_utilization: float = 0.7
    #: ``max-scale-up-rate``: at most this many times the ready pods in one decision.
    max_scale_up_rate: float = 1000.0
    #: ``max-scale-down-rate``: at least the ready pods divided by this.
    max_scale_down_rate: float = 2.0
    #: ``scale-down-delay``: scale down only to the largest count decided over this span.
    scale_down_delay_s: float = 0.0
    #: ``initial-scale``: pods a new revision starts with and keeps until reached once.
    initial_scale: int = 1
    #: ``autoscaling.knative.dev/activation-scale``: the smallest non-zero count (0: unset).
    activation_scale: int = 0
    #: ``enable-scale-to-zero``.
    enable_scale_to_zero: bool = True
    #: ``scale-to-zero-grace-period``: the activator must be in the path this long before
    #: the last pod goes.
    scale_to_zero_grace_period_s: float = 30.0
    #: ``scale-to-zero-pod-retention-period``: the last pod stays at least this long.
    scale_to_zero_pod_retention_period_s: float = 0.0
    #: ``target-burst-capacity``: spare capacity (in the metric's unit) below which the
    #: activator stays in the path; 0 never, -1 always.
    target_burst_capacity: float = 211.0
    #: ``container-concurrency-target-default``: the per-pod concurrency total when a
    #: revision names none.
    container_concurrency_target_default: float = 100.0
    #: ``requests-per-second-target-default``: the per-pod RPS total when none is named.
    rps_target_default: float = 200.0
    #: ``autoscaling.knative.dev/metric-aggregation-algorithm``: linear (default) or
    #: weighted-exponential.
    aggregation: str = LINEAR
    #: The multiscaler's tick: seconds between decisions (also the delay window's slot).
    tick_s: float = 2.0

    def __post_init__(self) -> None:
        def whole(value: float) -> bool:
            return float(value).is_integer()

        checks = (
            (STABLE_WINDOW_MIN_S <= self.stable_window_s <= STABLE_WINDOW_MAX_S
             and whole(self.stable_window_s),
             f"stable_window_s must be whole seconds in [{STABLE_WINDOW_MIN_S:g}, "
             f"{STABLE_WINDOW_MAX_S:g}], got {self.stable_window_s}"),
            (1.0 <= self.panic_window_percentage <= 100.0,
             f"panic_window_percentage must be in [1, 100], got {self.panic_window_percentage}"),
            (self.panic_threshold_percentage > 0,
             f"panic_threshold_percentage must be > 0, got {self.panic_threshold_percentage}"),
            (0 < self.target_utilization <= 1,
             f"target_utilization must be in (0, 1], got {self.target_utilization}"),
            (self.max_scale_up_rate > 1,
             f"max_scale_up_rate must be > 1, got {self.max_scale_up_rate}"),
            (self.max_scale_down_rate > 1,
             f"max_scale_down_rate must be > 1, got {self.max_scale_down_rate}"),
            (self.scale_down_delay_s >= 0 and whole(self.scale_down_delay_s),
             f"scale_down_delay_s must be whole seconds >= 0, got {self.scale_down_delay_s}"),
            (self.initial_scale >= 1,
             f"initial_scale must be >= 1, got {self.initial_scale}"),
            (self.activation_scale == 0 or self.activation_scale >= 2,
             f"activation_scale must be 0 (unset) or >= 2, got {self.activation_scale}"),
            (self.scale_to_zero_grace_period_s > 0,
             "scale_to_zero_grace_period_s must be > 0, got "
             f"{self.scale_to_zero_grace_period_s}"),
            (self.scale_to_zero_pod_retention_period_s >= 0,
             "scale_to_zero_pod_retention_period_s must be >= 0, got "
             f"{self.scale_to_zero_pod_retention_period_s}"),
            (self.target_burst_capacity >= 0 or self.target_burst_capacity == -1,
             f"target_burst_capacity must be >= 0 or -1, got {self.target_burst_capacity}"),
            (self.container_concurrency_target_default * self.target_utilization
             >= TARGET_MIN,
             "container_concurrency_target_default x target_utilization must be >= "
             f"{TARGET_MIN}"),
            (self.rps_target_default >= TARGET_MIN,
             f"rps_target_default must be >= {TARGET_MIN}, got {self.rps_target_default}"),
            (self.aggregation in AGGREGATIONS,
             f"aggregation must be one of {list(AGGREGATIONS)}, got {self.aggregation!r}"),
            (self.tick_s >= 1 and whole(self.tick_s),
             f"tick_s must be whole seconds >= 1, got {self.tick_s}"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def stable_buckets(self) -> int:
        """Buckets of the stable window (one a second)."""
        return math.ceil(self.stable_window_s / BUCKET_S)

    @property
    def panic_window_s(self) -> int:
        """The panic window: its percentage of the stable window, rounded to whole seconds
        (half away from zero, as Go's ``Duration.Round``) and at least one bucket."""
        return max(BUCKET_S, _round_half_away(self.stable_window_s
                                              * self.panic_window_percentage / 100.0))

    @property
    def panic_threshold(self) -> float:
        """The panic threshold as a ratio of desired panic pods to ready pods."""
        return self.panic_threshold_percentage / 100.0

    def default_total(self, metric: str) -> float:
        """The per-pod total of ``metric`` when the revision names no target."""
        _check_metric(metric)
        if metric == RPS:
            return self.rps_target_default
        return self.container_concurrency_target_default

    def target(self, total: float) -> float:
        """The per-pod value KPA aims for: the total (``autoscaling.knative.dev/target``)
        times the target utilisation, and at least :data:`TARGET_MIN`."""
        if total <= 0:
            raise ValueError(f"the per-pod total must be > 0, got {total}")
        return max(TARGET_MIN, total * self.target_utilization)


# --- the metric: per-second buckets, averaged over a window ----------------------------


@dataclass(frozen=True)
class WindowedAverage:
    """One series of per-second buckets over a window (Knative's ``TimedFloat64Buckets``).

    ``values`` holds the buckets of the seconds ``last_s - len(values) + 1`` to ``last_s``,
    oldest first, at most one window of them; seconds between writes count as zero.
    ``first_s`` is the first write since the series last stayed empty for a whole window:
    until a window has passed, averages divide by the buckets since then only.
    """

    window_s: int
    first_s: int | None = None
    last_s: int | None = None
    values: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.window_s < 1:
            raise ValueError(f"window_s must be >= 1, got {self.window_s}")

    def record(self, second: int, value: float) -> WindowedAverage:
        """This series with ``value`` as the bucket of ``second``.

        A write a whole window after the last one starts afresh; a gap shorter than that
        leaves zeros; a write older than a window before the last is ignored.
        """
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"a metric value must be finite and >= 0, got {value}")
        if self.last_s is None or self.first_s is None or second - self.last_s >= self.window_s:
            return replace(self, first_s=second, last_s=second, values=(value,))
        if second > self.last_s:
            gap = (0.0,) * (second - self.last_s - 1)
            values = (*self.values, *gap, value)[-self.window_s:]
            return replace(self, last_s=second, values=values)
        back = self.last_s - second
        if back >= self.window_s:
            return self
        values = self.values
        if back >= len(values):
            values = (0.0,) * (back - len(values) + 1) + values
        at = len(values) - 1 - back
        values = (*values[:at], value, *values[at + 1:])
        return replace(self, first_s=min(self.first_s, second), values=values)

    def bucket(self, second: int) -> float:
        """The value of ``second``'s bucket (zero when nothing was written there)."""
        if self.last_s is None:
            return 0.0
        back = self.last_s - second
        if 0 <= back < len(self.values):
            return self.values[len(self.values) - 1 - back]
        return 0.0

    def is_empty(self, now_s: float) -> bool:
        """Whether nothing was written in the window before ``now_s`` (Knative: no data)."""
        return self.last_s is None or math.floor(now_s) - self.last_s > self.window_s

    def linear_average(self, now_s: float) -> float:
        """The plain average over the window ending at ``now_s`` (Knative's default).

        Buckets older than a window before ``now_s`` drop out; the divisor is the number of
        buckets since the first write, at most the window less the seconds since the last
        write. Rounded to six decimals, as Knative does.
        """
        if self.last_s is None or self.first_s is None:
            return 0.0
        now = math.floor(now_s)
        since_last = now - self.last_s
        if since_last >= self.window_s:
            return 0.0
        written = self.last_s - self.first_s + 1
        if since_last <= 0:
            total = sum(self.values)
            count = min(written, self.window_s)
        else:
            oldest = now - self.window_s
            total = sum(self.bucket(s) for s in range(oldest + 1, self.last_s + 1))
            count = min(written, self.window_s - since_last)
        return _round_digits(total / count, _AVERAGE_DIGITS)

    def weighted_average(self, now_s: float) -> float:
        """The exponentially weighted average (Knative's weighted-exponential algorithm).

        The newest bucket weighs ``a``, each older one ``1 - a`` times the next; seconds
        since the last write count as zero buckets. ``a`` is the smallest decay whose
        weights over the window sum to 0.9999, and at least 0.2. No normalisation: a
        series younger than its window reads low, as in Knative.
        """
        if self.is_empty(now_s) or self.last_s is None:
            return 0.0
        now = math.floor(now_s)
        smoothing = smoothing_coefficient(self.window_s)
        weight = smoothing
        buckets = self.window_s
        if now > self.last_s:
            weight *= (1 - smoothing) ** (now - self.last_s)
            buckets -= now - self.last_s
        total = 0.0
        for back in range(buckets):
            total += self.bucket(self.last_s - back) * weight
            weight *= 1 - smoothing
        return total

    def average(self, now_s: float, aggregation: str = LINEAR) -> float:
        """The window's average at ``now_s`` by ``aggregation``."""
        if aggregation == WEIGHTED_EXPONENTIAL:
            return self.weighted_average(now_s)
        if aggregation != LINEAR:
            raise ValueError(f"aggregation must be one of {list(AGGREGATIONS)}, "
                             f"got {aggregation!r}")
        return self.linear_average(now_s)


def smoothing_coefficient(buckets: int) -> float:
    """The decay of the weighted-exponential average over ``buckets`` buckets."""
    return max(1 - (1 - _WEIGHT_PRECISION) ** (1 / buckets), _MIN_SMOOTHING)


@dataclass(frozen=True)
class MetricWindows:
    """The stable and panic series of one metric, fed by observations.

    Knative scrapes once a second and records each scrape into both series. An observation
    here is an average over the time since the previous one, so it fills every second it
    covers, ``(observed_s, now_s]``; the first observation fills its own second.
    """

    stable: WindowedAverage
    panic: WindowedAverage
    #: When the previous observation was made (None before the first).
    observed_s: float | None = None

    @classmethod
    def empty(cls, config: KpaConfig) -> MetricWindows:
        """No data yet, with ``config``'s stable and panic windows."""
        return cls(WindowedAverage(config.stable_buckets),
                   WindowedAverage(config.panic_window_s // BUCKET_S))

    def observe(self, now_s: float, value: float) -> MetricWindows:
        """These windows with ``value`` recorded over the seconds since the last observation."""
        if self.observed_s is not None and now_s < self.observed_s:
            raise ValueError(f"observations must not go back in time: {now_s} after "
                             f"{self.observed_s}")
        end = math.floor(now_s)
        start = end if self.observed_s is None else math.floor(self.observed_s) + 1
        # Seconds older than the stable window would be overwritten at once: skip them.
        start = min(max(start, end - self.stable.window_s + 1), end)
        stable, panic = self.stable, self.panic
        for second in range(start, end + 1):
            stable = stable.record(second, value)
            panic = panic.record(second, value)
        return MetricWindows(stable, panic, now_s)

    def values(self, now_s: float, aggregation: str = LINEAR) -> tuple[float, float] | None:
        """The (stable, panic) averages at ``now_s``, or None when the stable window holds
        no data (Knative's ``ErrNoData``: no decision)."""
        if self.stable.is_empty(now_s):
            return None
        return self.stable.average(now_s, aggregation), self.panic.average(now_s, aggregation)


# --- the decider: Scale() ----------------------------------------------------------------


@dataclass(frozen=True)
class DelayWindow:
    """The largest count decided over the scale-down delay (Knative's ``max.TimeWindow``):
    slots of ``granularity_s``, ``size`` of them; ``entries`` are (slot, count) pairs."""

    size: int
    granularity_s: int
    entries: tuple[tuple[int, int], ...] = ()

    @classmethod
    def for_delay(cls, delay_s: float, granularity_s: float) -> DelayWindow:
        """The window of a scale-down delay, in slots of one tick."""
        return cls(max(1, math.ceil(delay_s / granularity_s)), int(granularity_s))

    def record(self, now_s: float, count: int) -> DelayWindow:
        """This window with ``count`` decided at ``now_s``."""
        slot = math.floor(now_s) // self.granularity_s
        kept = [(s, c) for s, c in self.entries if slot - s < self.size and s != slot]
        same = [c for s, c in self.entries if s == slot]
        return replace(self, entries=(*kept, (slot, max([count, *same]))))

    def current(self) -> int:
        """The largest count in the window (0 when empty)."""
        return max((c for _, c in self.entries), default=0)


@dataclass(frozen=True)
class DeciderState:
    """What Knative's autoscaler keeps between decisions."""

    #: The last decision over the panic threshold, None when not panicking (``panicTime``).
    panic_time_s: float | None = None
    #: The most pods wanted since panic began (``maxPanicPods``): panic never scales down.
    max_panic_pods: int = 0
    #: The scale-down delay window, None when the delay is zero.
    delay: DelayWindow | None = None

    @classmethod
    def initial(cls, config: KpaConfig, ready_pods: int = 0,
                now_s: float = 0.0) -> DeciderState:
        """A new autoscaler. Knative starts one in panic mode, holding the ready pods, when
        it finds more than one ready (an autoscaler restart must not scale down before it
        has data); a new revision has none ready."""
        delay = (DelayWindow.for_delay(config.scale_down_delay_s, config.tick_s)
                 if config.scale_down_delay_s > 0 else None)
        if ready_pods > 1:
            return cls(now_s, ready_pods, delay)
        return cls(None, 0, delay)

    @property
    def panicking(self) -> bool:
        """Whether the decider is in panic mode."""
        return self.panic_time_s is not None


@dataclass(frozen=True)
class ScaleDecision:
    """One ``Scale()`` result with the figures behind it."""

    #: The pods the decider wants (before min/max scale and scale to zero).
    desired_pods: int
    panicking: bool
    observed_stable: float
    observed_panic: float
    #: The per-pod value aimed at, and the per-pod total it was derived from.
    target: float
    total: float
    #: ceil(observed / target), before the rate limits.
    stable_pods: int
    panic_pods: int
    #: The rate limits from the ready pods.
    max_scale_up: int
    max_scale_down: int
    ready_pods: int
    #: The count before the scale-down delay held it up, when it did.
    undelayed_pods: int | None
    #: Spare capacity beyond the target burst capacity (negative: activator in the path).
    excess_burst_capacity: float

    @property
    def mode(self) -> str:
        """``panic`` or ``stable``."""
        return "panic" if self.panicking else "stable"


def decide_scale(config: KpaConfig, total: float, observed_stable: float,
                 observed_panic: float, ready_pods: int, state: DeciderState,
                 now_s: float) -> tuple[ScaleDecision, DeciderState]:
    """Knative's ``Scale()``: the pods to run for the observed stable and panic averages.

    ``total`` is the per-pod value at full use (the ``target`` annotation); KPA aims at
    ``config.target(total)``. ``ready_pods`` sets the rate limits and the panic ratio.
    """
    target = config.target(total)
    ready = max(1, ready_pods)
    max_up = math.ceil(config.max_scale_up_rate * ready)
    max_down = math.floor(ready / config.max_scale_down_rate)
    stable_pods = math.ceil(observed_stable / target)
    panic_pods = math.ceil(observed_panic / target)
    desired_stable = min(max(stable_pods, max_down), max_up)
    desired_panic = min(max(panic_pods, max_down), max_up)
    if config.activation_scale > 1:
        if stable_pods > 0:
            desired_stable = max(desired_stable, config.activation_scale)
        if panic_pods > 0:
            desired_panic = max(desired_panic, config.activation_scale)

    over_threshold = panic_pods / ready >= config.panic_threshold
    panic_time, max_panic = state.panic_time_s, state.max_panic_pods
    if over_threshold:
        # Entering panic, or staying in it: the stable window counts from the last tick over.
        panic_time = now_s
    elif panic_time is not None and panic_time + config.stable_window_s < now_s:
        # The surge has made its way into the stable average.
        panic_time, max_panic = None, 0

    desired = desired_stable
    if panic_time is not None:
        desired = max(desired, desired_panic, max_panic)
        max_panic = desired

    delay, undelayed = state.delay, None
    if delay is not None:
        delay = delay.record(now_s, desired)
        if delay.current() != desired:
            undelayed, desired = desired, delay.current()

    if config.target_burst_capacity == 0:
        excess = 0.0
    elif config.target_burst_capacity > 0:
        excess = math.floor(ready_pods * total - config.target_burst_capacity - observed_panic)
    else:
        excess = -1.0

    decision = ScaleDecision(
        desired_pods=desired, panicking=panic_time is not None,
        observed_stable=observed_stable, observed_panic=observed_panic,
        target=target, total=total, stable_pods=stable_pods, panic_pods=panic_pods,
        max_scale_up=max_up, max_scale_down=max_down, ready_pods=ready_pods,
        undelayed_pods=undelayed, excess_burst_capacity=excess)
    return decision, DeciderState(panic_time, max_panic, delay)


# --- the PodAutoscaler reconciler: bounds, initial scale, scale to zero -------------------


@dataclass(frozen=True)
class PodAutoscalerState:
    """What the PodAutoscaler and its ServerlessService record between reconciles."""

    #: The scale target's replicas: what was last applied.
    replicas: int
    #: The Active condition and when it last changed (None: before the first reconcile).
    status: str = ACTIVATING
    status_since_s: float | None = None
    #: Whether the scale target has reached its initial scale once.
    initialized: bool = False
    #: The ServerlessService's mode and since when (a new revision starts proxied).
    sks_mode: str = PROXY
    sks_since_s: float | None = None


@dataclass(frozen=True)
class ReconcileResult:
    """The replicas to run after one reconcile, and why they differ from the decider's."""

    replicas: int
    #: The decider's count after min/max (and initial) scale.
    bounded: int
    #: Why scale to zero held or changed the count, empty when it did not apply.
    note: str = ""


def apply_bounds(min_scale: int, max_scale: int, desired: int) -> int:
    """``desired`` within [min_scale, max_scale]; a max of 0 means unbounded."""
    if desired < min_scale:
        return min_scale
    if max_scale > 0 and desired > max_scale:
        return max_scale
    return desired


def reconcile_scale(config: KpaConfig, decision: ScaleDecision | None, min_scale: int,
                    max_scale: int, ready_pods: int, state: PodAutoscalerState,
                    now_s: float) -> tuple[ReconcileResult, PodAutoscalerState]:
    """The PodAutoscaler reconciler: the replicas to run for the decider's count.

    Applies min/max scale (and the initial scale until it has been reached), then the
    scale-to-zero rules, then updates the Active condition and the ServerlessService mode.
    With no decision (no data) the replicas stay as they are.
    """
    if decision is None:
        return ReconcileResult(state.replicas, state.replicas, "no data"), state
    status_since = now_s if state.status_since_s is None else state.status_since_s
    sks_since = now_s if state.sks_since_s is None else state.sks_since_s
    lower = min_scale
    if config.initial_scale > 1 and not state.initialized:
        lower = max(config.initial_scale, min_scale)
    bounded = apply_bounds(lower, max_scale, decision.desired_pods)

    want, apply, note = bounded, True, ""
    if bounded == 0:
        want, apply, note = _scale_to_zero(config, state.status, now_s - status_since,
                                           state.sks_mode, now_s - sks_since)
    replicas = want if apply else state.replicas

    sks_mode = SERVE if want > 0 and decision.excess_burst_capacity >= 0 else PROXY
    if sks_mode != state.sks_mode:
        sks_since = now_s

    min_ready = max(min_scale, config.initial_scale if not state.initialized else 1)
    initialized = state.initialized or ready_pods >= min_ready
    status = state.status
    if want == 0:
        status = INACTIVE
    elif want > 0 or status != INACTIVE:
        status = ACTIVATING if ready_pods < min_ready else ACTIVE
    if status != state.status:
        status_since = now_s

    new_state = PodAutoscalerState(replicas, status, status_since, initialized,
                                   sks_mode, sks_since)
    return ReconcileResult(replicas, bounded, note), new_state


def _scale_to_zero(config: KpaConfig, status: str, status_for_s: float, sks_mode: str,
                   sks_for_s: float) -> tuple[int, bool, str]:
    """(want, apply, note) when the bounded count is zero (``handleScaleToZero``)."""
    if not config.enable_scale_to_zero:
        return 1, True, "scale to zero disabled: keeping 1"
    if status == ACTIVATING:
        # Knative waits for the activation to succeed or time out; neither is decided here.
        return -1, False, "activating: not scaling to zero"
    if status == ACTIVE:
        if status_for_s >= config.stable_window_s:
            return 0, False, "no traffic: marked inactive, last pod kept for now"
        return 1, True, (f"active for {status_for_s:g} s < stable window "
                         f"{config.stable_window_s:g} s: keeping 1")
    retention = config.scale_to_zero_pod_retention_period_s
    if status_for_s >= max(config.scale_to_zero_grace_period_s, retention):
        return 0, True, f"inactive for {status_for_s:g} s: scaled to zero"
    if retention > 0 and status_for_s < retention:
        return 0, False, (f"inactive for {status_for_s:g} s < pod retention "
                          f"{retention:g} s: last pod kept")
    proxied_s = sks_for_s if sks_mode == PROXY else 0.0
    if proxied_s >= config.scale_to_zero_grace_period_s:
        return 0, True, f"activator in the path for {proxied_s:g} s: scaled to zero"
    return 0, False, (f"activator in the path for {proxied_s:g} s < grace period "
                      f"{config.scale_to_zero_grace_period_s:g} s: last pod kept")


# --- one KPA: metrics, decider and reconciler together ----------------------------------


@dataclass(frozen=True)
class KpaState:
    """Everything one KPA (one revision: one stage) keeps between ticks."""

    metrics: MetricWindows
    decider: DeciderState
    autoscaler: PodAutoscalerState

    @classmethod
    def initial(cls, config: KpaConfig, replicas: int) -> KpaState:
        """A new revision deployed with ``replicas`` pods, none ready yet."""
        return cls(MetricWindows.empty(config), DeciderState.initial(config),
                   PodAutoscalerState(replicas))


@dataclass(frozen=True)
class KpaStep:
    """One tick's outcome: the replicas to run and the figures behind them."""

    replicas: int
    #: None when the stable window held no data (no decision, nothing changes).
    decision: ScaleDecision | None
    reconcile: ReconcileResult


def kpa_step(config: KpaConfig, total: float, value: float, ready_pods: int,
             min_scale: int, max_scale: int, state: KpaState,
             now_s: float) -> tuple[KpaStep, KpaState]:
    """One tick of a KPA: record ``value`` (the metric averaged since the previous tick),
    decide, and reconcile with the stage's min/max scale."""
    metrics = state.metrics.observe(now_s, value)
    observed = metrics.values(now_s, config.aggregation)
    decider, decision = state.decider, None
    if observed is not None:
        decision, decider = decide_scale(config, total, observed[0], observed[1], ready_pods,
                                         state.decider, now_s)
    result, autoscaler = reconcile_scale(config, decision, min_scale, max_scale, ready_pods,
                                         state.autoscaler, now_s)
    return (KpaStep(result.replicas, decision, result),
            KpaState(metrics, decider, autoscaler))


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")


def _round_half_away(value: float) -> int:
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def _round_digits(value: float, digits: int) -> float:
    scale = 10.0 ** digits
    return math.copysign(math.floor(abs(value) * scale + 0.5), value) / scale
