"""ServiceAccount kubeconfigs (TokenRequest) and helm work against the control plane."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.controlplane


def test_service_account_kubeconfig_carries_only_its_rbac(control_plane, namespace):
    control_plane.kubectl("create", "serviceaccount", "operator", "-n", namespace)
    control_plane.kubectl(
        "create", "role", "read-configmaps", "-n", namespace,
        "--verb=get,list", "--resource=configmaps",
    )  # fmt: skip
    control_plane.kubectl(
        "create", "rolebinding", "operator", "-n", namespace,
        "--role=read-configmaps", f"--serviceaccount={namespace}:operator",
    )  # fmt: skip
    config = control_plane.service_account_kubeconfig(namespace, "operator")

    whoami = json.loads(
        control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=config).stdout
    )
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:operator"
    control_plane.kubectl("get", "configmaps", "-n", namespace, kubeconfig=config)
    denied = control_plane.kubectl(
        "get", "secrets", "-n", namespace, kubeconfig=config, check=False
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr


def test_helm_installs_a_chart(control_plane, namespace, tmp_path):
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    control_plane.helm("install", "demo", str(chart), "-n", namespace, "--wait", "--timeout=60s")
    data = json.loads(
        control_plane.kubectl("get", "configmap", "demo-cm", "-n", namespace, "-o", "json").stdout
    )["data"]
    assert data == {"greeting": "hello"}
    control_plane.helm("uninstall", "demo", "-n", namespace)
