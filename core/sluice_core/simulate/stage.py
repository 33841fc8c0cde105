"""One stage as the runtime serves it: routing, admission, EDF queues, batching, executors.

What each replica does mirrors ``sluice_runtime.batcher.BatchedModel``:

- **Routing.** The router sends each request to the ready replica with the fewest
  outstanding requests (``RemoteModel._pick``), after checking, as ``PipelineModel`` does,
  that the stages from here are predicted to finish before the request's deadline; each
  stage's prediction is the router's moving average of a call's latency there, counted
  only while the stage has requests in flight. The stage is given the deadline less what
  the stages after it are predicted to take.
- **Admission.** A replica refuses at once a request it predicts to answer late: the work
  running (executor-seconds left) and queued ahead (full batches at the median), spread
  over its executors, plus the request's own batch at the 90th percentile. An idle
  replica judges a lone request by the median alone, as the runtime's probe does. Past
  the queue cap it refuses too.
- **Queue and batching.** The queue is earliest-deadline-first by the stage deadline. A
  batch starts when an executor is free and the queue holds a full batch, or the oldest
  request has waited ``max_delay_ms``, or waiting longer would miss the head's deadline;
  but with an executor idle and fewer than one more request expected before then, it
  starts at once. A batch takes the earliest-deadline requests, at most
  ``max_batch_size`` and no more than the head's remaining time allows; a head that can
  no longer make its deadline even alone is refused.
- **Executors.** A replica of ``c`` cores runs ``max(1, floor(c))`` batches at once,
  each executor worth ``c / executors`` cores. A batch with nothing else ready behind it
  takes as many free executors as make it fastest at the median (intra-op threads, fewer
  on a tie), as the runtime's thread choice does for a lone batch.
- **Service time.** ``latency_ms(rows, cores, q)`` of the replica's variant with
  ``q ~ U(0, 1)``. Isolated hops add the profile's hop latency: one draw per request
  from the router to the first stage, one per batch between stages (a batch's requests
  leave together and their calls travel side by side).

Simplifications, each bounded: a head that expires while every executor is busy is
refused at the next batch completion rather than at its expiry instant (same outcome,
counted up to one batch later); the oldest waiting request is taken to be the head (EDF
order is arrival order but for hop jitter); batches already running keep their speed
through a resize; the per-replica arrival rate is the stage's last whole second shared
equally; the pipeline's concurrency limit (AIMD at the router) is not modelled.
"""

from __future__ import annotations

import heapq
import math

from sluice_core.profiles import ModelProfile, ProfileError, StageProfile
from sluice_core.scaling.types import ReplicaObservation, StageObservation
from sluice_core.simulate.cluster import EPS, Replica
from sluice_core.simulate.config import SimulationError
from sluice_core.simulate.flow import CALLED, DEADLINE, ENTERED, STAGE_DEADLINE, Flow
from sluice_core.simulate.results import (
    BUCKETS_PER_S,
    StageResult,
    bucket_quantile_ms,
    merge_counts,
)
from sluice_core.spec import Stage

#: The runtime starts a batch this much before the last moment (batching.DISPATCH_SLACK_S).
DISPATCH_SLACK_S = 0.0005
#: Weight of the newest call in the router's latency average (remote.EWMA_WEIGHT).
EWMA_WEIGHT = 0.2
#: ``[n]``: the weight of ``n`` calls' mean when they all update the average at once.
_AVERAGE_WEIGHT = tuple(1.0 - (1.0 - EWMA_WEIGHT) ** n for n in range(1025))

class StageSim:
    """One stage: its replicas, their queues and batches, and what it observed."""

    def __init__(self, index: int, spec: Stage, profile: StageProfile, flow: Flow,
                 max_batch_size: int, max_delay_ms: float, variant: str, cores: float,
                 replicas: int) -> None:
        self.index = index
        self.name = spec.name
        self.spec = spec
        self.profile = profile
        self.flow = flow
        self.next: StageSim | None = None
        self.max_batch = max_batch_size
        self.max_delay_s = max_delay_ms / 1000.0
        self.variant = variant
        self._model(variant)  # fail early on a variant without a profile
        self.cores_asked = self._clamp_cores(cores)
        self.target = replicas
        self.replicas: list[Replica] = []
        self.serving: list[Replica] = []
        self._next_id = 0
        # The arrival rate the batchers see: the last whole second, shared by the replicas.
        self._rate_s = 0.0
        self._second_mark = 0
        self.rate_per_replica = 0.0
        self.max_queue = flow.config.max_queue_size
        # Router's moving average of a call's latency here (seconds).
        self.ewma_s = 0.0
        # Requests at a replica (queued or computing), and their integral over time since
        # the interval began.
        self.inside = 0
        self._area = 0.0
        self._area_since = 0.0
        # Counters over the run; an interval's are differences from its start's marks.
        self.arrivals = 0
        self.answered = 0
        self.late = 0
        self.refused_router = 0
        self.refused_deadline = 0
        self.refused_queue_full = 0
        self.refused_unavailable = 0
        self.batches = 0
        self.largest_batch = 0
        self.peak_replicas = 0
        self._marks = (0, 0, 0)
        self.hist: dict[int, int] = {}
        self._hist_total: dict[int, int] = {}

    # Set-up and replicas ------------------------------------------------------------------

    def _model(self, variant: str) -> ModelProfile:
        try:
            self.spec.variant(variant)
            return self.profile.variant(variant)
        except (KeyError, ProfileError) as exc:
            raise SimulationError(f"stage {self.name!r}: {exc.args[0]}") from None

    def _clamp_cores(self, cores: float) -> float:
        """New replicas start within the stage's CPU bounds, as the operator renders them."""
        return min(max(cores, self.spec.cpu.min_value), self.spec.cpu.max_value)

    def deploy(self, now: float) -> None:
        """Start the initial replicas, ready at once (the run starts from a warm service)."""
        for _ in range(self.target):
            self._add_replica(self.variant, self.cores_asked, now, warm=True)

    def _add_replica(self, variant: str, cores: float, now: float, *, warm: bool) -> None:
        replica = Replica(self._next_id, self, variant, self._model(variant), cores)
        self._next_id += 1
        self.replicas.append(replica)
        self.peak_replicas = max(self.peak_replicas, len(self.replicas))
        if self.flow.cluster.place(replica, now):
            self.replica_placed(replica, now, warm=warm)

    def replica_placed(self, replica: Replica, now: float, *, warm: bool = False) -> None:
        """``replica`` got its cores: it starts (ready at once when ``warm``)."""
        self._setup_runtime(replica)
        if warm or self.flow.instant:
            self._ready(now, replica)
        else:
            start_s = self.flow.config.platform_start_s + replica.model.cold_start_s
            self.flow.schedule(now + start_s, self._ready, replica)

    def _ready(self, now: float, replica: Replica) -> None:
        if replica.removed or replica.draining:
            return
        replica.ready = True
        self.serving.append(replica)
        self._share_rate()
        self._retire_old_variants(now)

    def replica_resized(self, replica: Replica, now: float) -> None:
        """``replica`` computes with its new cores from now on."""
        self._setup_runtime(replica)
        self._kick(replica, now)

    def _setup_runtime(self, replica: Replica) -> None:
        """Executors and service tables for the replica's cores and the batching in force."""
        executors = max(1, math.floor(replica.cores + EPS))
        per_executor = replica.cores / executors
        rows = self.max_batch
        tables = [self.flow.tables.get(replica.model, per_executor * k, rows)
                  for k in range(1, executors + 1)]
        replica.executors = executors
        replica.tables = tables
        replica.mean1 = tables[0].mean
        replica.upper1 = tables[0].upper
        lone = min(range(executors), key=lambda k: (tables[k].mean[1], k))
        replica.lone_mean1 = tables[lone].mean[1]
        replica.lone_upper1 = tables[lone].upper[1]

    def _drain(self, replica: Replica, now: float) -> None:
        """Take no new requests; go away once idle (at once if not serving yet)."""
        replica.draining = True
        if replica in self.serving:
            self.serving.remove(replica)
            self._share_rate()
        if not replica.ready or replica.idle:
            self._remove(replica, now)

    def _remove(self, replica: Replica, now: float) -> None:
        self.replicas.remove(replica)
        self.flow.cluster.release(replica, now)

    def _share_rate(self) -> None:
        self.rate_per_replica = self._rate_s / max(1, len(self.serving))

    def roll_second(self) -> None:
        """A second of simulated time passed: the arrival rate the batchers see."""
        self._rate_s = float(self.arrivals - self._second_mark)
        self._second_mark = self.arrivals
        self._share_rate()

    @staticmethod
    def _victim_order(replica: Replica) -> tuple[bool, bool, int, int]:
        # Unplaced first, then starting, then the least loaded, newest first.
        return (replica.placed, replica.ready, len(replica.queue) + replica.inbatch,
                -replica.id)

    def _retire_old_variants(self, now: float) -> None:
        """Rolling variant change: an old replica leaves for each new one ready."""
        old = [r for r in self.replicas if not r.draining and r.variant != self.variant]
        if not old:
            return
        ready_new = sum(1 for r in self.serving if r.variant == self.variant)
        keep = max(0, self.target - ready_new)
        for replica in sorted(old, key=self._victim_order)[:max(0, len(old) - keep)]:
            self._drain(replica, now)

    # Policy actions -----------------------------------------------------------------------

    def set_replicas(self, replicas: int, cores: float, now: float) -> bool:
        """Run ``replicas`` replicas (within the stage's bounds), new ones at ``cores``."""
        replicas = min(max(replicas, self.spec.min_replicas), self.spec.max_replicas)
        self.target = replicas
        self.cores_asked = self._clamp_cores(cores)
        active = [r for r in self.replicas if not r.draining and r.variant == self.variant]
        changed = len(active) != replicas
        for _ in range(replicas - len(active)):
            self._add_replica(self.variant, self.cores_asked, now, warm=False)
        for replica in sorted(active, key=self._victim_order)[:max(0, len(active) - replicas)]:
            self._drain(replica, now)
        self._retire_old_variants(now)
        return changed

    def resize(self, cores: float, now: float) -> bool:
        """Resize every replica in place to ``cores``."""
        self.cores_asked = self._clamp_cores(cores)
        low, high = self.spec.cpu.min_value, self.spec.cpu.max_value
        changed = False
        for replica in list(self.replicas):
            if not replica.draining:
                changed |= self.flow.cluster.resize(replica, cores, low, high, now)
        return changed

    def set_batching(self, max_batch_size: int, max_delay_ms: float, now: float) -> bool:
        """Change batching on every replica, effective for the next batch."""
        if max_batch_size < 1 or max_delay_ms < 0:
            raise SimulationError(
                f"stage {self.name!r}: batching needs max_batch_size >= 1 and "
                f"max_delay_ms >= 0, got {max_batch_size}, {max_delay_ms}")
        changed = (max_batch_size, max_delay_ms / 1000.0) != (self.max_batch, self.max_delay_s)
        self.max_batch = max_batch_size
        self.max_delay_s = max_delay_ms / 1000.0
        for replica in list(self.replicas):
            if replica.placed:
                self._setup_runtime(replica)
                self._kick(replica, now)
        return changed

    def set_variant(self, variant: str, now: float) -> bool:
        """Serve ``variant``: new replicas start, old ones leave as new ones are ready."""
        if variant == self.variant:
            return False
        self._model(variant)
        self.variant = variant
        # Back to a variant still running mid-roll-out: only the missing ones start.
        have = sum(1 for r in self.replicas if not r.draining and r.variant == variant)
        for _ in range(self.target - have):
            self._add_replica(variant, self.cores_asked, now, warm=False)
        self._retire_old_variants(now)
        return True

    # Requests -----------------------------------------------------------------------------

    def arrive(self, now: float, request: list[float]) -> None:
        """One request reaches the stage (the router's call, after its hop)."""
        self.arrivals += 1
        reserve = self.flow.reserve
        after = sum(reserve[self.index + 1:])
        if request[CALLED] + reserve[self.index] + after > request[DEADLINE]:
            self._refuse_router()
            return
        request[STAGE_DEADLINE] = request[DEADLINE] - after
        replica = self._route()
        if replica is None:
            self._refuse_unavailable()
        elif self._admit(replica, request, now):
            inside = self.inside
            self._area += inside * (now - self._area_since)
            self._area_since = now
            self.inside = inside + 1
            if not inside:
                self.flow.reserve[self.index] = self.ewma_s
            if replica.busy < replica.executors:
                self._kick(replica, now)

    def arrive_batch(self, now: float, batch: list[list[float]]) -> None:
        """A batch of the previous stage reaches this one (one hop for all)."""
        self.arrivals += len(batch)
        reserve = self.flow.reserve
        after = sum(reserve[self.index + 1:])
        here = reserve[self.index] + after
        touched: list[Replica] = []
        admitted = 0
        for request in batch:
            if request[CALLED] + here > request[DEADLINE]:
                self._refuse_router()
                continue
            request[STAGE_DEADLINE] = request[DEADLINE] - after
            replica = self._route()
            if replica is None:
                self._refuse_unavailable()
            elif self._admit(replica, request, now):
                admitted += 1
                if replica not in touched:
                    touched.append(replica)
        if admitted:
            self._enter(admitted, now)
            for replica in touched:
                if replica.busy < replica.executors:
                    self._kick(replica, now)

    def _enter(self, count: int, now: float) -> None:
        """``count`` requests were admitted at a replica."""
        self._area += self.inside * (now - self._area_since)
        self._area_since = now
        self.inside += count
        self.flow.reserve[self.index] = self.ewma_s

    def _leave(self, count: int, now: float) -> None:
        """``count`` admitted requests left (answered or expired)."""
        self._area += self.inside * (now - self._area_since)
        self._area_since = now
        self.inside -= count
        self.flow.reserve[self.index] = self.ewma_s if self.inside else 0.0

    def _route(self) -> Replica | None:
        serving = self.serving
        if len(serving) == 1:
            return serving[0]
        if not serving:
            return None
        best = serving[0]
        fewest = len(best.queue) + best.inbatch
        for replica in serving:
            outstanding = len(replica.queue) + replica.inbatch
            if outstanding < fewest:
                best, fewest = replica, outstanding
        return best

    def _admit(self, replica: Replica, request: list[float], now: float) -> bool:
        """Queue ``request`` at ``replica`` in deadline order, or refuse it (False)."""
        queue = replica.queue
        queued = len(queue)
        if queued >= self.max_queue:
            self._refuse_queue_full()
            return False
        if queued == 0 and replica.busy == 0:
            predicted = replica.lone_mean1 + DISPATCH_SLACK_S
        else:
            max_batch = self.max_batch
            full, partial = divmod(queued, max_batch)
            running = replica.end_slot_sum - now * replica.busy
            predicted = ((running + full * replica.mean1[max_batch]) / replica.executors
                         + replica.upper1[partial + 1] + DISPATCH_SLACK_S)
        deadline = request[STAGE_DEADLINE]
        if now + predicted > deadline:
            self._refuse_deadline()
            return False
        if not queued or deadline >= queue[-1][STAGE_DEADLINE]:
            queue.append(request)
        else:  # hop jitter or a changed reserve put it ahead of some: EDF insert
            at = queued - 1
            while at > 0 and queue[at - 1][STAGE_DEADLINE] > deadline:
                at -= 1
            queue.insert(at, request)
        return True

    def _kick(self, replica: Replica, now: float) -> None:
        """Refuse expired heads, then start batches while executors are free and it is time."""
        queue = replica.queue
        flow = self.flow
        while queue:
            head = queue[0]
            expires = head[STAGE_DEADLINE] - replica.lone_upper1 - DISPATCH_SLACK_S
            if expires <= now:
                queue.popleft()
                self._leave(1, now)
                self.refused_deadline += 1
                flow.rejected += 1
                continue
            if replica.busy >= replica.executors:
                return
            queued = len(queue)
            max_batch = self.max_batch
            if queued < max_batch:
                start = min(head[ENTERED] + self.max_delay_s,
                            head[STAGE_DEADLINE] - replica.mean1[queued] - DISPATCH_SLACK_S)
                if start > now and self.rate_per_replica * (start - now) >= 1.0:
                    wake = min(start, expires)
                    if replica.timer_at is None or wake < replica.timer_at:
                        replica.timer_at = wake
                        heapq.heappush(flow.heap, (wake, next(flow.sequence), self._timer,
                                                   replica))
                    return
                rows = queued
            else:
                rows = max_batch
            budget = head[STAGE_DEADLINE] - now - DISPATCH_SLACK_S
            upper = replica.upper1
            while rows > 1 and upper[rows] > budget:
                rows -= 1
            batch = [queue.popleft() for _ in range(rows)]
            if rows > self.largest_batch:
                self.largest_batch = rows
            threads = 1
            free = replica.executors - replica.busy
            if free > 1 and not queue:
                tables = replica.tables
                best = tables[0].mean[rows]
                for k in range(2, free + 1):
                    mean = tables[k - 1].mean[rows]
                    if mean < best:
                        best, threads = mean, k
            end = now + replica.tables[threads - 1].sample(rows, flow.random())
            replica.busy += threads
            replica.end_slot_sum += end * threads
            replica.inbatch += rows
            heapq.heappush(flow.heap, (end, next(flow.sequence), self._complete,
                                       (replica, batch, threads, end)))

    def _timer(self, now: float, replica: Replica) -> None:
        if replica.timer_at == now:
            replica.timer_at = None
            self._kick(replica, now)
            if replica.draining and replica.idle and not replica.removed:
                self._remove(replica, now)

    def _complete(self, now: float, argument: tuple[Replica, list[list[float]], int, float]
                  ) -> None:
        replica, batch, threads, end = argument
        busy = replica.busy - threads
        replica.busy = busy
        replica.end_slot_sum = replica.end_slot_sum - end * threads if busy else 0.0
        count = len(batch)
        replica.inbatch -= count
        hist = self.hist
        late = 0
        called_s = 0.0
        for request in batch:
            bucket = int((now - request[ENTERED]) * BUCKETS_PER_S)
            hist[bucket] = hist.get(bucket, 0) + 1
            if now > request[STAGE_DEADLINE]:
                late += 1
            called_s += now - request[CALLED]
        self.answered += count
        self.late += late
        self.batches += 1
        # The router averages call by call; the calls of a batch end together.
        ewma = self.ewma_s
        ewma += (_AVERAGE_WEIGHT[count] if count < len(_AVERAGE_WEIGHT) else 1.0) * (
            called_s / count - ewma)
        self.ewma_s = ewma
        inside = self.inside
        self._area += inside * (now - self._area_since)
        self._area_since = now
        inside -= count
        self.inside = inside
        flow = self.flow
        flow.reserve[self.index] = ewma if inside else 0.0
        following = self.next
        if following is None:
            flow.finish(batch, now)
        else:
            arrives = now + (flow.hop.sample(flow.random()) if flow.hop is not None else 0.0)
            for request in batch:
                request[CALLED] = now
                request[ENTERED] = arrives
            heapq.heappush(flow.heap, (arrives, next(flow.sequence), following.arrive_batch,
                                       batch))
        if replica.queue:
            self._kick(replica, now)
            if replica.draining and replica.idle:
                self._remove(replica, now)
        elif replica.draining and not busy:
            self._remove(replica, now)

    # Refusals: each ends a request, counted at this stage and in the ledger.

    def _refuse_router(self) -> None:
        self.refused_router += 1
        self.flow.rejected += 1

    def _refuse_unavailable(self) -> None:
        self.refused_unavailable += 1
        self.flow.rejected += 1

    def _refuse_queue_full(self) -> None:
        self.refused_queue_full += 1
        self.flow.rejected += 1

    def _refuse_deadline(self) -> None:
        self.refused_deadline += 1
        self.flow.rejected += 1

    @property
    def missed(self) -> int:
        """Requests answered late or refused at the stage, over the run."""
        return (self.late + self.refused_router + self.refused_deadline
                + self.refused_queue_full + self.refused_unavailable)

    # Observation and results --------------------------------------------------------------

    def observe(self, now: float, interval_s: float, quantile: float) -> StageObservation:
        """What the stage's metrics say about the interval ending ``now``; starts the next."""
        self._area += self.inside * (now - self._area_since)
        self._area_since = now
        arrivals, answered, missed = self._marks
        observation = StageObservation(
            arrival_rps=(self.arrivals - arrivals) / interval_s,
            queue_depth=sum(len(r.queue) for r in self.replicas),
            in_flight=self._area / interval_s,
            answered=self.answered - answered,
            missed=self.missed - missed,
            latency_ms=bucket_quantile_ms(self.hist, quantile),
            replicas=tuple(
                ReplicaObservation(ready=r.ready, cores=r.cores, desired_cores=r.desired,
                                   resize=r.resize)
                for r in self.replicas if not r.draining),
            max_batch_size=self.max_batch,
            max_delay_ms=self.max_delay_s * 1000.0,
            variant=self.variant,
        )
        self._close_interval()
        return observation

    def _close_interval(self) -> None:
        merge_counts(self._hist_total, self.hist)
        self.hist = {}
        self._area = 0.0
        self._marks = (self.arrivals, self.answered, self.missed)

    def result(self, duration_s: float) -> StageResult:
        """The stage over the whole run."""
        self._close_interval()
        cluster = self.flow.cluster
        core_seconds = cluster.stage_core_seconds[self.index]
        return StageResult(
            name=self.name,
            arrivals=self.arrivals,
            answered=self.answered,
            late=self.late,
            refused_router=self.refused_router,
            refused_deadline=self.refused_deadline,
            refused_queue_full=self.refused_queue_full,
            refused_unavailable=self.refused_unavailable,
            batches=self.batches,
            mean_batch_size=self.answered / self.batches if self.batches else None,
            largest_batch=self.largest_batch,
            p50_ms=bucket_quantile_ms(self._hist_total, 0.5),
            p99_ms=bucket_quantile_ms(self._hist_total, 0.99),
            max_ms=bucket_quantile_ms(self._hist_total, 1.0),
            core_seconds=core_seconds,
            mean_cores=core_seconds / duration_s if duration_s else 0.0,
            peak_cores=cluster.stage_peak[self.index],
            peak_replicas=self.peak_replicas,
            final_replicas=sum(1 for r in self.replicas if not r.draining),
            resizes_deferred=cluster.resizes_deferred[self.index],
            resizes_infeasible=cluster.resizes_infeasible[self.index],
        )
