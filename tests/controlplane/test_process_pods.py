"""Pods that really run: on a process node (tests.nodeagent), a pod's container is a
process in the pod's own network namespace and cgroups; its status is what happened;
an in-place resize rewrites the running process's quota; the node's accounting defers
or refuses a resize; deletion drains and leaves nothing."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
import yaml
from sluice_core.spec import parse_pipeline
from sluice_operator import render
from sluice_operator.settings import OperatorSettings
from sluice_runtime.cpu import cgroup_cores, own_cgroup

from tests.conftest import ROOT
from tests.nodeagent.network import POD_NETWORK
from tests.runtime.harness import infer
from tests.runtime.test_pipeline import by_hand, utterances

pytestmark = pytest.mark.controlplane

RUNTIME_IMAGE = "sluice-runtime:dev"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


def pod_manifest(name: str, node: str, image: str, *, cpu: str = "500m",
                 args: list[str] | None = None, command: list[str] | None = None,
                 probe: dict | None = None, restart: str = "Always") -> dict:
    container = {"name": "main", "image": image,
                 "resources": {"requests": {"cpu": cpu, "memory": "256Mi"},
                               "limits": {"cpu": cpu, "memory": "1Gi"}},
                 "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {
                     "fieldPath": "status.podIP"}}},
                         {"name": "POD_NAME", "valueFrom": {"fieldRef": {
                             "fieldPath": "metadata.name"}}}]}
    if args is not None:
        container["args"] = args
    if command is not None:
        container["command"] = command
    if probe is not None:
        container["readinessProbe"] = probe
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "restartPolicy": restart,
                     "terminationGracePeriodSeconds": 10, "containers": [container]}}


def create(plane, namespace: str, manifest: dict) -> None:
    plane.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def get(plane, namespace: str, name: str) -> dict:
    return json.loads(plane.kubectl("get", "-n", namespace, "pod", name, "-o", "json").stdout)


def conditions(pod: dict) -> dict[str, dict]:
    return {c["type"]: c for c in pod["status"].get("conditions", [])}


def wait_pod(plane, namespace: str, name: str, check, what: str, timeout: float = 120):
    return plane.wait_for(lambda: (lambda p: p if check(p) else None)(
        get(plane, namespace, name)), timeout=timeout, what=f"pod {name}: {what}")


def ready(pod: dict) -> bool:
    return conditions(pod).get("Ready", {}).get("status") == "True"


def runtime_pod(name: str, node: str, models: Path) -> dict:
    return pod_manifest(name, node, RUNTIME_IMAGE, args=[
        "serve", "--host", "0.0.0.0", "--port", "8001", "--metrics-port", "8002",
        "--cpu-poll-interval-s", "0.25", "--model", f"mlp={models / 'mlp.onnx'}"],
        probe={"grpc": {"port": 8001}, "periodSeconds": 1})


def metric(pod_ip: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{pod_ip}:8002/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def process_cgroup_quota(pod: dict) -> float:
    """The CPU limit (cores) the pod's container process runs under, found from its
    /proc files as the runtime finds its own."""
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].split("//")[1])
    cores = cgroup_cores(own_cgroup(Path(f"/proc/{pid}/cgroup").read_text(),
                                    Path(f"/proc/{pid}/mountinfo").read_text()))
    assert cores is not None, "the process runs under no CPU limit"
    return cores


def resize(plane, namespace: str, name: str, cpu: str):
    patch = {"spec": {"containers": [{"name": "main", "resources": {
        "requests": {"cpu": cpu}, "limits": {"cpu": cpu}}}]}}
    plane.kubectl("patch", "-n", namespace, "pod", name, "--subresource=resize",
                  "--type=strategic", "-p", json.dumps(patch))


def only_pods_of(plane, node: str, namespace: str) -> bool:
    """Every pod on ``node`` is in ``namespace`` (earlier tests' pods have left)."""
    pods = json.loads(plane.kubectl("get", "pods", "-A", "--field-selector",
                                    f"spec.nodeName={node}", "-o", "json").stdout)["items"]
    return all(p["metadata"]["namespace"] == namespace for p in pods)


@pytest.fixture(autouse=True)
def node_to_ourselves(control_plane, process_node, namespace):
    """Each test starts on a node its predecessors' pods have left: pods here are bound to
    the node directly, so the node's own admission, not the scheduler, decides room."""
    control_plane.wait_for(lambda: only_pods_of(control_plane, process_node, namespace),
                           timeout=120, what="the node to hold no other test's pods")


@pytest.fixture
def runtime_pod_running(control_plane, process_node, namespace, example_models):
    create(control_plane, namespace, runtime_pod("runtime", process_node, example_models))
    pod = wait_pod(control_plane, namespace, "runtime", ready, "Ready")
    return pod


def test_a_pod_runs_the_runtime_as_a_process_on_its_own_address(
        control_plane, namespace, runtime_pod_running, example_models):
    pod = runtime_pod_running
    status = pod["status"]
    assert status["phase"] == "Running"
    assert ipaddress.ip_address(status["podIP"]) in POD_NETWORK
    (container,) = status["containerStatuses"]
    assert container["ready"] is True
    assert container["restartCount"] == 0
    assert "running" in container["state"]
    assert container["resources"]["limits"]["cpu"] == "500m"
    # A real request from the host to the pod's own address, answered by the process.
    rows = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    client = triton.InferenceServerClient(f"{status['podIP']}:8001")
    answer = infer(client, "mlp", {"features": rows}).as_numpy("scores")
    client.close()
    expected = ort.InferenceSession(str(example_models / "mlp.onnx")).run(
        None, {"features": rows})[0]
    np.testing.assert_allclose(answer, expected, rtol=1e-5, atol=1e-6)
    # The runtime follows the cgroup it was put in: the container's limit.
    assert metric(status["podIP"], "sluice_cpu_allocation_cores") == 0.5
    assert process_cgroup_quota(pod) == pytest.approx(0.5)


def test_an_in_place_resize_rewrites_the_running_process_quota(
        control_plane, namespace, runtime_pod_running):
    before = runtime_pod_running
    resize(control_plane, namespace, "runtime", "1")

    def resized(pod: dict) -> bool:
        (container,) = pod["status"]["containerStatuses"]
        return (container.get("resources", {}).get("limits", {}).get("cpu") == "1"
                and "PodResizeInProgress" not in conditions(pod))

    after = wait_pod(control_plane, namespace, "runtime", resized, "resized to 1 core")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    (container,) = after["status"]["containerStatuses"]
    assert container["restartCount"] == 0
    assert container["containerID"] == before["status"]["containerStatuses"][0]["containerID"]
    assert container["allocatedResources"]["cpu"] == "1"
    assert process_cgroup_quota(after) == pytest.approx(1.0)
    ip = after["status"]["podIP"]
    control_plane.wait_for(lambda: metric(ip, "sluice_cpu_allocation_cores") == 1.0,
                           timeout=30, what="the runtime to follow the resize")


def test_a_resize_beyond_what_is_free_is_deferred_until_room_is_made(
        control_plane, process_node, namespace):
    create(control_plane, namespace, pod_manifest("holder", process_node, PAUSE_IMAGE,
                                                  cpu="500m"))
    create(control_plane, namespace, pod_manifest("grower", process_node, PAUSE_IMAGE,
                                                  cpu="250m"))
    for name in ("holder", "grower"):
        wait_pod(control_plane, namespace, name, ready, "Ready")
    node = json.loads(control_plane.kubectl("get", "node", process_node, "-o", "json").stdout)
    allocatable_m = round(1000 * float(node["status"]["allocatable"]["cpu"].rstrip("m")) / (
        1000 if node["status"]["allocatable"]["cpu"].endswith("m") else 1))
    # Beyond the node itself the API server refuses a resize (Kubernetes 1.36), before any
    # node sees it; the node's own Infeasible verdict is tests/nodeagent's to check.
    refused = control_plane.kubectl(
        "patch", "-n", namespace, "pod", "grower", "--subresource=resize", "--type=strategic",
        "-p", json.dumps({"spec": {"containers": [{"name": "main", "resources": {
            "requests": {"cpu": "64"}, "limits": {"cpu": "64"}}}]}}), check=False)
    assert refused.returncode != 0
    assert "allocatable" in refused.stderr
    # Fits the node, not beside the holder's half core.
    wanted = f"{allocatable_m - 250}m"
    resize(control_plane, namespace, "grower", wanted)
    deferred = wait_pod(control_plane, namespace, "grower", lambda p: conditions(p).get(
        "PodResizePending", {}).get("reason") == "Deferred", "resize deferred")
    assert deferred["status"]["containerStatuses"][0]["allocatedResources"]["cpu"] == "250m"
    assert "enough" in conditions(deferred)["PodResizePending"]["message"]
    control_plane.kubectl("delete", "-n", namespace, "pod", "holder", "--wait=false")
    done = wait_pod(control_plane, namespace, "grower", lambda p: (
        p["status"]["containerStatuses"][0].get("resources", {}).get("requests", {})
        .get("cpu") == wanted and not {"PodResizePending", "PodResizeInProgress"}
        & set(conditions(p))), "the deferred resize to go through once the holder left")
    assert done["status"]["containerStatuses"][0]["restartCount"] == 0
    assert process_cgroup_quota(done) == pytest.approx((allocatable_m - 250) / 1000)


def test_an_image_the_node_does_not_know_fails_the_pod_visibly(
        control_plane, process_node, namespace):
    create(control_plane, namespace, pod_manifest("unknown", process_node,
                                                  "example.invalid/nothing:1"))
    pod = wait_pod(control_plane, namespace, "unknown", lambda p: p["status"].get(
        "containerStatuses"), "container status")
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ErrImagePull"
    assert "example.invalid/nothing:1" in waiting["message"]
    assert not ready(pod)


def test_a_crashing_container_is_restarted_per_the_restart_policy(
        control_plane, process_node, namespace):
    create(control_plane, namespace, pod_manifest(
        "crasher", process_node, PAUSE_IMAGE, command=["sh", "-c", "exit 3"]))
    pod = wait_pod(control_plane, namespace, "crasher", lambda p: p["status"].get(
        "containerStatuses", [{}])[0].get("restartCount", 0) >= 2, "restarted twice")
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 3
    create(control_plane, namespace, pod_manifest(
        "once", process_node, PAUSE_IMAGE, command=["sh", "-c", "exit 0"], restart="Never"))
    done = wait_pod(control_plane, namespace, "once",
                    lambda p: p["status"].get("phase") == "Succeeded", "Succeeded")
    assert done["status"]["containerStatuses"][0]["restartCount"] == 0


def test_a_deleted_pod_is_drained_and_leaves_nothing(
        control_plane, process_node, namespace, example_models):
    create(control_plane, namespace, runtime_pod("leaving", process_node, example_models))
    pod = wait_pod(control_plane, namespace, "leaving", ready, "Ready")
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].split("//")[1])
    netns = f"sl-{pod['metadata']['uid'][:8]}"
    assert netns in os.listdir("/run/netns")
    control_plane.kubectl("delete", "-n", namespace, "pod", "leaving", "--timeout=60s")
    # The kubelet's part: the pod is only gone once its process has exited.
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text(
        ).split()[2]
    deadline = time.monotonic() + 30
    while netns in os.listdir("/run/netns") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert netns not in os.listdir("/run/netns")


@pytest.fixture
def models_beside_tmp(example_models):
    """The example models where a pod whose /tmp is its own scratch volume still sees them
    (pytest's temporary folders are under /tmp)."""
    folder = Path(tempfile.mkdtemp(prefix="sluice-models-", dir="/var/tmp"))
    for model in example_models.glob("*.onnx"):
        shutil.copy(model, folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_operators_rendering_runs_its_manifest_from_a_configmap_volume(
        control_plane, process_node, namespace, models_beside_tmp):
    """The fused service the operator renders for the dialogue pipeline, its pod template
    run on the node as Knative would run it: the manifest comes from the ConfigMap volume
    at the path the rendering mounts it, the models from their file URIs, the prepared
    weights go to the scratch volume at /tmp."""
    example_models = models_beside_tmp
    document = yaml.safe_load((ROOT / "examples/pipelines/dialogue.yaml").read_text())
    document["metadata"]["namespace"] = namespace
    document["spec"]["composition"] = "fused"
    for stage in document["spec"]["stages"]:
        stage["model"]["uri"] = f"file://{example_models / (stage['name'] + '.onnx')}"
        stage["resources"]["cpu"] = {"initial": "250m", "min": "250m", "max": "1"}
    pipeline = parse_pipeline(document)
    manifest = render.runtime_manifest(pipeline, with_batching=True)
    configmap = render.manifest_configmap(pipeline, manifest, "fused")
    del configmap["metadata"]["ownerReferences"]  # no pipeline object owns it here
    control_plane.kubectl("create", "-f", "-", input=json.dumps(configmap))
    service = render.fused_service(pipeline, manifest, OperatorSettings())
    template = service["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "fused", "namespace": namespace,
                        "labels": template["metadata"]["labels"]},
           "spec": {**template["spec"], "nodeName": process_node}}
    container = pod["spec"]["containers"][0]
    # What Knative adds to a probe it does not run through its queue-proxy.
    container["readinessProbe"]["periodSeconds"] = 1
    create(control_plane, namespace, pod)
    running = wait_pod(control_plane, namespace, "fused", ready, "Ready")
    ip = running["status"]["podIP"]
    client = triton.InferenceServerClient(f"{ip}:{render.GRPC_PORT}")
    utterance = utterances(2, seed=5)
    tokens = infer(client, "dialogue", {"utterance": utterance}).as_numpy("tokens")
    client.close()
    np.testing.assert_array_equal(tokens, by_hand(example_models, utterance))
    assert process_cgroup_quota(running) == pytest.approx(0.75)  # the stages' sum
    scratch = (control_plane.process_node_dir(process_node) / "pods"
               / running["metadata"]["uid"] / "volumes" / "scratch")
    assert any(scratch.rglob("*")), "the runtime prepared nothing in its scratch /tmp"


def test_http_tcp_and_exec_probes_run_and_a_failing_liveness_probe_restarts(
        control_plane, process_node, namespace, example_models):
    probed = runtime_pod("probed", process_node, example_models)
    container = probed["spec"]["containers"][0]
    container["readinessProbe"] = {"httpGet": {"port": 8002, "path": "/metrics"},
                                   "periodSeconds": 1}
    container["livenessProbe"] = {"tcpSocket": {"port": 8001}, "periodSeconds": 1,
                                  "initialDelaySeconds": 5}
    create(control_plane, namespace, probed)
    failing = pod_manifest("unhealthy", process_node, PAUSE_IMAGE, cpu="100m")
    failing["spec"]["containers"][0]["livenessProbe"] = {
        "exec": {"command": ["test", "-e", "/nonexistent"]}, "periodSeconds": 1,
        "failureThreshold": 2}
    failing["spec"]["terminationGracePeriodSeconds"] = 1
    create(control_plane, namespace, failing)
    wait_pod(control_plane, namespace, "probed", ready, "Ready by its HTTP probe")
    restarted = wait_pod(control_plane, namespace, "unhealthy", lambda p: p["status"].get(
        "containerStatuses", [{}])[0].get("restartCount", 0) >= 1,
        "restarted by its liveness probe")
    assert "terminated" in restarted["status"]["containerStatuses"][0]["lastState"]
    assert get(control_plane, namespace, "probed")["status"]["containerStatuses"][0][
        "restartCount"] == 0
