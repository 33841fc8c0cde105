"""What the API server refuses (schema and CEL), and what the operator refuses after it."""

import json

import pytest

from tests.operator.cluster import condition, pipeline_manifest
from tests.spec_cases import INVALID

pytestmark = pytest.mark.controlplane


@pytest.mark.parametrize(("change", "says"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_the_api_server_rejects_invalid_pipelines(control_plane, namespace, change, says):
    manifest = pipeline_manifest()
    change(manifest)
    result = control_plane.kubectl("create", "--dry-run=server", "--namespace", namespace,
                                   "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert says in result.stderr


def test_the_example_is_accepted_and_defaulted(control_plane, namespace):
    manifest = pipeline_manifest()
    del manifest["spec"]["composition"], manifest["spec"]["scaling"]
    del manifest["spec"]["stages"][0]["resources"], manifest["spec"]["stages"][0]["batching"]
    result = control_plane.kubectl("create", "--dry-run=server", "--namespace", namespace,
                                   "-o", "json", "-f", "-", input=json.dumps(manifest))
    created = json.loads(result.stdout)["spec"]
    assert (created["composition"], created["scaling"]) == ("isolated", {"mode": "hybrid"})
    assert created["stages"][0]["resources"] == {
        "cpu": {"initial": "1", "min": "250m", "max": "2"},
        "memory": {"initial": "512Mi", "min": "256Mi", "max": "1Gi"}}
    assert created["stages"][0]["batching"] == {"maxBatchSize": 8, "maxDelayMs": 2}


def test_an_unservable_model_uri_ends_not_ready_with_an_event(cluster):
    manifest = pipeline_manifest()
    manifest["spec"]["stages"][1]["model"]["uri"] = "s3://bucket/policy.onnx"
    cluster.apply(manifest)
    ready = cluster.wait(lambda: (c := condition(cluster.pipeline("dialogue"), "Ready"))
                         and c.get("status") == "False" and c, what="Ready=False")
    assert ready["reason"] == "UnsupportedModelURI"
    assert "stage 'policy'" in ready["message"]
    assert "pvc://CLAIM/PATH" in ready["message"]
    cluster.wait(lambda: any(e["reason"] == "UnsupportedModelURI" and e["type"] == "Warning"
                             for e in cluster.events("dialogue")), what="a Warning Event")
    assert cluster.pipeline("dialogue")["status"]["observedGeneration"] == 1
    assert cluster.children("dialogue") == {}
    # Fixing the spec is enough: the update handler converges.
    cluster.apply(pipeline_manifest())
    cluster.wait(lambda: len(cluster.children("dialogue")) == 4, what="the services")
