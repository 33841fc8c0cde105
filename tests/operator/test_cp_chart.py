"""The Helm chart: lint, rendering, and an install whose RBAC is exactly what runs."""

import tarfile

import pytest
import yaml

from tests.operator.cluster import CHART, KUBE_VERSION_FLAG
from tests.operator.crd import CHART_CRD_PATH

pytestmark = pytest.mark.controlplane


def render(control_plane, *args):
    out = control_plane.helm("template", "sluice", str(CHART), "--namespace", "sluice-system",
                             KUBE_VERSION_FLAG, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs):
    found = {}
    for doc in docs:
        found.setdefault(doc["kind"], []).append(doc)
    return found


def test_chart_lints_clean(control_plane):
    result = control_plane.helm("lint", "--strict", KUBE_VERSION_FLAG, str(CHART))
    assert "0 chart(s) failed" in result.stdout


def test_cluster_wide_rendering(control_plane):
    kinds = by_kind(render(control_plane))
    assert sorted(kinds) == ["ClusterRole", "ClusterRoleBinding", "Deployment", "ServiceAccount"]
    (deployment,) = kinds["Deployment"]
    spec = deployment["spec"]
    assert (spec["replicas"], spec["strategy"]["type"]) == (1, "Recreate")
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]}}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SLUICE_NAMESPACES"] == ""
    assert env["SLUICE_RUNTIME_IMAGE"] == "sluice-runtime:dev"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_namespaced_rendering_grants_only_the_listed_namespaces(control_plane):
    kinds = by_kind(render(control_plane, "--set", "watchNamespaces={ml,batch}"))
    assert "ClusterRole" not in kinds
    assert sorted(r["metadata"]["namespace"] for r in kinds["Role"]) == ["batch", "ml"]
    assert sorted(b["metadata"]["namespace"] for b in kinds["RoleBinding"]) == ["batch", "ml"]
    env = {e["name"]: e["value"] for e in
           kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SLUICE_NAMESPACES"] == "ml,batch"


# Every permission the operator uses (and the scaler will), and some it must not have:
# (verb, resource, subresource).
GRANTED = [
    ("get", "inferencepipelines.sluice.dev", ""), ("watch", "inferencepipelines.sluice.dev", ""),
    ("patch", "inferencepipelines.sluice.dev", ""),
    ("patch", "inferencepipelines.sluice.dev", "status"),
    ("update", "inferencepipelines.sluice.dev", "finalizers"),
    ("create", "services.serving.knative.dev", ""), ("patch", "services.serving.knative.dev", ""),
    ("delete", "services.serving.knative.dev", ""), ("list", "configmaps", ""),
    ("create", "configmaps", ""), ("watch", "pods", ""), ("patch", "pods", "resize"),
    ("create", "events", ""),
]
DENIED = [
    ("delete", "inferencepipelines.sluice.dev", ""),
    ("update", "inferencepipelines.sluice.dev", ""),
    ("update", "inferencepipelines.sluice.dev", "status"), ("get", "secrets", ""),
    ("create", "pods", ""), ("delete", "pods", ""), ("patch", "pods", ""),
    ("create", "pods", "exec"), ("create", "deployments.apps", ""),
    ("list", "customresourcedefinitions.apiextensions.k8s.io", ""), ("list", "namespaces", ""),
    ("delete", "events", ""),
]


def test_helm_install_runs_the_operator_with_exactly_its_permissions(control_plane, namespace):
    release = "chart-test"
    control_plane.helm("install", release, str(CHART), "--namespace", release,
                       "--create-namespace", "--wait", "--timeout", "300s")
    try:
        deployment = control_plane.wait_for(
            lambda: (d := control_plane._get_json("deployment", "chart-test-sluice",
                                                  namespace=release))
            and d.get("status", {}).get("availableReplicas") == 1 and d,
            timeout=180, what="the operator Deployment to be available (on KWOK)")
        pod_spec = deployment["spec"]["template"]["spec"]
        assert pod_spec["serviceAccountName"] == "chart-test-sluice"
        who = f"--as=system:serviceaccount:{release}:chart-test-sluice"
        for verb, resource, subresource in GRANTED + DENIED:
            answer = control_plane.kubectl(
                "auth", "can-i", verb, resource, f"--subresource={subresource}", who,
                "--namespace", namespace, check=False).stdout.strip()
            wanted = "yes" if (verb, resource, subresource) in GRANTED else "no"
            assert answer == wanted, (verb, resource, subresource)
    finally:
        control_plane.helm("uninstall", release, "--namespace", release, "--wait")
        control_plane.kubectl("delete", "namespace", release, "--wait=false", check=False)


def test_chart_crd_is_what_helm_packages(control_plane, tmp_path):
    control_plane.helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("sluice-*.tgz")
    with tarfile.open(archive) as tar:
        packaged = tar.extractfile("sluice/crds/inferencepipelines.yaml").read()
    assert packaged == CHART_CRD_PATH.read_bytes()
