"""Service times drawn from measured profiles: batch compute and isolated hops, in seconds.

A profile records, per (cores, batch), the latency quantiles min/p50/p95/p99/max, and
:meth:`ModelProfile.latency_ms` interpolates them linearly in the quantile. Drawing the
quantile uniformly at random therefore samples the measured distribution. Calling the
profile for every batch would dominate the simulator's time, so a :class:`ServiceTable`
evaluates the profile once at each recorded quantile for every batch size at one compute
allocation, and draws by interpolating between those knots: the same piecewise-linear
function (exactly so, except where the profile clips a negative slope when extrapolating
beyond its largest measured batch).
"""

from __future__ import annotations

from sluice_core.profiles import QUANTILES, ModelProfile, PipelineProfile

#: The cumulative probabilities a profile point records (0, .5, .95, .99, 1).
KNOTS: tuple[float, ...] = tuple(q for _, q in QUANTILES)
#: The quantile the runtime's deadline checks stand on: it multiplies its mean estimate by
#: the 90th percentile of recent measured/predicted ratios (runtime latency.UPPER_QUANTILE).
UPPER_QUANTILE = 0.9


class ServiceTable:
    """Batch compute times of one model at one allocation of cores, by batch rows.

    ``mean[rows]`` is the median (what the runtime's backlog sums use), ``upper[rows]`` the
    :data:`UPPER_QUANTILE` (what its deadline checks use); index 0 is unused.
    """

    __slots__ = ("_knots", "cores", "mean", "model", "upper")

    def __init__(self, model: ModelProfile, cores: float, max_rows: int) -> None:
        self.model = model
        self.cores = cores
        self._knots: list[tuple[float, float, float, float, float]] = [(0.0,) * 5]
        self.mean: list[float] = [0.0]
        self.upper: list[float] = [0.0]
        self.ensure(max_rows)

    def ensure(self, max_rows: int) -> None:
        """Make batch sizes up to ``max_rows`` available."""
        for rows in range(len(self._knots), max_rows + 1):
            v0, v50, v95, v99, v100 = (
                self.model.latency_ms(rows, self.cores, q) / 1000.0 for q in KNOTS)
            self._knots.append((v0, v50, v95, v99, v100))
            self.mean.append(v50)
            self.upper.append(v50 + (UPPER_QUANTILE - 0.5) / 0.45 * (v95 - v50))

    @property
    def max_rows(self) -> int:
        """The largest batch size tabulated."""
        return len(self._knots) - 1

    def sample(self, rows: int, u: float) -> float:
        """Compute seconds of a batch of ``rows`` at cumulative probability ``u`` in [0, 1)."""
        v0, v50, v95, v99, v100 = self._knots[rows]
        if u < 0.5:
            return v0 + (v50 - v0) * u * 2.0
        if u < 0.95:
            return v50 + (v95 - v50) * (u - 0.5) / 0.45
        if u < 0.99:
            return v95 + (v99 - v95) * (u - 0.95) / 0.04
        return v99 + (v100 - v99) * (u - 0.99) / 0.01


class TableCache:
    """Service tables shared by every replica with the same model and compute cores."""

    def __init__(self) -> None:
        self._tables: dict[tuple[int, float], ServiceTable] = {}

    def get(self, model: ModelProfile, cores: float, max_rows: int) -> ServiceTable:
        """The table of ``model`` at ``cores``, holding at least ``max_rows`` rows."""
        key = (id(model), round(cores, 9))
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = ServiceTable(model, cores, max_rows)
        elif table.max_rows < max_rows:
            table.ensure(max_rows)
        return table


class HopSampler:
    """The extra latency of one isolated hop (a gRPC call between runtimes) for one request.

    The profile's hop quantile function is the p50 up to the median and linear to the p99
    above it; this draws from it without a call per request.
    """

    __slots__ = ("p50_s", "p99_s")

    def __init__(self, profile: PipelineProfile) -> None:
        self.p50_s = profile.hop_latency_ms(1, 0.5) / 1000.0
        self.p99_s = profile.hop_latency_ms(1, 0.99) / 1000.0

    def sample(self, u: float) -> float:
        """Hop seconds at cumulative probability ``u`` in [0, 1)."""
        if u <= 0.5:
            return self.p50_s
        return self.p50_s + (min(u, 0.99) - 0.5) / 0.49 * (self.p99_s - self.p50_s)
