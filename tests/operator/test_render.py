import copy

import pytest
import yaml
from sluice_operator.pipeline import parse_pipeline
from sluice_operator.render import desired_children
from sluice_operator.settings import OperatorSettings

from tests.operator.crd import example, served

SETTINGS = OperatorSettings(runtime_image="sluice-runtime:test", router_cpu="300m",
                            router_memory="128Mi")
SHA = "ab" * 32


def render(manifest, settings=SETTINGS):
    return {(o["kind"], o["metadata"]["name"]): o
            for o in desired_children(parse_pipeline(served(manifest)), settings)}


def with_spec(**changes):
    manifest = example()
    manifest["spec"].update(copy.deepcopy(changes))
    return manifest


def container(ksvc):
    (only,) = ksvc["spec"]["template"]["spec"]["containers"]
    return only


def test_isolated_renders_a_service_per_stage_a_router_and_its_manifest():
    children = desired_children(parse_pipeline(served(example())), SETTINGS)
    assert [(o["kind"], o["metadata"]["name"]) for o in children] == [
        ("Service", "dialogue-intent"), ("Service", "dialogue-policy"),
        ("Service", "dialogue-response"), ("ConfigMap", "dialogue-manifest"),
        ("Service", "dialogue-router"),
    ]
    for child in children:
        assert child["metadata"]["namespace"] == "ml"
        assert child["metadata"]["ownerReferences"] == [{
            "apiVersion": "sluice.dev/v1alpha1", "kind": "InferencePipeline", "name": "dialogue",
            "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}]
        assert child["metadata"]["labels"]["sluice.dev/pipeline"] == "dialogue"


def test_stage_service():
    ksvc = render(example())[("Service", "dialogue-response")]
    assert ksvc["apiVersion"] == "serving.knative.dev/v1"
    assert ksvc["metadata"]["labels"] == {
        "sluice.dev/pipeline": "dialogue", "sluice.dev/component": "stage",
        "sluice.dev/stage": "response", "networking.knative.dev/visibility": "cluster-local"}
    template = ksvc["spec"]["template"]
    assert template["metadata"] == {
        "labels": {"sluice.dev/pipeline": "dialogue", "sluice.dev/component": "stage",
                   "sluice.dev/stage": "response"},
        "annotations": {"autoscaling.knative.dev/min-scale": "1",
                        "autoscaling.knative.dev/max-scale": "4"},
    }
    # The root filesystem is read-only: the runtime prepares weights in a scratch /tmp.
    assert template["spec"]["volumes"] == [{"name": "scratch", "emptyDir": {}}]
    c = container(ksvc)
    assert c["volumeMounts"] == [{"name": "scratch", "mountPath": "/tmp"}]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["image"] == "sluice-runtime:test"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["command"] == ["sluice-runtime"]
    assert c["args"] == [
        "serve", "--host", "0.0.0.0", "--port", "8001", "--metrics-port", "8002",
        "--model", "response=/models/response.onnx",
        "--max-batch-size", "16", "--max-delay-ms", "5", "--default-slo-ms", "100"]
    assert c["ports"] == [{"name": "h2c", "containerPort": 8001, "protocol": "TCP"}]
    assert c["resources"] == {"requests": {"cpu": "1", "memory": "512Mi"},
                              "limits": {"cpu": "1", "memory": "512Mi"}}
    assert c["readinessProbe"] == {"grpc": {"port": 8001, "service": ""}}
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["runAsNonRoot"] is True


def test_router_calls_every_stage_in_order():
    objs = render(example())
    router = objs[("Service", "dialogue-router")]
    c = container(router)
    assert c["args"][7:] == [
        "--pipeline", "/etc/sluice/pipeline.yaml",
        "--remote", "intent=dialogue-intent.ml.svc.cluster.local:80",
        "--remote", "policy=dialogue-policy.ml.svc.cluster.local:80",
        "--remote", "response=dialogue-response.ml.svc.cluster.local:80"]
    assert c["resources"]["limits"] == {"cpu": "300m", "memory": "128Mi"}
    assert c["volumeMounts"] == [{"name": "manifest", "mountPath": "/etc/sluice",
                                  "readOnly": True}, {"name": "scratch", "mountPath": "/tmp"}]
    assert router["spec"]["template"]["spec"]["volumes"] == [
        {"name": "manifest", "configMap": {"name": "dialogue-manifest"}},
        {"name": "scratch", "emptyDir": {}}]
    assert router["metadata"]["labels"]["sluice.dev/component"] == "router"
    assert "networking.knative.dev/visibility" not in router["metadata"]["labels"]
    manifest = yaml.safe_load(objs[("ConfigMap", "dialogue-manifest")]["data"]["pipeline.yaml"])
    assert manifest["metadata"] == {"name": "dialogue"}
    assert manifest["spec"]["stages"][0] == {"name": "intent",
                                             "model": {"uri": "file:///models/intent.onnx"}}


def test_fused_runs_all_stages_in_one_service_with_summed_resources():
    objs = render(with_spec(composition="fused"))
    assert sorted(objs) == [("ConfigMap", "dialogue-manifest"), ("Service", "dialogue-fused")]
    fused = objs[("Service", "dialogue-fused")]
    c = container(fused)
    assert c["args"][7:] == ["--pipeline", "/etc/sluice/pipeline.yaml"]
    assert c["resources"]["requests"] == {"cpu": "3", "memory": "1536Mi"}
    assert fused["metadata"]["labels"]["sluice.dev/component"] == "fused"
    manifest = yaml.safe_load(objs[("ConfigMap", "dialogue-manifest")]["data"]["pipeline.yaml"])
    assert manifest["spec"]["composition"] == "fused"
    assert manifest["spec"]["stages"][2]["batching"] == {"maxBatchSize": 16, "maxDelayMs": 5.0}
    assert manifest["spec"]["slo"] == {"latencyMs": 100, "percentile": 99}


def test_pvc_models_are_mounted_read_only_once_per_claim():
    manifest = with_spec(composition="fused")
    for stage, uri in zip(manifest["spec"]["stages"],
                          ["pvc://weights/a.onnx", "pvc://weights/b/b.onnx", "pvc://extra/c.onnx"],
                          strict=True):
        stage["model"]["uri"] = uri
    fused = render(manifest)[("Service", "dialogue-fused")]
    spec = fused["spec"]["template"]["spec"]
    claims = [(v["name"], v["persistentVolumeClaim"]) for v in spec["volumes"][1:-1]]
    assert claims == [("model-pvc-0", {"claimName": "extra", "readOnly": True}),
                      ("model-pvc-1", {"claimName": "weights", "readOnly": True})]
    assert container(fused)["volumeMounts"][1:-1] == [
        {"name": "model-pvc-0", "mountPath": "/models/pvc/extra", "readOnly": True},
        {"name": "model-pvc-1", "mountPath": "/models/pvc/weights", "readOnly": True}]
    stage = render(manifest | {"spec": manifest["spec"] | {"composition": "isolated"}})[
        ("Service", "dialogue-policy")]
    assert "--model" in container(stage)["args"]
    assert "policy=/models/pvc/weights/b/b.onnx" in container(stage)["args"]


def test_http_model_with_checksum():
    manifest = example()
    manifest["spec"]["stages"][0]["model"] = {"uri": "https://models.example/i.onnx",
                                              "sha256": SHA}
    args = container(render(manifest)[("Service", "dialogue-intent")])["args"]
    assert args[7:11] == ["--model", "intent=https://models.example/i.onnx",
                          "--model-sha256", f"intent={SHA}"]


def test_runtime_image_from_spec_wins_over_settings():
    objs = render(with_spec(runtime={"image": "mine:1", "imagePullPolicy": "Always"}))
    for key, obj in objs.items():
        if key[0] == "Service":
            assert (container(obj)["image"], container(obj)["imagePullPolicy"]) == (
                "mine:1", "Always")


@pytest.mark.parametrize(
    ("change", "changed"),
    [
        # A stage's batching or resources concern only that stage's service.
        (lambda m: m["spec"]["stages"][1]["batching"].update(maxBatchSize=4),
         {("Service", "dialogue-policy")}),
        (lambda m: m["spec"]["stages"][0]["resources"]["cpu"].update(initial="2"),
         {("Service", "dialogue-intent")}),
        (lambda m: m["spec"]["stages"][2]["replicas"].update(max=8),
         {("Service", "dialogue-response"), ("Service", "dialogue-router")}),
        # A model change also reaches the router's manifest, which rolls the router.
        (lambda m: m["spec"]["stages"][0]["model"].update(uri="file:///models/intent2.onnx"),
         {("Service", "dialogue-intent"), ("Service", "dialogue-router"),
          ("ConfigMap", "dialogue-manifest")}),
        (lambda m: m["spec"]["slo"].update(latencyMs=200),
         {("Service", "dialogue-intent"), ("Service", "dialogue-policy"),
          ("Service", "dialogue-response"), ("Service", "dialogue-router"),
          ("ConfigMap", "dialogue-manifest")}),
    ],
)
def test_a_change_touches_only_the_children_it_concerns(change, changed):
    before = render(example())
    manifest = example()
    change(manifest)
    after = render(manifest)
    assert {k for k in before if before[k] != after[k]} == changed


def test_longest_valid_names_fit_dns_labels():
    manifest = example()
    manifest["metadata"]["name"] = "p" * 56
    manifest["spec"]["stages"] = [dict(manifest["spec"]["stages"][0], name="s" * 6)]
    for kind, name in render(manifest):
        if kind == "Service":
            assert len(name) <= 63
