"""One local-mode run: the pipeline's processes up, the load on, the policy deciding every
interval, everything recorded, and everything taken down again whatever happens.

The loop is controller-runtime's: read all state (every process's metrics, the router's
view of its replicas), decide (the decision core's policy, unchanged), then write (the
fleet moves the processes towards what was decided, one non-blocking step at a time).
Between decisions it keeps checking what is pending, so the moment a resize or a new
replica takes effect is known to a fraction of the interval.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sluice_core.scaling.types import (
    Action,
    Allocation,
    Policy,
    Resize,
    SetBatching,
    SetReplicas,
    SetVariant,
)
from sluice_core.spec import Pipeline, Stage

from sluice_local.up.fleet import RETIRING, SERVING, Fleet, StageTarget
from sluice_local.up.observe import OUTCOMES, ReplicaView, StageSettings, TickInput, observe
from sluice_local.up.processes import RuntimeProcess
from sluice_local.up.scrape import EMPTY, Scrape, parse
from sluice_local.up.timeline import ActionRecord, ReplicaRecord, RunTimeline
from sluice_local.up.topology import Batching

#: How often pending effects (a resize, a replica joining) are checked between ticks.
CHECK_INTERVAL_S = 0.1
#: How often everything is read and recorded, whatever the policy's own interval (the
#: static policy decides once a minute; the timeline and the live view go by the second).
TICK_S = 1.0


def target_of(allocation: Allocation, rows_per_request: int) -> StageTarget:
    """What the fleet runs for a policy's allocation (batch sizes in rows)."""
    return StageTarget(allocation.replicas, allocation.cores, allocation.variant,
                       Batching(allocation.max_batch_size * rows_per_request,
                                allocation.max_delay_ms))


def apply_action(target: StageTarget, action: Action, stage: Stage,
                 rows_per_request: int) -> StageTarget:
    """The stage's target after ``action``, within the stage's bounds (as the simulator
    and the platform hold them)."""
    if isinstance(action, Resize):
        return replace(target, cores=_within(action.cores, stage))
    if isinstance(action, SetReplicas):
        replicas = min(max(action.replicas, stage.min_replicas), stage.max_replicas)
        return replace(target, replicas=replicas, cores=_within(action.cores, stage))
    if isinstance(action, SetBatching):
        return replace(target, batching=Batching(action.max_batch_size * rows_per_request,
                                                 action.max_delay_ms))
    return replace(target, variant=action.variant)


def _within(cores: float, stage: Stage) -> float:
    return min(max(cores, stage.cpu.min_value), stage.cpu.max_value)


def describe(action: Action, rows_per_request: int) -> tuple[str, str]:
    """(kind, detail) of an action for the timeline."""
    if isinstance(action, Resize):
        return "resize", f"{action.cores:g} cores per replica"
    if isinstance(action, SetReplicas):
        return "replicas", f"{action.replicas} replicas at {action.cores:g} cores"
    if isinstance(action, SetBatching):
        return "batching", (f"batch {action.max_batch_size * rows_per_request} rows, "
                            f"{action.max_delay_ms:g} ms")
    assert isinstance(action, SetVariant)
    return "variant", f"variant {action.variant}"


@dataclass
class Pending:
    """An action whose effect is awaited: what must hold for it to be in force."""

    record_index: int
    stage: str
    kind: str
    target: StageTarget


@dataclass
class Controller:
    """Drives one run (module docstring); ``clock`` is monotonic seconds."""

    pipeline: Pipeline
    policy: Policy
    fleet: Fleet
    rows_per_request: int
    timeline: RunTimeline
    quota: bool
    clock: Callable[[], float] = time.monotonic
    targets: dict[str, StageTarget] = field(default_factory=dict)
    _state: Any = None
    _scrapes: dict[str, Scrape] = field(default_factory=dict)
    _decision_scrapes: dict[str, Scrape] = field(default_factory=dict)
    _pending: list[Pending] = field(default_factory=list)
    _started_s: float = 0.0
    _last_tick_s: float = 0.0
    _last_decision_s: float = 0.0

    def begin(self, started_s: float) -> None:
        """Start counting time: the load starts now."""
        self._state = self.policy.initial_state()
        self._started_s = self._last_tick_s = self._last_decision_s = started_s
        self._scrapes = self._decision_scrapes = self._scrape_all()

    def tick(self) -> None:
        """Read everything and record a tick; when the policy's interval has passed, let it
        decide over that interval, and start moving towards what it decided."""
        now = self.clock()
        scrapes = self._scrape_all()
        router_status = self._router_stages()
        _, tick = observe(self._input(now, self._last_tick_s, self._scrapes, scrapes,
                                      router_status))
        self._scrapes, self._last_tick_s = scrapes, now
        self._record_replicas(scrapes, now)
        self.timeline.ticks.append(tick)
        if now - self._last_decision_s >= self.policy.interval_s - TICK_S / 2:
            observation, _ = observe(self._input(now, self._last_decision_s,
                                                 self._decision_scrapes, scrapes,
                                                 router_status))
            self._decision_scrapes, self._last_decision_s = scrapes, now
            actions, self._state = self.policy.decide(observation, self._state, tick.t_s)
            for action in actions:
                self._take(action, tick.t_s)
        self.fleet.step(self.targets, now)

    def _input(self, now: float, since: float, before: Mapping[str, Scrape],
               after: Mapping[str, Scrape], router_status: Mapping[str, list[dict]]
               ) -> TickInput:
        """What was read, over the interval from ``since`` (with ``before``) to ``now``."""
        return TickInput(
            t_s=now - self._started_s, interval_s=now - since,
            pipeline=self.pipeline.name, percentile=self.pipeline.percentile,
            rows_per_request=self.rows_per_request, stages=self._settings(),
            replicas=[self._view(r, before, after, router_status) for r in self.fleet.replicas
                      if r.phase != RETIRING],
            router_before=before.get("router", EMPTY), router_after=after.get("router", EMPTY),
            in_flight={stage: sum(int(r.get("outstanding", 0)) for r in replicas)
                       for stage, replicas in router_status.items()},
            models=self.fleet.models)

    def check_pending(self) -> None:
        """Record the moment each pending action took effect, and keep the fleet moving."""
        now = self.clock()
        self.fleet.step(self.targets, now)
        router_status = self._router_stages()
        for pending in list(self._pending):
            if self._in_force(pending, router_status):
                record = self.timeline.actions[pending.record_index]
                self.timeline.actions[pending.record_index] = replace(
                    record, effective_s=now - self._started_s)
                self._pending.remove(pending)

    def _record_replicas(self, scrapes: Mapping[str, Scrape], now: float) -> None:
        """Each replica's life in the timeline: started, serving, retired, answered."""
        records = self.timeline.replicas
        for replica in self.fleet.replicas:
            name = replica.process.name
            record = records.get(name)
            if record is None:
                record = records[name] = ReplicaRecord(
                    name, replica.stage, replica.variant,
                    replica.process.started_s - self._started_s, replica.process.cores or 0.0)
            if record.serving_s is None and replica.joined_s is not None:
                record.serving_s = max(0.0, replica.joined_s - self._started_s)
            if record.retired_s is None and replica.phase == RETIRING:
                record.retired_s = now - self._started_s
            if name in scrapes:
                # What its last model answered is what the replica answered (a fused
                # replica's last stage answers for the whole pipeline).
                last = self.fleet.models_of(replica.stage)[-1]
                record.answered = round(sum(
                    scrapes[name].get(OUTCOMES, model=last, outcome=outcome)
                    for outcome in ("ok", "late")))

    def _take(self, action: Action, t_s: float) -> None:
        stage = action.stage
        kind, detail = describe(action, self.rows_per_request)
        if isinstance(action, Resize) and not self.quota:
            # What the policy wanted stays in the record; nothing can carry it out.
            self.timeline.actions.append(ActionRecord(
                t_s, stage, kind, f"{detail}: not applied (no CPU quotas)", action.reason))
            return
        self.targets[stage] = apply_action(self.targets[stage], action,
                                           self.pipeline.stage(stage), self.rows_per_request)
        if isinstance(action, Resize):
            self.fleet.resize(stage, self.targets[stage].cores)
        self.timeline.actions.append(ActionRecord(t_s, stage, kind, detail, action.reason))
        self._pending = [p for p in self._pending if not (p.stage == stage and p.kind == kind)]
        self._pending.append(Pending(len(self.timeline.actions) - 1, stage, kind,
                                     self.targets[stage]))

    def _in_force(self, pending: Pending, router_status: Mapping[str, list[dict]]) -> bool:
        """Whether ``pending``'s effect holds: read from the runtimes and the router."""
        replicas = self.fleet.of(pending.stage)
        serving = [r for r in replicas if r.phase == SERVING]
        if pending.kind == "resize":
            return bool(serving) and all(
                math.isclose(self._cores_reported(r.process), pending.target.cores,
                             rel_tol=0.01) for r in serving)
        if pending.kind == "batching":
            return all(r.batching == pending.target.batching for r in serving)
        ready_at_router = {r["address"] for r in router_status.get(pending.stage, [])
                           if r.get("ready") and not r.get("draining")}
        current = [r for r in replicas if r.variant == pending.target.variant]
        return (len(current) == pending.target.replicas
                and all(r.process.target in ready_at_router for r in current)
                and len(replicas) == len(current))

    def _cores_reported(self, process: RuntimeProcess) -> float:
        text = process.metrics_text()
        return parse(text).get("sluice_cpu_allocation_cores") if text else math.nan

    def _settings(self) -> dict[str, StageSettings]:
        return {name: StageSettings(t.cores, t.batching.max_batch_size,
                                    t.batching.max_delay_ms, t.variant)
                for name, t in self.targets.items()}

    def _view(self, replica: Any, before: Mapping[str, Scrape], after: Mapping[str, Scrape],
              router_status: Mapping[str, list[dict]]) -> ReplicaView:
        name = replica.process.name
        ready_at_router = any(r.get("address") == replica.process.target and r.get("ready")
                              for r in router_status.get(replica.stage, []))
        return ReplicaView(stage=replica.stage,
                           serving=replica.phase == SERVING and ready_at_router,
                           cores_set=replica.process.cores or 0.0,
                           before=before.get(name, EMPTY), after=after.get(name, EMPTY))

    def _scrape_all(self) -> dict[str, Scrape]:
        processes = [r.process for r in self.fleet.replicas]
        if self.fleet.router is not None:
            processes.append(self.fleet.router)
        scrapes = {}
        for process in processes:
            text = process.metrics_text()
            if text is not None:
                scrapes["router" if process is self.fleet.router else process.name] = (
                    parse(text))
        return scrapes

    def _router_stages(self) -> dict[str, list[dict]]:
        """The router's replicas per stage (address, ready, outstanding, draining)."""
        if self.fleet.router is None:
            return {}
        try:
            stages = self.fleet.router.admin("GET", "/v1/stages", self.fleet.admin_token)
        except OSError:
            return {}
        if not isinstance(stages, dict):
            return {}
        return {name: [r for r in replicas if isinstance(r, dict)]
                for name, replicas in stages.items() if isinstance(replicas, list)}
