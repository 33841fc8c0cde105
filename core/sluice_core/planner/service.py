"""Service-time tables for the latency model, read once from a model's profile.

For an executor with ``cores`` cores, :func:`service_curve` gives the batch service time
as functions of the batch's rows: every recorded quantile (min, p50, p95, p99, max), the
mean and the variance. The profile's quantiles are a piecewise-linear quantile function,
so drawing ``q`` uniformly samples it; the mean and variance here are that distribution's
exact moments.

Two corrections make the tables physically sensible where measurement noise says
otherwise, and make the latency model monotone (more cores never predict worse):

- along the batch axis every quantile is a running maximum (a bigger batch never takes
  less time);
- along the cores axis every quantile, and the variance, is a running minimum over the
  measured allocations (a more generous CPU quota can always compute as a smaller one
  does).

Between measured allocations values are interpolated linearly in 1/cores, as
:class:`~sluice_core.profiles.ModelProfile` does; below the fewest measured cores they
scale with the ratio, above the most they stay flat. Batch sizes run from 1 to the largest
measured: extrapolating far beyond what was measured is unsafe, so the planner does not.

Tables are memoised per model object and allocation (the scaling policies ask every
second); the memo holds no reference to the model, and is bounded.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Sequence
from itertools import pairwise

from sluice_core.profiles import QUANTILES, ModelProfile

#: Cumulative probabilities of the recorded quantiles (min, p50, p95, p99, max).
LEVELS: tuple[float, ...] = tuple(p for _, p in QUANTILES)
#: Allocations memoised per model before the memo is cleared (policies ask for arbitrary
#: cores; the planner for a grid of a few dozen).
_MAX_CURVES_PER_MODEL = 4096


class ServiceCurve:
    """Batch service time (ms) at one allocation, as piecewise-linear functions of rows."""

    __slots__ = ("_by_q", "_moments", "cores", "levels", "mean", "var", "xs")

    def __init__(self, cores: float, xs: tuple[float, ...],
                 levels: tuple[tuple[float, ...], ...], var: tuple[float, ...]) -> None:
        self.cores = cores
        #: Batch sizes (rows) at which the tables are given, ascending, the first 1.
        self.xs = xs
        #: Per recorded quantile level (see :data:`LEVELS`), the service time at ``xs``.
        self.levels = levels
        self.mean = tuple(_mean(column) for column in zip(*levels, strict=True))
        self.var = var
        self._by_q: dict[float, tuple[float, ...]] = {}
        self._moments: dict[int, tuple[float, float]] = {}

    @property
    def max_batch(self) -> int:
        """The largest batch the tables cover (the profile's largest measured)."""
        return int(self.xs[-1])

    def quantile_table(self, q: float) -> tuple[float, ...]:
        """Service time at quantile ``q`` at every ``xs``."""
        table = self._by_q.get(q)
        if table is None:
            table = tuple(_interpolate(LEVELS, column, q)
                          for column in zip(*self.levels, strict=True))
            self._by_q[q] = table
        return table

    def moments(self, rows: int) -> tuple[float, float]:
        """Mean and variance of a batch of ``rows`` rows (memoised: the planner asks for
        the same batch sizes many times)."""
        found = self._moments.get(rows)
        if found is None:
            found = (self.at(self.mean, rows), self.at(self.var, rows))
            self._moments[rows] = found
        return found

    def at(self, table: Sequence[float], rows: float) -> float:
        """``table`` (one of this curve's) at ``rows``, linear between batch sizes."""
        return _interpolate(self.xs, table, rows)


class _ModelTables:
    """The enveloped tables at a model's measured allocations, and memoised curves."""

    def __init__(self, model: ModelProfile) -> None:
        measured = model.cores_measured
        batches = sorted({1, *model.batches_measured})
        self.xs = tuple(float(b) for b in batches)
        self.cores = measured
        self.at_measured: list[ServiceCurve] = []
        previous: ServiceCurve | None = None
        recorded = {(p.cores, p.batch): p for p in model.points}
        keys = [key for key, _ in QUANTILES]
        for cores in measured:
            # At a measured allocation the recorded quantiles are the profile's values;
            # batch sizes measured only at other allocations go through its interpolation.
            rows_values = []
            for rows in batches:
                point = recorded.get((cores, rows))
                rows_values.append([getattr(point, k) for k in keys] if point is not None
                                   else [model.latency_ms(rows, cores, lv) for lv in LEVELS])
            levels = []
            for i in range(len(LEVELS)):
                running = 0.0
                column = []
                for values in rows_values:
                    running = max(running, values[i])
                    column.append(running)
                levels.append(column)
            if previous is not None:
                levels = [[min(a, b) for a, b in zip(mine, theirs, strict=True)]
                          for mine, theirs in zip(levels, previous.levels, strict=True)]
            frozen = tuple(tuple(column) for column in levels)
            var = tuple(_var(column) for column in zip(*frozen, strict=True))
            if previous is not None:
                var = tuple(min(a, b) for a, b in zip(var, previous.var, strict=True))
            previous = ServiceCurve(cores, self.xs, frozen, var)
            self.at_measured.append(previous)
        self.curves: dict[float, ServiceCurve] = {}

    def curve(self, cores: float) -> ServiceCurve:
        key = round(cores, 6)
        found = self.curves.get(key)
        if found is not None:
            return found
        if len(self.curves) >= _MAX_CURVES_PER_MODEL:
            self.curves.clear()
        found = self._build(key)
        self.curves[key] = found
        return found

    def _build(self, cores: float) -> ServiceCurve:
        measured = self.cores
        if cores <= measured[0]:
            # A quota below what was measured slows the work in proportion.
            base = self.at_measured[0]
            ratio = measured[0] / cores
            return ServiceCurve(cores, self.xs,
                                tuple(tuple(v * ratio for v in col) for col in base.levels),
                                tuple(v * ratio * ratio for v in base.var))
        if cores >= measured[-1]:
            base = self.at_measured[-1]
            return ServiceCurve(cores, self.xs, base.levels, base.var)
        hi = bisect.bisect_left(measured, cores)
        if measured[hi] == cores:
            return self.at_measured[hi]
        lo_cores, hi_cores = measured[hi - 1], measured[hi]
        frac = (1 / lo_cores - 1 / cores) / (1 / lo_cores - 1 / hi_cores)
        low, high = self.at_measured[hi - 1], self.at_measured[hi]

        def mix(a: Sequence[float], b: Sequence[float]) -> tuple[float, ...]:
            return tuple(x + frac * (y - x) for x, y in zip(a, b, strict=True))

        return ServiceCurve(cores, self.xs,
                            tuple(mix(a, b) for a, b in zip(low.levels, high.levels,
                                                            strict=True)),
                            mix(low.var, high.var))


_MEMO: dict[int, tuple[weakref.ref[ModelProfile], _ModelTables]] = {}


def service_curve(model: ModelProfile, cores: float) -> ServiceCurve:
    """The service-time tables of ``model`` on an executor of ``cores`` cores."""
    if not cores > 0:
        raise ValueError(f"cores must be > 0, got {cores}")
    return _tables(model).curve(cores)


def _tables(model: ModelProfile) -> _ModelTables:
    key = id(model)
    entry = _MEMO.get(key)
    if entry is not None and entry[0]() is model:
        return entry[1]
    tables = _ModelTables(model)
    _MEMO[key] = (weakref.ref(model, lambda _ref, key=key: _MEMO.pop(key, None)), tables)
    return tables


def _interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Linear interpolation through ascending ``xs``, clamped at both ends."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, x)
    x0, x1 = xs[i - 1], xs[i]
    return ys[i - 1] + (x - x0) / (x1 - x0) * (ys[i] - ys[i - 1])


def _mean(values: Sequence[float]) -> float:
    """Mean of the piecewise-linear quantile function through (LEVELS, values)."""
    total = 0.0
    for (p0, p1), (y0, y1) in zip(pairwise(LEVELS), pairwise(values), strict=True):
        total += (p1 - p0) * (y0 + y1) / 2
    return total


def _var(values: Sequence[float]) -> float:
    """Variance of the piecewise-linear quantile function through (LEVELS, values)."""
    second = 0.0
    for (p0, p1), (y0, y1) in zip(pairwise(LEVELS), pairwise(values), strict=True):
        second += (p1 - p0) * (y0 * y0 + y0 * y1 + y1 * y1) / 3
    return max(0.0, second - _mean(values) ** 2)
