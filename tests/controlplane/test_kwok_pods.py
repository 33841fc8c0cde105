"""Pods on KWOK's fake node run, and in-place resize goes through the stages that play
the kubelet's part."""

from __future__ import annotations

import json

import pytest

from tests.controlplane.cluster import DEFAULT_NODE
from tests.controlplane.components import POD_CIDR

pytestmark = pytest.mark.controlplane

BURSTABLE = {
    "requests": {"cpu": "500m", "memory": "128Mi"},
    "limits": {"cpu": "1", "memory": "256Mi"},
}
GUARANTEED = {
    "requests": {"cpu": "1", "memory": "256Mi"},
    "limits": {"cpu": "1", "memory": "256Mi"},
}


def _create_pod(plane, namespace: str, name: str, resources: dict, annotations=None) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "containers": [
                {"name": "app", "image": "example.invalid/app:1", "resources": resources}
            ],
        },
    }
    plane.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(pod))


def _get(plane, namespace: str, name: str) -> dict:
    return json.loads(plane.kubectl("get", "-n", namespace, "pod", name, "-o", "json").stdout)


def _running(plane, namespace: str, name: str) -> dict:
    def check() -> dict | None:
        pod = _get(plane, namespace, name)
        statuses = pod["status"].get("containerStatuses", [])
        running = (
            pod["status"].get("phase") == "Running" and statuses and statuses[0].get("resources")
        )
        return pod if running else None

    return plane.wait_for(check, timeout=120, what=f"pod {name} to run")


def _resize(plane, namespace: str, name: str, resources: dict, check: bool = True):
    patch = {"spec": {"containers": [{"name": "app", "resources": resources}]}}
    return plane.kubectl(
        "patch", "-n", namespace, "pod", name, "--subresource=resize",
        "--type=strategic", "-p", json.dumps(patch), "-o", "json", check=check,
    )  # fmt: skip


def _conditions(pod: dict) -> dict[str, dict]:
    return {c["type"]: c for c in pod["status"].get("conditions", [])}


def _wait_condition(plane, namespace: str, name: str, kind: str) -> tuple[dict, dict]:
    """Wait until the pod has condition ``kind``; return the pod and the condition."""

    def found() -> tuple[dict, dict] | None:
        pod = _get(plane, namespace, name)
        condition = _conditions(pod).get(kind)
        return (pod, condition) if condition else None

    return plane.wait_for(found, timeout=60, what=f"condition {kind} on pod {name}")


def _wait_resized(plane, namespace: str, name: str, cpu_request: str) -> dict:
    """Wait until the container runs with ``cpu_request`` and no resize is outstanding."""

    def done() -> dict | None:
        pod = _get(plane, namespace, name)
        running = pod["status"]["containerStatuses"][0]["resources"]["requests"]["cpu"]
        outstanding = _conditions(pod).keys() & {"PodResizeInProgress", "PodResizePending"}
        return pod if running == cpu_request and not outstanding else None

    return plane.wait_for(done, timeout=120, what=f"pod {name} to run with cpu {cpu_request}")


def test_pod_runs_with_container_resources_in_status(control_plane, namespace):
    _create_pod(control_plane, namespace, "web", BURSTABLE)
    pod = _running(control_plane, namespace, "web")
    assert pod["spec"]["nodeName"] == DEFAULT_NODE
    assert pod["status"]["podIP"].startswith(POD_CIDR.split(".0.0/")[0] + ".")
    assert pod["status"]["qosClass"] == "Burstable"
    status = pod["status"]["containerStatuses"][0]
    assert status["resources"] == BURSTABLE
    assert status["allocatedResources"] == BURSTABLE["requests"]
    assert _conditions(pod)["Ready"]["status"] == "True"


def test_resize_raising_cpu_is_applied_by_the_fake_kubelet(control_plane, namespace):
    _create_pod(control_plane, namespace, "web", BURSTABLE)
    _running(control_plane, namespace, "web")
    bigger = {
        "requests": {"cpu": "750m", "memory": "128Mi"},
        "limits": {"cpu": "1500m", "memory": "256Mi"},
    }
    change = {"requests": {"cpu": "750m"}, "limits": {"cpu": "1500m"}}
    resized = json.loads(_resize(control_plane, namespace, "web", change).stdout)
    assert resized["spec"]["containers"][0]["resources"] == bigger

    pod = _wait_resized(control_plane, namespace, "web", "750m")
    assert pod["status"]["containerStatuses"][0]["resources"] == bigger
    assert pod["status"]["containerStatuses"][0]["allocatedResources"] == bigger["requests"]
    assert pod["status"]["observedGeneration"] == pod["metadata"]["generation"]


def test_resize_is_reported_in_progress_until_actuated(control_plane, namespace):
    # The annotation holds the fake kubelet's second step long enough to observe the first.
    _create_pod(
        control_plane, namespace, "slow", BURSTABLE,
        annotations={"kwok.sluice.dev/resize-delay": "20s"},
    )  # fmt: skip
    _running(control_plane, namespace, "slow")
    _resize(control_plane, namespace, "slow", {"requests": {"cpu": "600m"}})

    pod, condition = _wait_condition(control_plane, namespace, "slow", "PodResizeInProgress")
    status = pod["status"]["containerStatuses"][0]
    assert status["allocatedResources"]["cpu"] == "600m"
    assert status["resources"]["requests"]["cpu"] == "500m"
    assert condition["status"] == "True"
    assert condition["observedGeneration"] == pod["metadata"]["generation"]
    _wait_resized(control_plane, namespace, "slow", "600m")


def test_infeasible_resize_stays_pending(control_plane, namespace):
    _create_pod(
        control_plane, namespace, "big", BURSTABLE,
        annotations={"kwok.sluice.dev/resize": "Infeasible"},
    )  # fmt: skip
    _running(control_plane, namespace, "big")
    _resize(control_plane, namespace, "big", {"requests": {"cpu": "900m"}})

    pod, condition = _wait_condition(control_plane, namespace, "big", "PodResizePending")
    assert condition["reason"] == "Infeasible"
    status = pod["status"]["containerStatuses"][0]
    assert status["resources"] == BURSTABLE
    assert status["allocatedResources"] == BURSTABLE["requests"]

    # Once the node can take it (annotation gone), the resize completes and the condition clears.
    control_plane.kubectl("annotate", "-n", namespace, "pod", "big", "kwok.sluice.dev/resize-")

    _wait_resized(control_plane, namespace, "big", "900m")


def test_resize_changing_qos_class_is_refused(control_plane, namespace):
    _create_pod(control_plane, namespace, "steady", GUARANTEED)
    _running(control_plane, namespace, "steady")
    # Raising only the CPU limit would turn a Guaranteed pod Burstable.
    result = _resize(control_plane, namespace, "steady", {"limits": {"cpu": "2"}}, check=False)
    assert result.returncode != 0
    assert "Pod QOS Class may not change as a result of resizing" in result.stderr
    pod = _get(control_plane, namespace, "steady")
    assert pod["spec"]["containers"][0]["resources"] == GUARANTEED


def test_resize_is_refused_while_running_containers_report_no_resources(control_plane, namespace):
    # Why pod-ready fills `resources`: a pod on a node KWOK does not manage, marked running
    # by hand the way KWOK's default stage would, cannot be resized.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bare"},
        "spec": {
            "nodeName": "unmanaged-node",
            "containers": [
                {"name": "app", "image": "example.invalid/app:1", "resources": BURSTABLE}
            ],
        },
    }
    control_plane.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(pod))
    running = {"state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}
    status = {
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "app", "image": "example.invalid/app:1", "imageID": "", "ready": True,
                 "restartCount": 0, **running}
            ],
        }
    }  # fmt: skip
    control_plane.kubectl(
        "patch", "-n", namespace, "pod", "bare", "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip
    result = _resize(control_plane, namespace, "bare", {"requests": {"cpu": "600m"}}, check=False)
    assert result.returncode != 0
    assert "Pod running on node without support for resize" in result.stderr
