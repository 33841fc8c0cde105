"""The pipeline's status, computed from its observed children (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sluice_core import quantities
from sluice_core.spec import AUTO, FUSED, Pipeline

from sluice_operator import names
from sluice_operator.render import CONTAINER_NAME

READY = "Ready"
STAGES_READY = "StagesReady"
TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"

Object = Mapping[str, Any]


@dataclass(frozen=True)
class ServiceState:
    """Readiness of one Knative Service as its own status reports it."""

    status: str
    reason: str
    message: str


def service_state(ksvc: Object | None) -> ServiceState:
    """Read a Knative Service's Ready condition, trusting it only for the current generation."""
    if ksvc is None:
        return ServiceState(UNKNOWN, "NotCreated", "the Knative Service does not exist yet")
    generation = ksvc.get("metadata", {}).get("generation")
    status = ksvc.get("status") or {}
    if status.get("observedGeneration") != generation:
        return ServiceState(UNKNOWN, "Deploying",
                            f"Knative has not yet observed generation {generation}")
    ready = find_condition(status.get("conditions") or [], READY)
    if ready is None:
        return ServiceState(UNKNOWN, "Deploying", "Knative reports no Ready condition yet")
    return ServiceState(ready.get("status", UNKNOWN), ready.get("reason") or "",
                        ready.get("message") or "")


def find_condition(conditions: Iterable[Object], kind: str) -> Object | None:
    """The condition of type ``kind``, or None."""
    return next((c for c in conditions if c.get("type") == kind), None)


def condition(kind: str, status: str, reason: str, message: str, generation: int) -> dict[str, Any]:
    """A condition without its transition time (merge_conditions stamps it)."""
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "observedGeneration": generation}


def merge_conditions(
    previous: Sequence[Object], updates: Sequence[Mapping[str, Any]], now: str
) -> list[dict[str, Any]]:
    """``updates`` first, then the previous conditions of other types (e.g. the scaler's).

    lastTransitionTime moves only when a condition's status changes.
    """
    merged = []
    for update in updates:
        before = find_condition(previous, update["type"])
        unchanged = before is not None and before.get("status") == update["status"]
        stamp = before.get("lastTransitionTime") if unchanged and before else None
        merged.append({**update, "lastTransitionTime": stamp or now})
    updated = {u["type"] for u in updates}
    merged += [dict(c) for c in previous if c.get("type") not in updated]
    return merged


def failed_status(
    previous: Object, generation: int, reason: str, message: str, now: str
) -> dict[str, Any]:
    """Status for a pipeline the operator cannot (or may not yet) serve.

    Stage entries and the endpoint are left as they were: services of the last good spec
    keep serving until the spec is fixed.
    """
    updates = [condition(READY, FALSE, reason, message, generation),
               condition(STAGES_READY, FALSE, reason, message, generation)]
    return {
        "observedGeneration": generation,
        "conditions": merge_conditions(previous.get("conditions") or [], updates, now),
    }


def pipeline_status(
    pipeline: Pipeline,
    services: Mapping[str, Object],
    pods: Iterable[Object],
    previous: Object,
    now: str,
) -> dict[str, Any]:
    """Status of a servable pipeline from its Knative Services (by name) and pods."""
    fused = pipeline.effective_composition == FUSED
    frontend = (names.fused_service_name(pipeline.name) if fused
                else names.router_service_name(pipeline.name))
    pods_by_service = _ready_pods_by_service(pods)
    stages, stage_states = [], []
    for stage in pipeline.stages:
        service = frontend if fused else names.stage_service_name(pipeline.name, stage.name)
        state = service_state(services.get(service))
        stage_states.append((stage.name, service, state))
        ready_pods = pods_by_service.get(service, [])
        stages.append({
            "name": stage.name,
            "service": service,
            "url": _address(services.get(service)),
            "ready": state.status == TRUE,
            "replicas": len(ready_pods),
            "cpu": quantities.format_cpu(sum((_pod_cpu(p) for p in ready_pods), Decimal(0))),
            "batching": {"maxBatchSize": stage.max_batch_size, "maxDelayMs": stage.max_delay_ms},
        })
    stages_condition = _stages_condition(stage_states, pipeline.generation)
    ready_condition = _ready_condition(pipeline, stages_condition,
                                       service_state(services.get(frontend)), fused)
    status: dict[str, Any] = {
        "observedGeneration": pipeline.generation,
        "composition": pipeline.effective_composition,
        "stagesReady": f"{sum(s['ready'] for s in stages)}/{len(stages)}",
        "stages": stages,
        "conditions": merge_conditions(previous.get("conditions") or [],
                                       [ready_condition, stages_condition], now),
    }
    frontend_status = (services.get(frontend) or {}).get("status") or {}
    if url := frontend_status.get("url"):
        status["endpoint"] = url
    if address := _address(services.get(frontend)):
        status["address"] = address
    return status


def _stages_condition(
    states: Sequence[tuple[str, str, ServiceState]], generation: int
) -> dict[str, Any]:
    failed = [(n, svc, s) for n, svc, s in states if s.status == FALSE]
    waiting = [(n, svc, s) for n, svc, s in states if s.status == UNKNOWN]
    if failed:
        return condition(STAGES_READY, FALSE, "StageFailed", _describe(failed), generation)
    if waiting:
        return condition(STAGES_READY, UNKNOWN, "StagesNotReady",
                         "waiting for " + _describe(waiting), generation)
    return condition(STAGES_READY, TRUE, "AllStagesReady",
                     f"{len(states)}/{len(states)} stages ready", generation)


def _ready_condition(
    pipeline: Pipeline, stages: Mapping[str, Any], frontend: ServiceState, fused: bool
) -> dict[str, Any]:
    note = ("; composition auto is reserved for the planner and is served as isolated for now"
            if pipeline.composition == AUTO else "")
    generation = pipeline.generation
    if stages["status"] != TRUE or fused:
        # Fused: the one service is both the stages and the endpoint.
        return condition(READY, stages["status"], stages["reason"], stages["message"] + note,
                         generation)
    router = names.router_service_name(pipeline.name)
    if frontend.status == FALSE:
        return condition(READY, FALSE, "RouterFailed",
                         _describe([("router", router, frontend)]) + note, generation)
    if frontend.status == UNKNOWN:
        return condition(READY, UNKNOWN, "RouterNotReady",
                         "waiting for " + _describe([("router", router, frontend)]) + note,
                         generation)
    return condition(READY, TRUE, "Ready", "pipeline is serving" + note, generation)


def _describe(items: Iterable[tuple[str, str, ServiceState]]) -> str:
    parts = []
    for name, service, state in items:
        detail = ": ".join(p for p in (state.reason, state.message) if p)
        parts.append(f"{name} ({service})" + (f" [{detail}]" if detail else ""))
    return "; ".join(parts)


def _address(ksvc: Object | None) -> str | None:
    status = (ksvc or {}).get("status") or {}
    return (status.get("address") or {}).get("url") or None


def _ready_pods_by_service(pods: Iterable[Object]) -> dict[str, list[Object]]:
    grouped: dict[str, list[Object]] = {}
    for pod in pods:
        meta = pod.get("metadata", {})
        service = (meta.get("labels") or {}).get(names.LABEL_KNATIVE_SERVICE)
        if service and not meta.get("deletionTimestamp") and _pod_ready(pod):
            grouped.setdefault(service, []).append(pod)
    return grouped


def _pod_ready(pod: Object) -> bool:
    ready = find_condition((pod.get("status") or {}).get("conditions") or [], READY)
    return ready is not None and ready.get("status") == TRUE


def _pod_cpu(pod: Object) -> Decimal:
    """CPU the runtime container has now: the status (after in-place resizes) over the spec."""
    for source in ((pod.get("status") or {}).get("containerStatuses") or [],
                   (pod.get("spec") or {}).get("containers") or []):
        for container in source:
            if container.get("name") != CONTAINER_NAME:
                continue
            resources = container.get("resources") or {}
            for kind in ("limits", "requests"):
                if cpu := (resources.get(kind) or {}).get("cpu"):
                    return quantities.parse(cpu)
    return Decimal(0)
