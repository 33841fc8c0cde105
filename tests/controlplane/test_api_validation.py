"""The real API server enforces structural schemas, CEL rules and the status subresource."""

from __future__ import annotations

import json
import secrets

import pytest

pytestmark = pytest.mark.controlplane


def _crd(group: str, schema: dict, *, status: bool = True) -> dict:
    version: dict = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
    }
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [version],
        },
    }


RANGE_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "minReplicas": {"type": "integer"},
                "maxReplicas": {"type": "integer"},
            },
            "x-kubernetes-validations": [
                {
                    "rule": "self.minReplicas <= self.maxReplicas",
                    "message": "minReplicas must not exceed maxReplicas",
                }
            ],
        },
        "status": {
            "type": "object",
            "properties": {"phase": {"type": "string"}},
        },
    },
}


@pytest.fixture
def group(control_plane):
    name = f"t{secrets.token_hex(4)}.sluice.test"
    yield name
    control_plane.kubectl("delete", "crd", f"widgets.{name}", "--ignore-not-found", check=False)


def _widget(group: str, name: str, spec: dict, status: dict | None = None) -> str:
    obj = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}
    if status is not None:
        obj["status"] = status
    return json.dumps(obj)


def test_crd_with_non_structural_schema_is_refused(control_plane, group):
    # A property without a type is not structural.
    broken = {"type": "object", "properties": {"spec": {"properties": {"size": {}}}}}
    result = control_plane.kubectl(
        "apply", "-f", "-", input=json.dumps(_crd(group, broken)), check=False
    )
    assert result.returncode != 0
    assert "type: Required value" in result.stderr
    assert (
        "not found" in control_plane.kubectl("get", "crd", f"widgets.{group}", check=False).stderr
    )


def _install(control_plane, tmp_path, crd: dict) -> None:
    path = tmp_path / "crd.json"
    path.write_text(json.dumps(crd))
    control_plane.install_crds(path)


def test_cel_rule_is_enforced(control_plane, group, namespace, tmp_path):
    _install(control_plane, tmp_path, _crd(group, RANGE_SCHEMA))
    bad = control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=_widget(group, "bad", {"minReplicas": 3, "maxReplicas": 1}),
        check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "minReplicas must not exceed maxReplicas" in bad.stderr
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=_widget(group, "good", {"minReplicas": 1, "maxReplicas": 3}),
    )  # fmt: skip


def test_status_is_written_only_through_the_status_subresource(
    control_plane, group, namespace, tmp_path
):
    _install(control_plane, tmp_path, _crd(group, RANGE_SCHEMA))
    spec = {"minReplicas": 1, "maxReplicas": 2}
    control_plane.kubectl(
        "create", "-n", namespace, "-f", "-",
        input=_widget(group, "w", spec, status={"phase": "Forged"}),
    )  # fmt: skip

    def phase() -> str | None:
        got = json.loads(
            control_plane.kubectl("get", "-n", namespace, "widget", "w", "-o", "json").stdout
        )
        return got.get("status", {}).get("phase")

    assert phase() is None
    control_plane.kubectl(
        "patch", "-n", namespace, "widget", "w", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Forged"}}),
    )  # fmt: skip
    assert phase() is None
    control_plane.kubectl(
        "patch", "-n", namespace, "widget", "w", "--type=merge", "--subresource=status",
        "-p", json.dumps({"status": {"phase": "Ready"}}),
    )  # fmt: skip
    assert phase() == "Ready"


def test_install_crds_accepts_an_empty_directory(control_plane, tmp_path):
    assert control_plane.install_crds(tmp_path) == []
