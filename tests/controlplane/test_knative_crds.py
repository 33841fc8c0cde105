"""The real Knative Serving CRDs (and, as root, Knative's own webhook: test_knative_webhook)
accept a valid Service and refuse an invalid one."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.controlplane


def _ksvc(name: str, template_spec: dict) -> str:
    return json.dumps(
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"template": {"spec": template_spec}},
        }
    )


CONTAINER = {
    "image": "example.invalid/runtime:1",
    "ports": [{"name": "h2c", "containerPort": 8001}],
    "resources": {"requests": {"cpu": "500m"}},
}


def test_knative_crds_are_installed(control_plane):
    names = control_plane.kubectl("get", "crd", "-o", "name").stdout.split()
    for plural in ("services", "configurations", "revisions", "routes"):
        assert (
            f"customresourcedefinition.apiextensions.k8s.io/{plural}.serving.knative.dev" in names
        )


def test_valid_service_is_accepted_and_status_is_writable(control_plane, namespace):
    spec = {"containerConcurrency": 4, "containers": [CONTAINER]}
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=_ksvc("hello", spec))
    # Nobody runs Knative's controller here: tests write the status Knative would, whole
    # (Knative's webhook fills in a condition's missing time as null, which the schema
    # refuses).
    status = {
        "status": {
            "url": "http://hello.example",
            "conditions": [{"type": "Ready", "status": "True",
                            "lastTransitionTime": "2030-01-01T00:00:00Z"}],
        }
    }
    control_plane.kubectl(
        "patch", "-n", namespace, "ksvc", "hello", "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip
    got = json.loads(
        control_plane.kubectl("get", "-n", namespace, "ksvc", "hello", "-o", "json").stdout
    )
    assert got["spec"]["template"]["spec"]["containerConcurrency"] == 4
    assert got["status"]["conditions"][0]["status"] == "True"


def test_invalid_service_is_refused(control_plane, namespace):
    spec = {"containerConcurrency": "lots", "containers": [CONTAINER]}
    result = control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=_ksvc("broken", spec), check=False
    )
    assert result.returncode != 0
    assert "containerConcurrency" in result.stderr
    # The schema's words, or Knative's webhook's when it runs (it decodes first).
    assert "must be of type integer" in result.stderr or "of type int64" in result.stderr
