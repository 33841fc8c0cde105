"""Fixtures for the operator's control-plane tests.

The operator runs as a real process (``python -m sluice_operator``) authenticated as the
chart's ServiceAccount, bound to the RBAC the chart renders: a missing permission fails a
test. One operator serves the whole session; every test works in its own namespace.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.controlplane.cluster import ControlPlane
from tests.operator.cluster import (
    CHART,
    KUBE_VERSION_FLAG,
    OPERATOR_NAMESPACE,
    RELEASE,
    SERVICE_ACCOUNT,
    Cluster,
    OperatorProcess,
)


@pytest.fixture(scope="session")
def chart_rbac(control_plane: ControlPlane) -> str:
    """Apply the ServiceAccount and RBAC exactly as the chart renders them."""
    control_plane.kubectl("create", "namespace", OPERATOR_NAMESPACE)
    rendered = control_plane.helm(
        "template", RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE, KUBE_VERSION_FLAG,
        "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml",
    ).stdout
    control_plane.kubectl("apply", "-f", "-", input=rendered)
    return SERVICE_ACCOUNT


@pytest.fixture(scope="session")
def operator(control_plane: ControlPlane, chart_rbac: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator, watching every namespace, as the chart's ServiceAccount."""
    kubeconfig = control_plane.service_account_kubeconfig(OPERATOR_NAMESPACE, chart_rbac)
    running = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    running.start(control_plane)
    yield running
    running.stop()


@pytest.fixture
def cluster(control_plane: ControlPlane, operator: OperatorProcess,
            namespace: str) -> Iterator[Cluster]:
    """kubectl helpers bound to this test's namespace, with the operator running.

    The namespace is deleted, and the deletion waited for, before the next test: the
    operator is shared, and would otherwise still be reconciling this namespace's
    terminating children (retrying writes the API server refuses there) while the next
    test waits for it.
    """
    yield Cluster(control_plane, operator, namespace)
    control_plane.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s",
                          check=False)
