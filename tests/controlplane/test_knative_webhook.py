"""Knative's own webhook is registered: what is written to the control plane is defaulted
and validated by Knative itself, the operator's rendering included."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from sluice_core.spec import parse_pipeline
from sluice_operator import render
from sluice_operator.settings import OperatorSettings

from tests.conftest import ROOT

pytestmark = pytest.mark.controlplane


@pytest.fixture(autouse=True)
def as_root():
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: Knative's webhook runs only then")
        pytest.skip("Knative's webhook runs only as root (it is reached over the bridge)")


def ksvc(name: str, namespace: str, container: dict) -> dict:
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"template": {"spec": {"containers": [container]}}}}


def test_a_service_is_defaulted_by_knative(control_plane, namespace):
    control_plane.kubectl("create", "-f", "-", input=json.dumps(
        ksvc("hello", namespace, {"image": "example.invalid/app:1"})))
    got = json.loads(control_plane.kubectl("get", "-n", namespace, "ksvc", "hello", "-o",
                                           "json").stdout)
    template = got["spec"]["template"]["spec"]
    assert template["timeoutSeconds"] == 300  # config-defaults' revision-timeout-seconds
    assert template["containerConcurrency"] == 0
    assert got["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]
    assert "serving.knative.dev/creator" in got["metadata"]["annotations"]


def test_what_only_knative_knows_to_refuse_is_refused(control_plane, namespace):
    reserved = {"image": "example.invalid/app:1",
                "ports": [{"name": "h2c", "containerPort": 8012}]}
    done = control_plane.kubectl("create", "-f", "-", check=False, input=json.dumps(
        ksvc("reserved", namespace, reserved)))
    assert done.returncode != 0
    assert "validation.webhook.serving.knative.dev" in done.stderr
    assert "8012" in done.stderr  # the queue-proxy's own port


@pytest.mark.parametrize("composition", ["isolated", "fused"])
def test_the_operators_services_pass_knative_as_rendered(control_plane, namespace,
                                                         composition):
    document = yaml.safe_load((ROOT / "examples/pipelines/dialogue.yaml").read_text())
    document["metadata"]["namespace"] = namespace
    document["spec"]["composition"] = composition
    pipeline = parse_pipeline(document)
    for child in render.desired_children(pipeline, OperatorSettings()):
        if child["kind"] != "Service":
            continue
        child["metadata"].pop("ownerReferences", None)  # no pipeline object owns them here
        done = control_plane.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-",
                                     input=json.dumps(child), check=False)
        assert done.returncode == 0, done.stderr
        stored = json.loads(done.stdout)
        rendered = child["spec"]["template"]["spec"]["containers"][0]
        kept = stored["spec"]["template"]["spec"]["containers"][0]
        # Knative adds its defaults and changes nothing the operator set.
        for key in ("args", "resources", "readinessProbe", "ports", "securityContext"):
            if key == "readinessProbe":
                assert kept[key]["grpc"]["port"] == rendered[key]["grpc"]["port"]
            else:
                assert kept[key] == rendered[key], key
