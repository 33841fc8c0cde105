"""The discrete-event loop: arrivals, batches, replicas, resizes and the policy's decisions.

Events sit in a heap keyed by time (ties in scheduling order); client arrivals come from a
second stream, generated one second at a time, and merge with it by time. Every
``policy.interval_s`` the loop builds an :class:`Observation` from the stages' own
counters, asks the policy, and applies its actions with the platform's delays. After the
last second of load the loop keeps going until every request has ended (the run drains);
cost is counted over the load's duration.

Randomness comes from two streams seeded from ``SimConfig.seed``: one for arrival times and
the router's first hop, one for service times and later hops. Arrivals therefore do not
depend on what the policy does, and every policy sees the same requests.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from sluice_core.profiles import PipelineProfile, StageProfile
from sluice_core.scaling.types import (
    Observation,
    Policy,
    Resize,
    SetBatching,
    SetReplicas,
    SetVariant,
)
from sluice_core.simulate.config import SimConfig, SimulationError
from sluice_core.simulate.flow import ENTERED, Flow
from sluice_core.simulate.results import SimResult, bucket_quantile_ms
from sluice_core.simulate.service import HopSampler
from sluice_core.simulate.stage import StageSim
from sluice_core.simulate.workload import place_in_second
from sluice_core.spec import FUSED, Pipeline

_by_entry = itemgetter(ENTERED)


def simulate(pipeline: Pipeline, profile: PipelineProfile, policy: Policy,
             counts_per_second: Sequence[int], config: SimConfig | None = None) -> SimResult:
    """Serve ``counts_per_second`` (requests in each second) through ``pipeline`` under
    ``policy`` and report what came of it."""
    return _Run(pipeline, profile, policy, counts_per_second, config or SimConfig()).run()


class _Run:
    """One simulation: the pipeline's stages on the simulated cluster, fed and observed."""

    def __init__(self, pipeline: Pipeline, profile: PipelineProfile, policy: Policy,
                 counts: Sequence[int], config: SimConfig) -> None:
        if pipeline.composition == FUSED:
            raise SimulationError(
                "composition fused is not simulated: its stages share one pod's cores and "
                "hand tensors over in memory, which this simulator does not model yet; "
                "simulate the pipeline as isolated (composition: isolated or auto)")
        if not counts:
            raise SimulationError("the workload has no seconds")
        if any(c < 0 for c in counts):
            raise SimulationError("request counts must be >= 0")
        if not policy.interval_s > 0:
            raise SimulationError(f"policy {policy.name!r}: interval_s must be > 0, "
                                  f"got {policy.interval_s}")
        self.pipeline = pipeline
        self.policy = policy
        self.counts = list(counts)
        self.config = config
        self.duration_s = float(len(self.counts))
        self.slo_s = pipeline.latency_ms / 1000.0
        self._arrival_rng = random.Random(f"sluice-simulate-arrivals-{config.seed}")
        self._service_rng = random.Random(f"sluice-simulate-service-{config.seed}")
        self._hop = HopSampler(profile)
        # A policy marked ``instant`` (the clairvoyant bound) has its replicas ready and its
        # resizes in force the moment it asks: it pays no reaction delay.
        self.flow = Flow(config, self._service_rng.random, self._hop, len(pipeline.stages),
                         self.duration_s, instant=getattr(policy, "instant", False))
        self.cluster = self.flow.cluster
        self.schedule = self.flow.schedule
        allocation = policy.initial_allocation()
        missing = [s.name for s in pipeline.stages if s.name not in allocation]
        if missing:
            raise SimulationError(f"policy {policy.name!r} gives no initial allocation for "
                                  f"stages {missing}")
        for index, spec in enumerate(pipeline.stages):
            start = allocation[spec.name]
            stage = StageSim(index, spec, _stage_profile(profile, spec.name), self.flow,
                             start.max_batch_size, start.max_delay_ms, start.variant,
                             start.cores, min(max(start.replicas, spec.min_replicas),
                                              spec.max_replicas))
            if self.flow.stages:
                self.flow.stages[-1].next = stage
            self.flow.stages.append(stage)
        self.stages = {stage.name: stage for stage in self.flow.stages}
        self._state = policy.initial_state()
        self.decisions = 0
        self.actions = {"vertical": 0, "horizontal": 0, "batching": 0, "variant": 0}

    def run(self) -> SimResult:
        """Deploy the initial allocation, run until every request has ended, report."""
        for stage in self.flow.stages:
            stage.deploy(0.0)
        if self.policy.interval_s < self.duration_s:
            self.schedule(self.policy.interval_s, self._tick, None)
        last_s = self._loop()
        self.cluster.account(self.duration_s)
        return self._result(max(0.0, last_s - self.duration_s))

    def _loop(self) -> float:
        """Run every event; return the time of the last."""
        heap = self.flow.heap
        pop = heapq.heappop
        first = self.flow.stages[0]
        arrive = first.arrive
        stages = self.flow.stages
        seconds = len(self.counts)
        next_second = 0
        arrivals: list[list[float]] = []
        at = 0
        inf = math.inf
        now = 0.0
        while True:
            event_s = heap[0][0] if heap else inf
            # The next second is drawn before anything at or after its start runs.
            limit = next_second if next_second < seconds else inf
            # Client arrivals up to the next event (they come first on a tie): an arrival
            # may schedule an event sooner than the next one's.
            while at < len(arrivals):
                request = arrivals[at]
                arrival_s = request[ENTERED]
                if arrival_s > event_s or arrival_s >= limit:
                    break
                at += 1
                now = arrival_s
                arrive(arrival_s, request)
                if heap:
                    event_s = heap[0][0]
            arrival_s = arrivals[at][ENTERED] if at < len(arrivals) else inf
            if min(arrival_s, event_s) >= limit != inf:
                arrivals = arrivals[at:] + self._arrivals(next_second)
                arrivals.sort(key=_by_entry)
                at = 0
                for stage in stages:
                    stage.roll_second()
                next_second += 1
            elif event_s != inf:
                now = event_s
                _, _, callback, argument = pop(heap)
                callback(event_s, argument)
            elif arrival_s == inf:
                return now

    def _arrivals(self, second: int) -> list[list[float]]:
        """The requests of one second: [stage deadline, deadline, entered, arrival, called]."""
        count = self.counts[second]
        if not count:
            return []
        rng = self._arrival_rng
        slo_s = self.slo_s
        hop = self._hop.sample
        draw = rng.random
        requests = [[0.0, sent + slo_s, sent + hop(draw()), sent, sent]
                    for sent in place_in_second(second, count, rng)]
        self.flow.requests += count
        return requests

    def _tick(self, now: float, _: Any) -> None:
        interval_s = self.policy.interval_s
        quantile = self.pipeline.slo_quantile
        first = max(0, math.ceil(now - interval_s - 1e-9))
        window = self.counts[first:max(first + 1, math.ceil(now - 1e-9))]
        observation = Observation(now_s=now, stages={
            name: stage.observe(now, interval_s, quantile)
            for name, stage in self.stages.items()},
            entrance_rps=sum(window) / max(1, len(window)))
        actions, self._state = self.policy.decide(observation, self._state, now)
        self.decisions += 1
        for action in actions:
            self._apply(action, now)
        if now + interval_s < self.duration_s:
            self.schedule(now + interval_s, self._tick, None)

    def _apply(self, action: Any, now: float) -> None:
        name = getattr(action, "stage", None)
        stage = self.stages.get(name) if isinstance(name, str) else None
        if stage is None:
            raise SimulationError(f"policy {self.policy.name!r} acted on unknown stage in "
                                  f"{action!r}")
        if isinstance(action, Resize):
            if stage.resize(action.cores, now):
                self.actions["vertical"] += 1
        elif isinstance(action, SetReplicas):
            if stage.set_replicas(action.replicas, action.cores, now):
                self.actions["horizontal"] += 1
        elif isinstance(action, SetBatching):
            if stage.set_batching(action.max_batch_size, action.max_delay_ms, now):
                self.actions["batching"] += 1
        elif isinstance(action, SetVariant):
            if stage.set_variant(action.variant, now):
                self.actions["variant"] += 1
        else:
            raise SimulationError(f"policy {self.policy.name!r} returned an unknown action "
                                  f"{action!r}")

    def _result(self, drain_s: float) -> SimResult:
        flow = self.flow
        if flow.ok + flow.late + flow.rejected != flow.requests:
            raise RuntimeError(
                f"simulator lost requests: {flow.requests} sent, {flow.ok} ok, {flow.late} "
                f"late, {flow.rejected} rejected")
        cluster = self.cluster
        return SimResult(
            policy=self.policy.name,
            seed=self.config.seed,
            duration_s=self.duration_s,
            slo_ms=float(self.pipeline.latency_ms),
            percentile=self.pipeline.percentile,
            requests=flow.requests,
            ok=flow.ok,
            late=flow.late,
            rejected=flow.rejected,
            p50_ms=bucket_quantile_ms(flow.latency, 0.5),
            p99_ms=bucket_quantile_ms(flow.latency, 0.99),
            max_ms=bucket_quantile_ms(flow.latency, 1.0),
            slo_percentile_ms=bucket_quantile_ms(flow.latency, self.pipeline.slo_quantile),
            core_seconds=cluster.core_seconds,
            mean_cores=cluster.core_seconds / self.duration_s,
            peak_cores=cluster.peak_cores,
            decisions=self.decisions,
            vertical_actions=self.actions["vertical"],
            horizontal_actions=self.actions["horizontal"],
            batching_actions=self.actions["batching"],
            variant_actions=self.actions["variant"],
            drain_s=drain_s,
            per_stage=tuple(stage.result(self.duration_s) for stage in flow.stages),
        )


def _stage_profile(profile: PipelineProfile, name: str) -> StageProfile:
    try:
        return profile.stage(name)
    except ValueError as exc:
        raise SimulationError(str(exc)) from None
