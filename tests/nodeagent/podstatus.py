"""A pod's status as the kubelet writes it, from what the node saw. Pure: ``now`` is given
(RFC 3339)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ContainerView:
    """One container as the node last saw it."""

    name: str
    image: str
    #: {"running": {...}} | {"waiting": {...}} | {"terminated": {...}}
    state: Mapping[str, Any]
    last_state: Mapping[str, Any]
    ready: bool
    started: bool
    restart_count: int
    container_id: str | None
    #: The requests the node allocated to it, and the resources in force on its cgroups.
    allocated: Mapping[str, str]
    resources: Mapping[str, Any]


@dataclass(frozen=True)
class ResizeView:
    """A resize the node has not finished: pending (reason, message) or in progress."""

    pending: tuple[str, str] | None = None
    in_progress: bool = False


def _condition(kind: str, status: bool, previous: Mapping[str, Mapping[str, Any]], now: str,
               **extra: str) -> dict[str, Any]:
    text = "True" if status else "False"
    before = previous.get(kind)
    since = before["lastTransitionTime"] if before and before.get("status") == text and (
        before.get("reason") == extra.get("reason")) else now
    return {"type": kind, "status": text, "lastProbeTime": None, "lastTransitionTime": since,
            **extra}


def phase(containers: Sequence[ContainerView], restarting: bool) -> str:
    """Pending until a container ran; Succeeded or Failed once all ended for good."""
    if all("terminated" in c.state for c in containers) and containers and not restarting:
        return "Succeeded" if all(c.state["terminated"].get("exitCode") == 0
                                  for c in containers) else "Failed"
    if any("running" in c.state or "terminated" in c.state or c.restart_count
           for c in containers):
        return "Running"
    return "Pending"


def pod_status(pod: Mapping[str, Any], containers: Sequence[ContainerView], pod_ip: str,
               host_ip: str, start_time: str, resize: ResizeView, restarting: bool,
               now: str) -> dict[str, Any]:
    """The whole ``status`` of ``pod`` (lists complete: it is sent as a merge patch)."""
    previous = {c["type"]: c for c in pod.get("status", {}).get("conditions") or []}
    all_ready = bool(containers) and all(c.ready for c in containers)
    conditions = [
        _condition("PodReadyToStartContainers", True, previous, now),
        _condition("Initialized", True, previous, now),
        _condition("ContainersReady", all_ready, previous, now),
        _condition("Ready", all_ready, previous, now),
    ]
    if "PodScheduled" in previous:
        conditions.insert(0, dict(previous["PodScheduled"]))
    generation = str(pod["metadata"].get("generation", 1))
    if resize.pending is not None:
        reason, message = resize.pending
        conditions.append(_condition("PodResizePending", True, previous, now, reason=reason,
                                     message=message))
    elif resize.in_progress:
        conditions.append(_condition("PodResizeInProgress", True, previous, now))
    for condition in conditions:
        if condition["type"].startswith("PodResize"):
            condition["observedGeneration"] = int(generation)
    return {
        "phase": phase(containers, restarting),
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": start_time,
        "observedGeneration": int(generation),
        "containerStatuses": [{
            "name": c.name, "image": c.image, "imageID": "", "containerID": c.container_id,
            "ready": c.ready, "started": c.started, "restartCount": c.restart_count,
            "state": dict(c.state), "lastState": dict(c.last_state),
            "allocatedResources": dict(c.allocated), "resources": dict(c.resources),
        } for c in containers],
    }
