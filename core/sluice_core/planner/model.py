"""The per-stage latency model: a stage's latency at a quantile, queueing included.

A stage runs ``replicas`` replicas of ``cores`` cores each. The model, per replica:

- **Arrivals.** The stage's rate (one row per request) is shared equally by its replicas
  (the router balances them). Burstiness is the arrival process's squared coefficient of
  variation ``scv``; it is *not* smoothed by the sharing, because the bursts that matter
  (seconds-long surges) reach every replica at once.
- **Executors.** A replica runs ``k`` batches side by side, each on ``cores / k`` cores,
  for ``k`` from 1 to the whole cores it has (the runtime gives a lone batch every free
  core and serves a queue with batches side by side); the model takes whichever ``k``
  predicts lower, and treats each executor as having its own share ``1/k`` of the
  arrivals (a shared queue does a little better: conservative).
- **Service.** A batch of ``b`` rows takes ``S(b)`` from the profile (see
  :mod:`.service`): its mean, variance and its value at quantile ``q``.
- **Batch formation.** With an idle executor the runtime starts at once unless at least
  one more request is expected within ``max_delay_ms``; then the first request waits up
  to the delay, or until a full batch arrives: ``W_form = min(D, (B - 1)/lambda)`` when
  ``lambda * D >= 1``, else 0, and the batch has ``1 + lambda * D`` rows (at most ``B``).
- **Effective batch.** Under load batches grow: a busy executor takes what queued while
  it computed. The batch ``b`` is the smallest fixed point of
  ``b = max(b_form, lambda * mean_S(b))`` in ``[1, B]`` (solved exactly: ``mean_S`` is
  piecewise linear). Below it the executor keeps up with spare time; at it the executor
  is busy all the time and the batch size absorbs the load.
- **Capacity and utilisation.** An executor's capacity is ``B / mean_S(B)`` rows per ms;
  ``utilisation = lambda * mean_S(B) / B``. At 1 or above nothing is stable.
- **Waiting before service**, the largest of three causes (they overlap: a request that
  waits for a running batch is also collecting the next one):

  * the formation wait above;
  * the batch running when the request arrives: the executor is busy a fraction
    ``busy = lambda * mean_S(b) / b`` of the time and its residual is uniform over the
    batch's time, so at quantile ``q`` the wait is ``S_q(b) * (1 - (1 - q)/busy)`` when
    ``busy > 1 - q``, else 0;
  * queueing beyond one batch when arrivals outrun full batches: a G/G/1 queue of full
    batches (arrival SCV ``scv / B``, service ``S(B)``), mean wait by Kingman /
    Allen-Cunneen ``lambda_b (c_a^2 mean_S^2 + var_S) / (2 (1 - utilisation))``, with an
    exponential tail ``P(W > t) = utilisation * exp(-t * utilisation / mean_W)``.

- **Service at q.** A request that arrives during a batch (probability ``busy``) joins
  the rows that arrived while it ran, ``1 + lambda * mean_S(b)`` (at most ``B``): for a
  compute-bound model that bigger batch is where its time goes. Latency at q = the wait
  + ``S_q`` of that batch.

Assumptions worth knowing: requests are one row; the quantile of a sum is taken as the
sum of quantiles (conservative); time-varying load (bursts longer than a batch) is the
scaler's business, the model is stationary; the tail of the queue is exponential (exact
for M/M/1, close for G/G/1 in heavy traffic); ``q = 1`` is treated as 0.9999.

Checked against a discrete-event simulation of the runtime's batching rule (one executor,
Poisson arrivals, service drawn from the profile; tests/core/test_planner_model.py): at
utilisation up to 0.9 the model's p99 is 0.85-1.5x the simulated one, median about 1.1x.

Monotone where it matters: more cores never predict a higher latency; with ``D = 0`` more
replicas never predict higher and more load never lower. With a delay, the batch fills
sooner under more load, so the formation wait can shrink as the load grows (and grow with
more replicas); the planner does not try such delays (``filled_delays=False``), so what it
compares is monotone in both replicas and cores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from sluice_core.planner.service import ServiceCurve, service_curve
from sluice_core.profiles import ModelProfile

#: The tail probability below which the queueing tail is not extrapolated (q = 0.9999).
_MIN_TAIL = 1e-4
#: Latencies closer than this (ms) count as equal when choosing among batching options.
_TIE_MS = 1e-9


@dataclass(frozen=True)
class StageEstimate:
    """A stage's predicted latency at one quantile, and what makes it up (per executor)."""

    #: Latency at the quantile: waiting plus service (infinite when unstable).
    latency_ms: float
    #: Arrival rate over capacity at the max batch size (>= 1: unstable).
    utilisation: float
    #: Rows per batch the load forms on average.
    batch_rows: float
    #: Batches a replica runs side by side.
    executors: int
    #: The three waits (at the quantile) and the service time of the request's batch.
    formation_ms: float = 0.0
    residual_ms: float = 0.0
    queueing_ms: float = 0.0
    service_ms: float = 0.0
    #: Fraction of time an executor computes.
    busy: float = 0.0
    max_batch_size: int = 1
    max_delay_ms: float = 0.0

    @property
    def stable(self) -> bool:
        """Whether the replicas keep up with the load at all."""
        return math.isfinite(self.latency_ms)

    @property
    def wait_ms(self) -> float:
        """Time before the request's batch starts, at the quantile."""
        return max(self.formation_ms, self.residual_ms, self.queueing_ms)


def executor_options(cores: float) -> tuple[int, ...]:
    """Batches a replica of ``cores`` cores may run side by side: 1 up to its whole cores
    (every count, so that more cores never lose an option)."""
    return tuple(range(1, max(1, math.floor(cores + 1e-9)) + 1))


def evaluate(curve: ServiceCurve, q_table: tuple[float, ...], rate_per_ms: float,
             max_batch_size: int, max_delay_ms: float, arrival_scv: float, q: float,
             executors: int = 1) -> StageEstimate:
    """The model on one executor: ``rate_per_ms`` rows per ms arrive at it, it serves
    batches of at most ``max_batch_size`` (within the curve's measured range) with the
    service times of ``curve`` (``q_table`` = ``curve.quantile_table(q)``)."""
    batch_cap = min(max_batch_size, curve.max_batch)
    return _estimate(_predict(curve, q_table, rate_per_ms, batch_cap, max_delay_ms,
                              arrival_scv, max(1.0 - q, _MIN_TAIL)),
                     executors, batch_cap, max_delay_ms)


#: What :func:`_predict` returns: latency, utilisation, batch rows, formation, residual,
#: queueing, service, busy (a tuple: the planner's inner loop makes thousands).
_Prediction = tuple[float, float, float, float, float, float, float, float]


def _estimate(prediction: _Prediction, executors: int, batch_cap: int,
              delay_ms: float) -> StageEstimate:
    latency, utilisation, rows, formation, residual, queueing, service, busy = prediction
    return StageEstimate(latency, utilisation, rows, executors, formation, residual, queueing,
                         service, busy, batch_cap, delay_ms)


def _predict(curve: ServiceCurve, q_table: tuple[float, ...], lam: float, batch_cap: int,
             delay_ms: float, arrival_scv: float, tail: float,
             shared: _Batching | None = None) -> _Prediction:
    """The model (see the module) for ``lam`` rows/ms at one executor, at tail
    probability ``tail`` = 1 - q; ``batch_cap`` within the curve. ``shared`` is
    :func:`_batching` for the same rate and delay at a larger cap, which holds for any
    stable smaller cap the delay's batch does not fill."""
    if lam <= 0:
        return (q_table[0], 0.0, 1.0, 0.0, 0.0, 0.0, q_table[0], 0.0)
    mean_full, var_full = curve.moments(batch_cap)
    utilisation = lam * mean_full / batch_cap
    if utilisation >= 1.0:
        return (math.inf, utilisation, float(batch_cap), 0.0, 0.0, 0.0, 0.0, 1.0)
    formation = 0.0
    first = 1.0
    if lam * delay_ms >= 1.0:
        first = 1.0 + lam * delay_ms
        if first >= batch_cap:
            first = float(batch_cap)
            formation = (batch_cap - 1) / lam
            shared = None
        else:
            formation = delay_ms
    if shared is None:
        shared = _batching(curve, q_table, lam, first, float(batch_cap), tail)
    rows, busy, residual, own = shared
    service = curve.at(q_table, min(own, float(batch_cap)))
    queueing = 0.0
    if utilisation > tail:
        # A request waits longer than the running batch only when more than a full batch
        # is queued ahead: a G/G/1 queue of full batches (Kingman / Allen-Cunneen mean,
        # exponential tail).
        mean_wait = ((lam / batch_cap) * (arrival_scv / batch_cap * mean_full * mean_full
                                          + var_full) / (2.0 * (1.0 - utilisation)))
        queueing = mean_wait / utilisation * math.log(utilisation / tail)
    latency = max(formation, residual, queueing) + service
    return (latency, utilisation, rows, formation, residual, queueing, service, busy)


#: Batch rows, busy fraction, residual wait and the rows of the batch a request that
#: arrives during one joins (before the cap).
_Batching = tuple[float, float, float, float]


def _batching(curve: ServiceCurve, q_table: tuple[float, ...], lam: float, first: float,
              cap: float, tail: float) -> _Batching:
    """The effective batch and the wait for the running one (see the module)."""
    rows = _fixed_batch(curve, lam, first, cap)
    mean_rows = curve.at(curve.mean, rows)
    busy = min(1.0, lam * mean_rows / rows)
    if busy <= tail:
        return rows, busy, 0.0, rows
    # Arriving during a batch: wait for it, then join the rows that arrived while it ran
    # (for a compute-bound model that bigger batch is where the time goes).
    return (rows, busy, curve.at(q_table, rows) * (1.0 - tail / busy),
            max(rows, 1.0 + lam * mean_rows))


def _fixed_batch(curve: ServiceCurve, lam: float, low: float, high: float) -> float:
    """The smallest ``b`` in ``[low, high]`` with ``lam * mean_S(b) <= b`` (``high`` when
    none is smaller; the caller has checked that ``high`` is one)."""
    xs, mean = curve.xs, curve.mean
    if lam * curve.at(mean, low) <= low:
        return low
    for i in range(1, len(xs)):
        x1 = xs[i]
        if x1 <= low:
            continue
        right = x1 if x1 <= high else high
        mean_right = mean[i] if right == x1 else curve.at(mean, right)
        if lam * mean_right <= right:
            x0 = xs[i - 1]
            slope = (mean[i] - mean[i - 1]) / (x1 - x0)
            intercept = mean[i - 1] - slope * x0
            # lam * (intercept + slope * b) = b on this segment; g(left) > 0 >= g(right)
            # makes the root unique and inside.
            root = lam * intercept / (1.0 - lam * slope)
            return min(max(root, low, x0), right)
        if right >= high:
            break
    return high


def best_estimate(curves: dict[int, tuple[ServiceCurve, tuple[float, ...]]],
                  rate_rps: float, replicas: int, batch_sizes: Iterable[int],
                  delays_ms: Iterable[float], arrival_scv: float, q: float,
                  max_utilisation: float = 1.0, filled_delays: bool = True) -> StageEstimate:
    """The lowest predicted latency over executors (the keys of ``curves``: executors ->
    (curve at cores/executors, its quantile table)), batch sizes and delays.

    Ties go to fewer executors, the shorter delay, and the larger batch size as long as a
    full batch's service still fits the prediction (headroom for bursts at no predicted
    cost). Configurations above ``max_utilisation`` are skipped; when none is left the
    answer is unstable (infinite latency) with the lowest utilisation found. Without
    ``filled_delays``, a delay that a full batch would cut short is not tried: then the
    answer never rises with fewer arrivals per replica (more replicas) nor with more
    cores, which the planner's search relies on.
    """
    tail = max(1.0 - q, _MIN_TAIL)
    best: _Prediction | None = None
    best_at = (1, 1, 0.0)  # executors, batch size, delay
    least_util = (math.inf, 1, 1, 0.0)
    batch_sizes = tuple(batch_sizes)
    delays = sorted(set(delays_ms))
    for executors, (curve, q_table) in sorted(curves.items()):
        if best is not None and q_table[0] >= best[0] - _TIE_MS:
            break  # a lone request alone takes as long; more executors only longer
        lam = rate_rps / 1000.0 / (replicas * executors)
        sizes = []
        for size in sorted({min(size, curve.max_batch) for size in batch_sizes}):
            utilisation = lam * curve.moments(size)[0] / size
            if utilisation > max_utilisation or utilisation >= 1.0:
                if utilisation < least_util[0]:
                    least_util = (utilisation, executors, size, 0.0)
            else:
                sizes.append(size)
        if not sizes:
            continue
        idle_tried = False
        for delay in delays:
            engaged = lam * delay >= 1.0
            if not engaged:
                # The runtime would start at once, as with no delay: try one such delay.
                if idle_tried:
                    continue
                idle_tried = True
            shared = None
            first = 1.0 + lam * delay if engaged else 1.0
            if engaged and best is not None and not filled_delays and \
                    delay + curve.at(q_table, first) > best[0] + _TIE_MS:
                # Waiting out the delay and serving what formed already loses, and a
                # longer delay loses more.
                break
            if lam > 0 and first < sizes[-1]:
                shared = _batching(curve, q_table, lam, first, float(sizes[-1]), tail)
            for size in sizes:
                if engaged and not filled_delays and first >= size:
                    continue
                if best is not None and engaged:
                    # The formation wait plus a lone batch of what forms: a lower bound.
                    bound = min(delay, (size - 1) / lam) + curve.at(
                        q_table, min(float(size), first))
                    if bound > best[0] + _TIE_MS:
                        continue
                found = _predict(curve, q_table, lam, size, delay, arrival_scv, tail, shared)
                if best is None or found[0] < best[0] - _TIE_MS or (
                        found[0] <= best[0] + _TIE_MS
                        and (executors, delay) == best_at[::2]
                        and curve.at(q_table, size) <= found[0]):
                    best, best_at = found, (executors, size, delay)
    if best is not None:
        return _estimate(best, best_at[0], best_at[1], best_at[2])
    utilisation, executors, size, delay = least_util
    if not math.isfinite(utilisation):
        raise ValueError("no batch size or executor option to evaluate")
    return StageEstimate(math.inf, utilisation, float(size), executors, max_batch_size=size,
                         max_delay_ms=delay)


def curves_for(model: ModelProfile, cores: float,
               q: float) -> dict[int, tuple[ServiceCurve, tuple[float, ...]]]:
    """Per executor option of a ``cores``-core replica, the executor's curve and its
    quantile-``q`` table."""
    result = {}
    for executors in executor_options(cores):
        curve = service_curve(model, cores / executors)
        result[executors] = (curve, curve.quantile_table(q))
    return result


def stage_latency_ms(model: ModelProfile, *, max_batch_size: int, max_delay_ms: float,
                     cores: float, replicas: int, rate_rps: float, arrival_scv: float = 1.0,
                     q: float = 0.99) -> StageEstimate:
    """Predicted latency at quantile ``q`` of a stage running ``model`` on ``replicas``
    replicas of ``cores`` cores, batching up to ``max_batch_size`` rows (within what the
    profile measured) with ``max_delay_ms``, under ``rate_rps`` requests per second.

    The estimate is infinite when the replicas cannot keep up (utilisation >= 1).
    """
    _check(max_batch_size=max_batch_size, max_delay_ms=max_delay_ms, cores=cores,
           replicas=replicas, rate_rps=rate_rps, arrival_scv=arrival_scv, q=q)
    return best_estimate(curves_for(model, cores, q), rate_rps, replicas, (max_batch_size,),
                         (max_delay_ms,), arrival_scv, q)


def min_cores_for(model: ModelProfile, *, target_ms: float, rate_rps: float, replicas: int,
                  max_batch_size: int, max_delay_ms: float, min_cores: float,
                  max_cores: float, arrival_scv: float = 1.0, q: float = 0.99,
                  step_cores: float = 0.05, max_utilisation: float = 1.0) -> float | None:
    """The fewest cores per replica, within ``[min_cores, max_cores]`` on multiples of
    ``step_cores`` (plus both bounds), at which ``replicas`` replicas of ``model`` meet
    ``target_ms`` at quantile ``q`` under ``rate_rps``; None when even ``max_cores`` does
    not. A bisection (the model never predicts worse with more cores): about
    log2((max - min) / step) evaluations, each cheap once the allocation's tables are
    memoised.
    """
    _check(max_batch_size=max_batch_size, max_delay_ms=max_delay_ms, cores=min_cores,
           replicas=replicas, rate_rps=rate_rps, arrival_scv=arrival_scv, q=q)
    if max_cores < min_cores:
        raise ValueError(f"max_cores ({max_cores}) must not be below min_cores ({min_cores})")
    if not step_cores > 0:
        raise ValueError(f"step_cores must be > 0, got {step_cores}")
    grid = cores_grid(min_cores, max_cores, step_cores)

    def meets(cores: float) -> bool:
        est = best_estimate(curves_for(model, cores, q), rate_rps, replicas,
                            (max_batch_size,), (max_delay_ms,), arrival_scv, q,
                            max_utilisation)
        return est.latency_ms <= target_ms

    if not meets(grid[-1]):
        return None
    low, high = -1, len(grid) - 1  # meets(grid[high]); low is below every tried failure
    while high - low > 1:
        middle = (low + high) // 2
        if meets(grid[middle]):
            high = middle
        else:
            low = middle
    return grid[high]


def cores_grid(min_cores: float, max_cores: float, step_cores: float) -> tuple[float, ...]:
    """``min_cores``, the multiples of ``step_cores`` strictly between, and ``max_cores``
    (rounded to millicores, as Kubernetes keeps them)."""
    values = {round(min_cores, 3), round(max_cores, 3)}
    k = math.floor(min_cores / step_cores) + 1
    while k * step_cores < max_cores - 1e-9:
        values.add(round(k * step_cores, 3))
        k += 1
    return tuple(sorted(v for v in values if v > 0))


def _check(*, max_batch_size: int, max_delay_ms: float, cores: float, replicas: int,
           rate_rps: float, arrival_scv: float, q: float) -> None:
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if max_delay_ms < 0:
        raise ValueError(f"max_delay_ms must be >= 0, got {max_delay_ms}")
    if not cores > 0:
        raise ValueError(f"cores must be > 0, got {cores}")
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    if not rate_rps >= 0 or not math.isfinite(rate_rps):
        raise ValueError(f"rate_rps must be a finite number >= 0, got {rate_rps}")
    if not arrival_scv >= 0:
        raise ValueError(f"arrival_scv must be >= 0, got {arrival_scv}")
    if not 0 <= q <= 1:
        raise ValueError(f"q must be within [0, 1], got {q}")
