"""Helpers for the operator's control-plane tests: the operator as a real process, and
small kubectl wrappers that read the state of the world."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.controlplane import process
from tests.controlplane.cluster import ControlPlane, ControlPlaneError
from tests.controlplane.versions import KUBERNETES_VERSION
from tests.operator.crd import REPO, example

T = TypeVar("T")

CHART = REPO / "charts" / "sluice"
OPERATOR_NAMESPACE = "sluice-system"
RELEASE = "sluice"
#: The chart's ServiceAccount for release "sluice" (its full name).
SERVICE_ACCOUNT = "sluice"
RUNTIME_IMAGE = "sluice-runtime:test"
#: helm template/lint check the chart's kubeVersion against this instead of a cluster's.
KUBE_VERSION_FLAG = f"--kube-version={KUBERNETES_VERSION}"


@dataclass
class OperatorProcess:
    """``python -m sluice_operator`` running under the chart's ServiceAccount."""

    kubeconfig: Path
    log: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    health_port: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    def start(self, control_plane: ControlPlane) -> None:
        self.health_port = process.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env.update({
            "KUBECONFIG": str(self.kubeconfig),
            "SLUICE_HEALTH_HOST": process.LOOPBACK,
            "SLUICE_HEALTH_PORT": str(self.health_port),
            "SLUICE_RUNTIME_IMAGE": RUNTIME_IMAGE,
            "SLUICE_LOG_LEVEL": "DEBUG",
            **self.extra_env,
        })
        self._proc, _ = process.spawn("sluice-operator", [sys.executable, "-m", "sluice_operator"],
                                      self.log, detached=False, env=env)
        try:
            control_plane.wait_for(self._healthy, timeout=90, what="the operator's /healthz")
        except ControlPlaneError as error:
            raise ControlPlaneError(f"{error}\n{self.log_tail()}") from error

    def _healthy(self) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            raise ControlPlaneError(f"the operator exited\n{self.log_tail()}")
        url = f"http://{process.LOOPBACK}:{self.health_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, *, crash: bool = False) -> None:
        """SIGTERM and wait (or SIGKILL, as a crash would)."""
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=30)
        self._proc = None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log.exists():
            return "(no operator log)"
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return "operator log (end):\n" + "\n".join(text)


class Cluster:
    """kubectl reads and writes for one test namespace, with waits that show the operator log."""

    def __init__(self, control_plane: ControlPlane, operator: OperatorProcess | None,
                 namespace: str) -> None:
        self.cp = control_plane
        self.operator = operator
        self.namespace = namespace

    def kubectl(self, *args: str, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cp.kubectl(*args, "--namespace", self.namespace, input=input, check=check)

    def apply(self, manifest: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self.kubectl("get", kind, name, "-o", "json", "--ignore-not-found").stdout.strip()
        return json.loads(out) if out else None

    def items(self, kind: str, selector: str) -> dict[str, dict[str, Any]]:
        out = self.kubectl("get", kind, "-l", selector, "-o", "json").stdout
        return {o["metadata"]["name"]: o for o in json.loads(out)["items"]}

    def children(self, pipeline: str, kind: str = "ksvc") -> dict[str, dict[str, Any]]:
        return self.items(kind, f"sluice.dev/pipeline={pipeline}")

    def pipeline(self, name: str) -> dict[str, Any]:
        got = self.get("inferencepipeline", name)
        assert got is not None, f"pipeline {name} is gone"
        return got

    def events(self, name: str) -> list[dict[str, Any]]:
        out = self.kubectl("get", "events", "--field-selector",
                           f"involvedObject.name={name},involvedObject.kind=InferencePipeline",
                           "-o", "json").stdout
        return json.loads(out)["items"]

    def wait(self, predicate: Callable[[], T], what: str, timeout: float = 120.0) -> T:
        try:
            return self.cp.wait_for(predicate, timeout=timeout, what=what)
        except ControlPlaneError as error:
            tail = self.operator.log_tail() if self.operator else ""
            raise AssertionError(f"{error}\n{tail}") from None

    def set_ksvc_status(self, name: str, ready: str = "True", reason: str = "",
                        message: str = "") -> None:
        """Play Knative's controller: report the service's current generation as Ready."""
        ksvc = self.get("ksvc", name)
        assert ksvc is not None, f"Knative Service {name} does not exist"
        host = f"{name}.{self.namespace}"
        status = {
            "observedGeneration": ksvc["metadata"]["generation"],
            "conditions": [{"type": t, "status": ready, "reason": reason, "message": message,
                            "lastTransitionTime": "2030-01-01T00:00:00Z"}
                           for t in ("Ready", "ConfigurationsReady", "RoutesReady")],
            "url": f"http://{host}.example.com",
            "address": {"url": f"http://{host}.svc.cluster.local"},
        }
        self.kubectl("patch", "ksvc", name, "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": status}))


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """The condition of type ``kind`` in ``obj``'s status, or an empty dict."""
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return item
    return {}


def pipeline_manifest(name: str = "dialogue", **spec: Any) -> dict[str, Any]:
    """The example pipeline under another name, with top-level spec fields replaced."""
    manifest = example()
    manifest["metadata"]["name"] = name
    manifest["spec"].update(copy.deepcopy(spec))
    return manifest
