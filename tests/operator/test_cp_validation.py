"""What the API server refuses (schema and CEL), and what the operator refuses after it."""

import copy
import json

import pytest

from tests.operator.cluster import condition, pipeline_manifest
from tests.operator.crd import setter

pytestmark = pytest.mark.controlplane


def stage(i, **fields):
    def change(m):
        m["spec"]["stages"][i].update(copy.deepcopy(fields))
    return change


def spec(**fields):
    def change(m):
        m["spec"].update(copy.deepcopy(fields))
    return change


def drop(*path):
    def change(m):
        node = m
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return change


S0 = ("spec", "stages", 0)
INVALID = [
    ("no-slo", drop("spec", "slo"), "spec.slo: Required value"),
    ("latency-zero", setter("spec", "slo", "latencyMs", value=0), "spec.slo.latencyMs"),
    ("percentile-zero", setter("spec", "slo", "percentile", value=0), "spec.slo.percentile"),
    ("percentile-over-100", setter("spec", "slo", "percentile", value=101),
     "spec.slo.percentile"),
    ("unknown-composition", spec(composition="sharded"), "spec.composition: Unsupported value"),
    ("unknown-scaling-mode", spec(scaling={"mode": "diagonal"}), "spec.scaling.mode"),
    ("no-stages", spec(stages=[]), "spec.stages"),
    ("stage-name-uppercase", stage(0, name="Intent"), "spec.stages[0].name"),
    ("duplicate-stage-names", stage(1, name="intent"), "spec.stages[1]: Duplicate value"),
    ("reserved-stage-name", stage(2, name="router"), "reserved for the pipeline's own services"),
    ("no-model", drop(*S0, "model"), "spec.stages[0].model: Required value"),
    ("uri-without-scheme", stage(0, model={"uri": "models/intent.onnx"}),
     "spec.stages[0].model.uri"),
    ("pvc-without-path", stage(0, model={"uri": "pvc://claim"}),
     "spec.stages[0].model.uri: Invalid value"),
    ("file-uri-with-host", stage(0, model={"uri": "file://models/intent.onnx"}),
     "must name an absolute path"),
    ("short-sha256", stage(0, model={"uri": "file:///m.onnx", "sha256": "abc"}),
     "spec.stages[0].model.sha256"),
    ("batch-size-zero", setter(*S0, "batching", "maxBatchSize", value=0),
     "spec.stages[0].batching.maxBatchSize"),
    ("negative-delay", setter(*S0, "batching", "maxDelayMs", value=-1),
     "spec.stages[0].batching.maxDelayMs"),
    ("cpu-min-over-initial", setter(*S0, "resources", "cpu", "min", value="1500m"),
     "spec.stages[0].resources.cpu.min: Invalid value: cpu.min (1500m) must not exceed "
     "cpu.initial (1)"),
    ("cpu-initial-over-max", setter(*S0, "resources", "cpu", "initial", value="3"),
     "cpu.initial (3) must not exceed cpu.max (2)"),
    ("memory-not-a-quantity", setter(*S0, "resources", "memory", "initial", value="lots"),
     "spec.stages[0].resources.memory.initial"),
    ("memory-min-zero", setter(*S0, "resources", "memory", "min", value="0"),
     "memory.min must be greater than zero"),
    ("replicas-min-over-max", setter(*S0, "replicas", value={"min": 5, "max": 4}),
     "spec.stages[0].replicas.min: Invalid value: replicas.min must not exceed replicas.max"),
    ("replicas-max-zero", setter(*S0, "replicas", value={"min": 0, "max": 0}),
     "spec.stages[0].replicas.max"),
    ("fused-unequal-replicas", lambda m: (spec(composition="fused")(m),
                                          setter(*S0, "replicas", value={"min": 2, "max": 4})(m)),
     "composition fused runs every stage in one Knative Service"),
    ("vertical-with-replica-range", spec(scaling={"mode": "vertical"}),
     "spec.stages: Invalid value: scaling.mode vertical or none keeps the replica count fixed"),
    ("bad-pull-policy", spec(runtime={"imagePullPolicy": "Sometimes"}),
     "spec.runtime.imagePullPolicy"),
    ("name-too-long", setter("metadata", "name", value="p" * 57), "metadata.name: Too long"),
    ("stage-service-name-too-long", lambda m: (setter("metadata", "name", value="p" * 50)(m),
                                               stage(0, name="s" * 13)(m)),
     "spec.stages: Invalid value: every stage's Knative Service name"),
    ("name-not-dns-1035", setter("metadata", "name", value="9lives"),
     'metadata.name: Invalid value: "9lives"'),
    ("unknown-field", stage(0, modle={"uri": "file:///m.onnx"}),
     'unknown field "spec.stages[0].modle"'),
    ("duplicate-variants", stage(0, variants=[{"name": "a", "model": {"uri": "file:///a"}},
                                              {"name": "a", "model": {"uri": "file:///b"}}]),
     "spec.stages[0].variants[1]: Duplicate value"),
]


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
