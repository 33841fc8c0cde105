"""Command lines of the control-plane components, in the spirit of controller-runtime's envtest.

Every listener is bound to 127.0.0.1. The controller manager and scheduler serve no
HTTPS (``--secure-port=0``) and KWOK serves nothing, so etcd and the API server hold the
only ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.controlplane.build import Artifacts
from tests.controlplane.pki import Pki
from tests.controlplane.process import LOOPBACK

#: Controllers the tests rely on: garbage collection of owned objects, namespace
#: deletion, default service accounts and their tokens, the root CA config map,
#: aggregated cluster roles (admin/edit/view), and Deployments down to Pods.
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "pod-garbage-collector-controller",
)

#: Pod IPs KWOK hands out: a loopback range, so anything that dials a pod IP stays on
#: this machine (and a test may even serve on one).
POD_CIDR = "127.1.0.0/16"
#: Service cluster IPs are API data only; nothing routes them.
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Ports:
    """Loopback ports picked at start."""

    etcd_client: int
    etcd_peer: int
    apiserver: int

    def all(self) -> tuple[int, ...]:
        """Every port the control plane listens on."""
        return (self.etcd_client, self.etcd_peer, self.apiserver)


def etcd(artifacts: Artifacts, data_dir: Path, ports: Ports) -> list[str]:
    """etcd: one member, no fsync (test data is disposable)."""
    client = f"http://{LOOPBACK}:{ports.etcd_client}"
    peer = f"http://{LOOPBACK}:{ports.etcd_peer}"
    return [
        str(artifacts.etcd),
        "--name=sluice",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=sluice={peer}",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def kube_apiserver(
    artifacts: Artifacts, pki: Pki, token_file: Path, cert_dir: Path, ports: Ports
) -> list[str]:
    """kube-apiserver: bearer-token authentication, RBAC, default admission plugins."""
    return [
        str(artifacts.kube_apiserver),
        f"--advertise-address={LOOPBACK}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.apiserver}",
        f"--etcd-servers=http://{LOOPBACK}:{ports.etcd_client}",
        f"--cert-dir={cert_dir}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--token-auth-file={token_file}",
        "--authorization-mode=RBAC",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.service_account_public_key}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        # API priority and fairness costs CPU and only matters under contention.
        "--enable-priority-and-fairness=false",
        # No kubelet or kube-proxy serves the `kubernetes` Service's endpoints.
        "--endpoint-reconciler-type=none",
        # Webhooks are reached at their Service's endpoints, not its cluster IP: nothing
        # routes cluster IPs on this machine (Knative's webhook runs as a process here).
        "--enable-aggregator-routing=true",
        "--profiling=false",
    ]


def kube_controller_manager(artifacts: Artifacts, pki: Pki, kubeconfig: Path) -> list[str]:
    """kube-controller-manager running only :data:`CONTROLLERS`."""
    return [
        str(artifacts.kube_controller_manager),
        f"--kubeconfig={kubeconfig}",
        f"--controllers={','.join(CONTROLLERS)}",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca_cert}",
        *_controller_flags(),
    ]


def kube_scheduler(artifacts: Artifacts, kubeconfig: Path) -> list[str]:
    """kube-scheduler with its default profile."""
    return [
        str(artifacts.kube_scheduler),
        f"--kubeconfig={kubeconfig}",
        *_controller_flags(),
    ]


def _controller_flags() -> list[str]:
    """Flags shared by the controller manager and the scheduler: a single instance (no
    leader election) serving nothing (no HTTPS port to pick or secure)."""
    return [
        "--leader-elect=false",
        "--secure-port=0",
        f"--bind-address={LOOPBACK}",
        "--profiling=false",
    ]


def kwok(artifacts: Artifacts, kubeconfig: Path, stages: Path) -> list[str]:
    """KWOK playing the kubelet of the fake nodes (annotated ``kwok.x-k8s.io/node: fake``;
    process nodes run their own agent), with this package's stages only."""
    return [
        str(artifacts.kwok),
        f"--kubeconfig={kubeconfig}",
        f"--config={stages}",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        f"--cidr={POD_CIDR}",
        f"--node-ip={LOOPBACK}",
    ]
