"""Facts about Knative's Service schema that shaped what the operator renders."""

import json

import pytest

pytestmark = pytest.mark.controlplane


def test_knative_services_cannot_carry_a_resize_policy(control_plane, namespace):
    """Knative's CRD schema (like its webhook's field mask) has no container resizePolicy.

    A client that does not ask for strict validation (the API's default is to warn) has it
    silently dropped. So the operator renders none and relies on the Kubernetes default,
    NotRequired for CPU and memory: what in-place resize needs.
    """
    ksvc = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "probe", "namespace": namespace},
            "spec": {"template": {"spec": {"containers": [{
                "image": "example.invalid/app:1", "resizePolicy": [
                    {"resourceName": "cpu", "restartPolicy": "NotRequired"}]}]}}}}
    result = control_plane.kubectl("create", "--validate=warn", "-f", "-", "-o", "json",
                                   input=json.dumps(ksvc))
    assert 'unknown field "spec.template.spec.containers[0].resizePolicy"' in result.stderr
    container = json.loads(result.stdout)["spec"]["template"]["spec"]["containers"][0]
    # Dropped; what else is there is Knative's defaulting (as root its webhook runs).
    assert "resizePolicy" not in container
    assert container["image"] == "example.invalid/app:1"
