"""What a stage needs now, from what it was observed doing: shared by the policies that
size cores (vertical, hybrid) so both read load and backlog the same way."""

from __future__ import annotations

from dataclasses import dataclass

from sluice_core.planner import PlannerSettings, StagePlan, min_cores_for
from sluice_core.planner.model import cores_grid, executor_options
from sluice_core.profiles import ModelProfile, PipelineProfile
from sluice_core.scaling.types import StageObservation
from sluice_core.spec import Stage

#: Seconds within which a queued backlog should be drained: a request waiting longer than
#: about a second has missed any interactive SLO, so capacity sized to clear the queue in a
#: second is capacity that still saves requests.
DRAIN_S = 1.0


def required_rps(observation: StageObservation, entrance_rps: float | None = None,
                 drain_s: float = DRAIN_S) -> float:
    """Rows per second the stage must serve: what arrives (at the pipeline's entrance,
    when known: refusals on a slow stage's behalf upstream hide its demand from its own
    rate), plus the queue drained in ``drain_s``."""
    arriving = max(observation.arrival_rps, entrance_rps or 0.0)
    return arriving + observation.queue_depth / drain_s


@dataclass(frozen=True)
class RecentRates:
    """The rates of the last ``window_s`` seconds (oldest first): a policy scales down to
    the largest of them, not to the last, so a lull between bursts does not shed capacity
    the next burst needs."""

    window_s: float
    samples: tuple[tuple[float, float], ...] = ()

    def add(self, now_s: float, rate_rps: float) -> RecentRates:
        """A copy with ``rate_rps`` observed at ``now_s`` and samples older than the
        window dropped."""
        kept = tuple((t, r) for t, r in self.samples if t > now_s - self.window_s)
        return RecentRates(self.window_s, (*kept, (now_s, rate_rps)))

    def peak(self, since_s: float | None = None) -> float:
        """The largest rate in the window, or after ``since_s`` (0 with none)."""
        return max((r for t, r in self.samples if since_s is None or t > since_s),
                   default=0.0)

    def mean(self, since_s: float | None = None) -> float:
        """The mean rate over the window, or over its samples after ``since_s`` (0 with
        none)."""
        rates = [r for t, r in self.samples if since_s is None or t > since_s]
        return sum(rates) / len(rates) if rates else 0.0

    def spans(self, now_s: float, span_s: float | None = None) -> bool:
        """Whether the samples cover the whole window, or its last ``span_s`` (a decision
        to scale down needs it)."""
        span = self.window_s if span_s is None else span_s
        return bool(self.samples) and self.samples[0][0] <= now_s - span + 1.0


def sizing_for(stage: Stage, planned: StagePlan, profile: PipelineProfile, quantile: float,
               settings: PlannerSettings) -> CoreSizing:
    """How a stage's replicas are sized under ``planned``, with the planner's headroom and
    core granularity (one knob for planning and for sizing every second)."""
    return CoreSizing(
        model=profile.stage(stage.name).variant(planned.variant),
        budget_ms=planned.budget_ms, max_batch_size=planned.max_batch_size,
        max_delay_ms=planned.max_delay_ms, min_cores=stage.cpu.min_value,
        max_cores=stage.cpu.max_value, quantile=quantile,
        max_utilisation=settings.max_utilisation, step_cores=settings.cores_step)


@dataclass(frozen=True)
class CoreSizing:
    """How a stage's replicas are sized: the model, its batching and latency budget, the
    bounds on cores per replica, and the SLO quantile."""

    model: ModelProfile
    budget_ms: float
    max_batch_size: int
    max_delay_ms: float
    min_cores: float
    max_cores: float
    quantile: float
    #: The most of a replica's capacity a size may use (the planner's: the rest absorbs
    #: bursts and model error), and the granularity of cores.
    max_utilisation: float = 1.0
    step_cores: float = 0.05

    def cores_for(self, rate_rps: float, replicas: int, max_cores: float | None = None,
                  arrival_scv: float = 1.0) -> float | None:
        """The fewest cores per replica with which ``replicas`` replicas meet the budget
        at ``rate_rps``, up to ``max_cores`` (the sizing's own by default); None when even
        that does not."""
        ceiling = self.max_cores if max_cores is None else max(self.min_cores, max_cores)
        if rate_rps <= 0:
            return self.min_cores
        return min_cores_for(
            self.model, target_ms=self.budget_ms, rate_rps=rate_rps, replicas=max(1, replicas),
            max_batch_size=self.max_batch_size, max_delay_ms=self.max_delay_ms,
            min_cores=self.min_cores, max_cores=ceiling, arrival_scv=arrival_scv,
            q=self.quantile, max_utilisation=self.max_utilisation, step_cores=self.step_cores)

    def replicas_for(self, rate_rps: float, cores: float, max_replicas: int,
                     arrival_scv: float = 1.0) -> int | None:
        """The fewest replicas of ``cores`` cores that meet the budget at ``rate_rps``;
        None when ``max_replicas`` do not."""
        low, high = 0, max(1, max_replicas)
        if self.cores_for(rate_rps, high, cores, arrival_scv) is None:
            return None
        while high - low > 1:  # more replicas never predict worse: bisect
            middle = (low + high) // 2
            if self.cores_for(rate_rps, middle, cores, arrival_scv) is None:
                low = middle
            else:
                high = middle
        return high

    def knee_cores(self, step_cores: float = 0.25, efficiency: float = 0.6) -> float:
        """The most cores per replica that still pay (Amdahl): beyond it a replica's
        throughput per core falls below ``efficiency`` of the best, so capacity is cheaper
        as more replicas than as bigger ones. A replica runs batches side by side on whole
        cores (the runtime's executors) or one batch on all of them, whichever is faster."""
        grid = cores_grid(self.min_cores, self.max_cores, step_cores)
        per_core = [(c, self._capacity_rps(c) / c) for c in grid]
        best = max(value for _, value in per_core)
        return max(c for c, value in per_core if value >= efficiency * best)

    def _capacity_rps(self, cores: float) -> float:
        return max(k * self.model.throughput_rps(self.max_batch_size, cores / k)
                   for k in executor_options(cores))
