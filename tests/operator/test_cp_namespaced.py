"""The chart's namespaced mode: Roles in the listed namespaces only, and an operator that
serves those and leaves every other namespace alone."""

import pytest

from tests.operator.cluster import (
    CHART,
    KUBE_VERSION_FLAG,
    Cluster,
    OperatorProcess,
    pipeline_manifest,
)

pytestmark = pytest.mark.controlplane


def test_namespaced_operator_serves_only_its_namespaces(control_plane, operator, namespace,
                                                        tmp_path):
    other = control_plane.create_namespace(f"{namespace}-other")
    home = control_plane.create_namespace(f"{namespace}-op")
    rendered = control_plane.helm(
        "template", "scoped", str(CHART), "--namespace", home, KUBE_VERSION_FLAG,
        "--set", f"watchNamespaces={{{namespace}}}",
        "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml",
    ).stdout
    control_plane.kubectl("apply", "-f", "-", input=rendered)
    scoped = OperatorProcess(control_plane.service_account_kubeconfig(home, "scoped-sluice"),
                             tmp_path / "scoped.log", extra_env={"SLUICE_NAMESPACES": namespace})
    operator.stop()  # one operator per pipeline: the cluster-wide one steps aside
    try:
        scoped.start(control_plane)
        served, ignored = Cluster(control_plane, scoped, namespace), Cluster(control_plane,
                                                                             scoped, other)
        ignored.apply(pipeline_manifest())
        served.apply(pipeline_manifest())
        served.wait(lambda: len(served.children("dialogue")) == 4, what="the services")
        served.wait(lambda: served.pipeline("dialogue").get("status"), what="a status")
        assert ignored.children("dialogue") == {}
        assert "status" not in ignored.pipeline("dialogue")
    finally:
        scoped.stop()
        operator.start(control_plane)
        for name in (other, home):
            control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
