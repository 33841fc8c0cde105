"""The node agent: registers its Node, keeps its Lease, and runs the pods bound to it.

The loop is the kubelet's, polled: every :data:`SYNC_S` it lists the node's pods and moves
each towards its spec (start, probe, restart, resize, drain), then writes the status of
what happened where it changed. Probes run on a thread pool so that a slow one never holds
the loop.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import signal
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sluice_core import quantities

from tests.nodeagent import containers, network, volumes
from tests.nodeagent.accounting import does_not_fit
from tests.nodeagent.api import Api, ApiError
from tests.nodeagent.cgroups import ContainerCgroups, NodeCgroups
from tests.nodeagent.podspec import (
    ContainerPlan,
    PodContext,
    Probe,
    SpecError,
    container_plan,
    cpu_cores,
    memory_bytes,
    object_values,
    referenced_objects,
)
from tests.nodeagent.podstatus import ContainerView, ResizeView, pod_status
from tests.nodeagent.probes import run_probe

SYNC_S = 0.2
HEARTBEAT_S = 10.0
LEASE_DURATION_S = 40
#: The longest wait between restarts of a crashing container (the kubelet's is 5 minutes:
#: tests cannot wait that long).
MAX_BACKOFF_S = 10.0
#: A pod's grace period when it gives none (the API's default).
DEFAULT_GRACE_S = 30.0


def rfc3339(at_s: float | None = None) -> str:
    """A wall-clock time as the API writes it (seconds)."""
    return datetime.fromtimestamp(time.time() if at_s is None else at_s, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ProbeState:
    """A probe's schedule and its run of successes or failures."""

    probe: Probe
    next_s: float
    passing: bool = False
    successes: int = 0
    failures: int = 0
    pending: Future[bool] | None = None

    def due(self, now_s: float) -> bool:
        """A new run is due and none is in flight."""
        return self.pending is None and now_s >= self.next_s

    def collect(self, now_s: float) -> None:
        """Count a finished run towards the thresholds."""
        if self.pending is None or not self.pending.done():
            return
        ok = bool(self.pending.result()) if self.pending.exception() is None else False
        self.pending = None
        self.next_s = now_s + self.probe.period_s
        self.successes, self.failures = (self.successes + 1, 0) if ok else (
            0, self.failures + 1)
        if ok and self.successes >= self.probe.success_threshold:
            self.passing = True
        if not ok and self.failures >= self.probe.failure_threshold:
            self.passing = False


@dataclass
class Container:
    """One container of a pod as the node runs it."""

    plan: ContainerPlan
    cgroups: ContainerCgroups | None
    allocated: dict[str, str]
    resources: dict[str, Any]
    popen: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    restart_count: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    last_state: dict[str, Any] = field(default_factory=dict)
    next_start_s: float = 0.0
    backoff_s: float = 0.0
    #: It ended and the restart policy starts it no more.
    done: bool = False
    kill_at_s: float | None = None
    probes: dict[str, ProbeState] = field(default_factory=dict)
    #: Its volumes: (host folder, path in the container, read-only).
    mounts: list[containers.MountPoint] = field(default_factory=list)

    @property
    def running(self) -> bool:
        """Its process is alive."""
        return self.popen is not None and self.popen.poll() is None

    @property
    def ready(self) -> bool:
        """Running, started, and its readiness probe passing (or it has none)."""
        return self.running and all(
            p.passing for kind, p in self.probes.items() if kind in ("readiness", "startup"))

    def view(self) -> ContainerView:
        """What the status reports of it."""
        started = self.running and self.probes.get("startup", _PASSED).passing
        return ContainerView(
            self.plan.name, self.plan.image, self.state, self.last_state, self.ready,
            bool(started), self.restart_count,
            None if self.popen is None else f"process://{self.popen.pid}",
            self.allocated, self.resources)


_PASSED = ProbeState(Probe("exec", None, "", "", (), 0, 1, 1, 1, 1), 0.0, passing=True)


@dataclass
class PodRun:
    """One pod on the node: its address, namespace, folder and containers."""

    uid: str
    namespace: str
    name: str
    ip: ipaddress.IPv4Address
    folder: Path
    start_time: str
    containers: list[Container]
    netns: str | None = None
    resize: ResizeView = field(default_factory=ResizeView)
    #: Mount points the node made on the host for it (it leaves no empty folder behind).
    mount_points: list[Path] = field(default_factory=list)
    stopping_since_s: float | None = None
    last_status: dict[str, Any] | None = None

    def requests(self) -> dict[str, float]:
        """What the node allocated to it."""
        return _requests([c.allocated for c in self.containers])

    @property
    def over(self) -> bool:
        """Every container ended for good: it holds no resources."""
        return all(c.done or c.plan.error for c in self.containers) and not any(
            c.running for c in self.containers)


def _requests(requests: list[dict[str, str]]) -> dict[str, float]:
    return {"cpu": sum(cpu_cores({"requests": r}, "requests") or 0.0 for r in requests),
            "memory": float(sum(memory_bytes({"requests": r}, "requests") or 0
                                for r in requests))}


class NodeAgent:
    """One process node (module docstring)."""

    def __init__(self, api: Api, node: str, index: int, cores: str, memory: str,
                 workdir: Path) -> None:
        self.api = api
        self.node = node
        self.subnet = network.node_subnet(index)
        self.capacity = {"cpu": cores, "memory": memory, "pods": "110"}
        self.allocatable = {"cpu": float(quantities.parse(cores)),
                            "memory": float(quantities.parse(memory))}
        self.workdir = workdir
        self.pods: dict[str, PodRun] = {}
        self.cgroups = NodeCgroups(node)
        self._probes = ThreadPoolExecutor(8, thread_name_prefix="probe")
        self._heartbeat_s = 0.0
        self.stopping = False

    # -- the Node and its Lease ------------------------------------------------------

    def register(self) -> None:
        """Create the Node (or take over one of the same name) Ready, without the not-ready
        taint admission puts on every new node."""
        network.ensure_bridge()
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node, "labels": {
            "kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "sluice.dev/node": "process"}},
            "spec": {"podCIDR": str(self.subnet)}}
        try:
            self.api.request("POST", "/api/v1/nodes", body)
        except ApiError as exc:
            if exc.status != 409:
                raise
        self.heartbeat()
        node = self.api.get(f"/api/v1/nodes/{self.node}")
        taints = [t for t in node["spec"].get("taints") or []
                  if t["key"] != "node.kubernetes.io/not-ready"]
        self.api.patch(f"/api/v1/nodes/{self.node}", {"spec": {"taints": taints or None}})

    def heartbeat(self) -> None:
        """Node status (Ready, capacity, addresses) and the Lease, renewed."""
        now = rfc3339()
        self.api.patch(f"/api/v1/nodes/{self.node}/status", {"status": {
            "capacity": self.capacity, "allocatable": self.capacity,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "process node agent is posting ready status",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": str(network.GATEWAY)},
                          {"type": "Hostname", "address": self.node}],
            "nodeInfo": {"kubeletVersion": "sluice-nodeagent", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "process://",
                         "kernelVersion": "", "osImage": "", "kubeProxyVersion": "",
                         "machineID": "", "systemUUID": "", "bootID": ""}}})
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": self.node, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": self.node,
                          "leaseDurationSeconds": LEASE_DURATION_S,
                          "renewTime": _micro_time()}}
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        try:
            self.api.patch(f"{path}/{self.node}", {"spec": lease["spec"]})
        except ApiError as exc:
            if exc.status != 404:
                raise
            self.api.request("POST", path, lease)
        self._heartbeat_s = time.monotonic()

    # -- the loop --------------------------------------------------------------------

    def run(self) -> None:
        """Sync until :attr:`stopping`, then stop every pod."""
        try:
            while not self.stopping:
                if time.monotonic() - self._heartbeat_s >= HEARTBEAT_S:
                    self.heartbeat()
                self.sync()
                time.sleep(SYNC_S)
        finally:
            self.close()

    def sync(self) -> None:
        """One pass over the node's pods."""
        listed = self.api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{self.node}")
        seen = set()
        for pod in listed["items"]:
            seen.add(pod["metadata"]["uid"])
            try:
                self._sync_pod(pod)
            except ApiError as exc:
                if exc.status not in (404, 409):  # gone, or changed under us: next pass
                    raise
        for uid in set(self.pods) - seen:  # deleted without waiting for us
            run = self.pods[uid]
            for container in run.containers:
                if container.popen is not None:
                    containers.signal_group(container.popen, signal.SIGKILL)
                    container.popen.wait()
            self._teardown(run)

    def _sync_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        run = self.pods.get(meta["uid"])
        if run is None:
            if meta.get("deletionTimestamp"):
                self._remove(pod)
                return
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return
            run = self._admit(pod)
            if run is None:
                return
        now_s = time.monotonic()
        if meta.get("deletionTimestamp"):
            self._terminate(run, pod, now_s)
            return
        for container in run.containers:
            self._drive(run, container, pod, now_s)
        self._resize(run, pod)
        self._write_status(run, pod)

    # -- a pod's life ----------------------------------------------------------------

    def _admit(self, pod: dict[str, Any]) -> PodRun | None:
        meta = pod["metadata"]
        wanted = _requests([(c.get("resources") or {}).get("requests")
                            or (c.get("resources") or {}).get("limits") or {}
                            for c in pod["spec"]["containers"]])
        verdict = does_not_fit(wanted, meta["uid"], self.allocatable, self._allocated())
        if verdict is not None:
            resource = "cpu" if "cpu" in verdict[1] else "memory"
            self._patch_status(pod, {"phase": "Failed", "reason": f"OutOf{resource}",
                                     "message": f"Pod was rejected: {verdict[1]}"})
            return None
        used = {run.ip for run in self.pods.values()}
        ip = next(a for a in self.subnet.hosts() if a not in used)
        folder = self.workdir / "pods" / meta["uid"]
        folder.mkdir(parents=True, exist_ok=True)
        context = PodContext(str(ip), str(network.GATEWAY), self.node,
                             self._references(pod))
        plans = [container_plan(pod, c, context) for c in pod["spec"]["containers"]]
        run = PodRun(meta["uid"], meta["namespace"], meta["name"], ip, folder, rfc3339(), [])
        self.pods[run.uid] = run
        run.netns = network.create_pod_network(run.uid, ip)
        try:
            mounts = volumes.prepare(pod, folder, context, lambda audience, seconds: (
                self._token(pod, audience, seconds)))
        except SpecError as exc:
            mounts = {}
            plans = [_failed(p, str(exc)) for p in plans]
        scratch = {v["name"] for v in pod["spec"].get("volumes") or [] if "emptyDir" in v}
        for plan, spec in zip(plans, pod["spec"]["containers"], strict=True):
            resources = dict(spec.get("resources") or {})
            cgroups = None if plan.error else self.cgroups.container(run.uid, plan.name)
            if cgroups is not None:
                self.cgroups.set_cpu(cgroups, plan.cpu_limit_cores)
                self.cgroups.set_memory(cgroups, plan.memory_limit_bytes)
            container = Container(plan, cgroups, dict(resources.get("requests") or
                                                      resources.get("limits") or {}),
                                  resources)
            # Parents before children, as the kubelet mounts them.
            container.mounts = sorted(
                (containers.MountPoint(mounts[m.volume], m.mount_path, m.read_only,
                                       m.volume in scratch and _holds_files(m.mount_path))
                 for m in plan.mounts if m.volume in mounts),
                key=lambda point: len(Path(point.target).parts))
            run.containers.append(container)
        return run

    def _references(self, pod: dict[str, Any]) -> dict[tuple[str, str], dict[str, str]]:
        namespace = pod["metadata"]["namespace"]
        found = {}
        for kind, name in referenced_objects(pod):
            plural = "configmaps" if kind == "ConfigMap" else "secrets"
            try:
                obj = self.api.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                continue
            found[(kind, name)] = object_values(kind, obj)
        return found

    def _token(self, pod: dict[str, Any], audience: str | None, seconds: int) -> str:
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName", "default")
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
            "audiences": [audience] if audience else [],
            "expirationSeconds": max(600, seconds),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                               "uid": meta["uid"]}}}
        answer = self.api.request(
            "POST", f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token",
            request)
        return str(answer["status"]["token"])

    def _drive(self, run: PodRun, container: Container, pod: dict[str, Any],
               now_s: float) -> None:
        plan = container.plan
        if plan.error:
            container.state = {"waiting": {"reason": plan.error_reason, "message": plan.error}}
            return
        if container.popen is not None and container.popen.poll() is not None:
            self._exited(container, pod, now_s)
        if container.popen is None:
            if not container.done and now_s >= container.next_start_s:
                self._start(run, container, now_s)
            return
        for probe in container.probes.values():
            probe.collect(now_s)
            if probe.due(now_s):
                probe.pending = self._probes.submit(run_probe, probe.probe, str(run.ip),
                                                    run.netns or "")
        liveness = container.probes.get("liveness")
        if (liveness is not None and not liveness.passing and liveness.failures
                and container.kill_at_s is None):
            containers.signal_group(container.popen, signal.SIGTERM)
            container.kill_at_s = now_s + _grace_s(pod)
        if container.kill_at_s is not None and now_s >= container.kill_at_s:
            containers.signal_group(container.popen, signal.SIGKILL)

    def _start(self, run: PodRun, container: Container, now_s: float) -> None:
        assert container.cgroups is not None
        assert run.netns is not None
        for point in container.mounts:
            run.mount_points += _make_dirs(Path(point.target))
        container.popen = containers.start(
            container.plan, run.netns, container.cgroups, container.mounts,
            run.folder / f"{container.plan.name}.log", run.folder, run.name)
        container.started_at = rfc3339()
        container.state = {"running": {"startedAt": container.started_at}}
        container.kill_at_s = None
        plan = container.plan
        container.probes = {
            kind: ProbeState(probe, now_s + probe.initial_delay_s,
                             passing=kind == "liveness")
            for kind, probe in (("readiness", plan.readiness), ("liveness", plan.liveness),
                                ("startup", plan.startup)) if probe is not None}

    def _exited(self, container: Container, pod: dict[str, Any], now_s: float) -> None:
        assert container.popen is not None
        code = container.popen.returncode
        exit_code = code if code >= 0 else 128 - code
        ended = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                 "startedAt": container.started_at, "finishedAt": rfc3339()}
        container.popen = None
        container.probes = {}
        policy = pod["spec"].get("restartPolicy", "Always")
        if policy == "Always" or (policy == "OnFailure" and exit_code != 0):
            container.last_state = {"terminated": ended}
            container.backoff_s = min(MAX_BACKOFF_S, max(1.0, 2 * container.backoff_s))
            container.next_start_s = now_s + container.backoff_s
            container.restart_count += 1
            container.state = {"waiting": {"reason": "CrashLoopBackOff", "message": (
                f"back-off {container.backoff_s:g}s restarting failed container "
                f"{container.plan.name}")}}
        else:
            container.state = {"terminated": ended}
            container.done = True

    def _resize(self, run: PodRun, pod: dict[str, Any]) -> None:
        """Allocate a changed request if the node has room (one pass), then write the
        changed limits into the running process's cgroups (the next)."""
        specs = {c["name"]: c.get("resources") or {} for c in pod["spec"]["containers"]}
        wanted = {c.plan.name: dict(specs[c.plan.name].get("requests")
                                    or specs[c.plan.name].get("limits") or {})
                  for c in run.containers}
        if any(wanted[c.plan.name] != c.allocated for c in run.containers):
            verdict = does_not_fit(_requests(list(wanted.values())), run.uid,
                                   self.allocatable, self._allocated())
            if verdict is not None:
                run.resize = ResizeView(pending=verdict)
                return
            for container in run.containers:
                container.allocated = wanted[container.plan.name]
            run.resize = ResizeView(in_progress=True)
            return
        for container in run.containers:
            spec = dict(specs[container.plan.name])
            if spec != container.resources and container.cgroups is not None:
                self.cgroups.set_cpu(container.cgroups, cpu_cores(spec, "limits"))
                self.cgroups.set_memory(container.cgroups, memory_bytes(spec, "limits"))
                container.resources = spec
        run.resize = ResizeView()

    def _allocated(self) -> dict[str, dict[str, float]]:
        return {uid: run.requests() for uid, run in self.pods.items() if not run.over}

    def _write_status(self, run: PodRun, pod: dict[str, Any]) -> None:
        status = pod_status(pod, [c.view() for c in run.containers], str(run.ip),
                            str(network.GATEWAY), run.start_time, run.resize,
                            any(not c.done and c.popen is None and not c.plan.error
                                for c in run.containers), rfc3339())
        if status != run.last_status:
            self._patch_status(pod, status)
            run.last_status = status

    def _patch_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.api.patch(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                       {"status": status})

    def _terminate(self, run: PodRun, pod: dict[str, Any], now_s: float) -> None:
        if run.stopping_since_s is None:
            run.stopping_since_s = now_s
            for container in run.containers:
                if container.popen is not None:
                    containers.signal_group(container.popen, signal.SIGTERM)
        grace_s = float(pod["metadata"].get("deletionGracePeriodSeconds", _grace_s(pod)))
        alive = [c for c in run.containers if c.running]
        if alive and now_s - run.stopping_since_s > grace_s:
            for container in alive:
                containers.signal_group(container.popen, signal.SIGKILL)  # type: ignore[arg-type]
        if not alive:
            for container in run.containers:
                if container.popen is not None:
                    container.popen.wait()
            self._teardown(run)
            self._remove(pod)

    def _remove(self, pod: dict[str, Any]) -> None:
        """Delete the pod for good once nothing of it runs (the kubelet's last word)."""
        meta = pod["metadata"]
        try:
            self.api.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/"
                             f"{meta['name']}", {"gracePeriodSeconds": 0,
                                                 "preconditions": {"uid": meta["uid"]}})
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise

    def _teardown(self, run: PodRun) -> None:
        network.delete_pod_network(run.uid)
        self.cgroups.remove_pod(run.uid)
        volumes.remove(run.folder)
        shared = {p for other in self.pods.values() if other is not run
                  for p in other.mount_points}
        for folder in reversed(run.mount_points):
            if folder not in shared:
                with contextlib.suppress(OSError):  # not empty: something else uses it
                    folder.rmdir()
        self.pods.pop(run.uid, None)

    def close(self) -> None:
        """Stop every pod's processes (SIGTERM, then SIGKILL), and remove what they had."""
        for run in self.pods.values():
            for container in run.containers:
                if container.popen is not None:
                    containers.signal_group(container.popen, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for run in list(self.pods.values()):
            for container in run.containers:
                if container.popen is None:
                    continue
                with contextlib.suppress(subprocess.TimeoutExpired):
                    container.popen.wait(max(0.1, deadline - time.monotonic()))
                if container.popen.poll() is None:
                    containers.signal_group(container.popen, signal.SIGKILL)
                    container.popen.wait()
            self._teardown(run)
        self.cgroups.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self._probes.shutdown(wait=False, cancel_futures=True)


def _holds_files(path: str) -> bool:
    """``path`` is a host folder with something in it."""
    folder = Path(path)
    return folder.is_dir() and any(folder.iterdir())


def _make_dirs(folder: Path) -> list[Path]:
    """Make ``folder`` and its missing parents; the ones made, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _grace_s(pod: dict[str, Any]) -> float:
    return float(pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_S))


def _failed(plan: ContainerPlan, message: str) -> ContainerPlan:
    return replace(plan, error=message, error_reason="CreateContainerConfigError")
