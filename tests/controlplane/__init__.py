"""A real Kubernetes control plane for tests: kube-apiserver, etcd, controller-manager,
scheduler and KWOK, built from Go modules, cached outside the repo and run on loopback."""

from tests.controlplane.cluster import ControlPlane, ControlPlaneError

__all__ = ["ControlPlane", "ControlPlaneError"]
