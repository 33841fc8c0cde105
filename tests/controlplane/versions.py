"""Pinned versions of every component and where their builds are cached.

Versions are pinned rather than resolved at run time so a warm cache never needs the
network and every machine runs the same control plane.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"
KNATIVE_SERVING_VERSION = "v0.50.0"

#: Knative Serving CRDs installed into every control plane, relative to the module root.
KNATIVE_CRD_FILES = (
    "config/core/300-resources/service.yaml",
    "config/core/300-resources/configuration.yaml",
    "config/core/300-resources/revision.yaml",
    "config/core/300-resources/route.yaml",
)
#: What runs Knative's own webhook, from the same module: its namespace, config maps and
#: webhook registrations.
KNATIVE_CONFIG_FILES = (
    "config/core/100-namespace.yaml",
    *(f"config/core/configmaps/{name}.yaml" for name in (
        "autoscaler", "defaults", "deployment", "domain", "features", "gc",
        "leader-election", "logging", "observability", "tracing")),
    "config/core/webhooks/defaulting.yaml",
    "config/core/webhooks/resource-validation.yaml",
    "config/core/webhooks/configmap-validation.yaml",
    "config/core/webhooks/secret.yaml",
)
#: Knative Serving's commands built from the module.
KNATIVE_BINARIES = ("controller", "webhook", "autoscaler", "activator", "queue")


@dataclass(frozen=True)
class Component:
    """One cached artifact set: built binaries or files taken from a Go module."""

    name: str
    version: str
    files: tuple[str, ...]

    def directory(self, cache: Path) -> Path:
        """The cache directory holding this component; present only when complete."""
        return cache / f"{self.name}-{self.version}"

    def is_cached(self, cache: Path) -> bool:
        """True when a previous build finished (directories appear by an atomic rename)."""
        directory = self.directory(cache)
        return all((directory / f).is_file() for f in self.files)


KUBERNETES = Component(
    "kubernetes",
    KUBERNETES_VERSION,
    ("kube-apiserver", "kube-controller-manager", "kube-scheduler"),
)
ETCD = Component("etcd", ETCD_VERSION, ("etcd",))
KWOK = Component("kwok", KWOK_VERSION, ("kwok",))
HELM = Component("helm", HELM_VERSION, ("helm",))
KNATIVE_SERVING = Component(
    "knative-serving",
    KNATIVE_SERVING_VERSION,
    (*KNATIVE_BINARIES, *KNATIVE_CRD_FILES, *KNATIVE_CONFIG_FILES),
)
ALL_COMPONENTS = (KUBERNETES, ETCD, KWOK, HELM, KNATIVE_SERVING)


def cache_dir() -> Path:
    """Root of the control-plane cache: ``$SLUICE_CACHE_DIR/controlplane``.

    ``SLUICE_CACHE_DIR`` is the root of all Sluice caches (default ``~/.cache/sluice``).
    """
    root = os.environ.get("SLUICE_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "sluice"
    return base / "controlplane"
