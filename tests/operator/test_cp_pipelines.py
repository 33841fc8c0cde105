"""The operator against a real API server: children, updates, pruning, GC, status."""

import json

import pytest
from sluice_operator.pipeline import parse_pipeline
from sluice_operator.render import desired_children
from sluice_operator.settings import OperatorSettings

from tests.operator.cluster import RUNTIME_IMAGE, condition, pipeline_manifest

pytestmark = pytest.mark.controlplane

STAGE_SERVICES = {"dialogue-intent", "dialogue-policy", "dialogue-response"}
ISOLATED = STAGE_SERVICES | {"dialogue-router"}


def wait_services(cluster, names, pipeline="dialogue"):
    return cluster.wait(lambda: (s := cluster.children(pipeline)) and set(s) == set(names) and s,
                        what=f"Knative Services {sorted(names)}")


def canonical(obj):
    """Sorted, indented JSON lines: a mismatch shows as a readable diff."""
    return json.dumps(obj, sort_keys=True, indent=1).splitlines()


def rendered_part(stored, rendered):
    """``stored`` cut down to the fields ``rendered`` sets: what Knative's defaulting added
    beside them is left out, anything it pruned or rewrote stays visible."""
    if isinstance(rendered, dict) and isinstance(stored, dict):
        return {key: rendered_part(stored.get(key), value) for key, value in rendered.items()}
    if isinstance(rendered, list) and isinstance(stored, list) and len(stored) == len(rendered):
        return [rendered_part(s, r) for s, r in zip(stored, rendered, strict=True)]
    return stored


def versions(services):
    return {n: (s["metadata"]["generation"], s["metadata"]["resourceVersion"])
            for n, s in services.items()}


def test_isolated_pipeline_becomes_stage_services_a_router_and_a_manifest(cluster):
    cluster.apply(pipeline_manifest())
    services = wait_services(cluster, ISOLATED)
    configmaps = cluster.wait(lambda: cluster.children("dialogue", "configmap"),
                              what="the manifest ConfigMap")
    assert set(configmaps) == {"dialogue-manifest"}
    pipeline = cluster.pipeline("dialogue")
    # What the API server stored is what the renderer meant, and Knative's defaults beside
    # it (its webhook runs as root): nothing pruned or rewritten.
    expected = {o["metadata"]["name"]: o for o in desired_children(
        parse_pipeline(pipeline), OperatorSettings(runtime_image=RUNTIME_IMAGE))}
    for name, ksvc in services.items():
        assert canonical(rendered_part(ksvc["spec"], expected[name]["spec"])) == canonical(
            expected[name]["spec"]), name
        assert ksvc["metadata"]["labels"] == expected[name]["metadata"]["labels"]
        (owner,) = ksvc["metadata"]["ownerReferences"]
        assert (owner["uid"], owner["controller"]) == (pipeline["metadata"]["uid"], True)
    assert configmaps["dialogue-manifest"]["data"] == expected["dialogue-manifest"]["data"]
    # No finalizer: deleting a pipeline never waits for the operator.
    assert not pipeline["metadata"].get("finalizers")
    status = cluster.wait(lambda: cluster.pipeline("dialogue").get("status", {}).get("stages"),
                          what="per-stage status")
    assert [s["service"] for s in status] == sorted(STAGE_SERVICES, key=lambda n: [
        "dialogue-intent", "dialogue-policy", "dialogue-response"].index(n))
    pipeline = cluster.pipeline("dialogue")
    assert pipeline["status"]["observedGeneration"] == pipeline["metadata"]["generation"]
    assert condition(pipeline, "Ready")["status"] == "Unknown"
    assert pipeline["status"]["stagesReady"] == "0/3"


def test_status_follows_knative_readiness(cluster):
    cluster.apply(pipeline_manifest())
    wait_services(cluster, ISOLATED)

    def ready_is(status, reason):
        def check():
            got = condition(cluster.pipeline("dialogue"), "Ready")
            return got.get("status") == status and got.get("reason") == reason and got
        return check

    for name in sorted(STAGE_SERVICES):
        cluster.set_ksvc_status(name)
    cluster.wait(lambda: condition(cluster.pipeline("dialogue"), "StagesReady").get("status")
                 == "True", what="StagesReady=True")
    cluster.wait(ready_is("Unknown", "RouterNotReady"), what="Ready waiting for the router")
    cluster.set_ksvc_status("dialogue-router")
    cluster.wait(ready_is("True", "Ready"), what="Ready=True")
    status = cluster.pipeline("dialogue")["status"]
    assert status["endpoint"] == f"http://dialogue-router.{cluster.namespace}.example.com"
    assert status["stagesReady"] == "3/3"
    assert all(s["ready"] for s in status["stages"])
    assert status["stages"][0]["url"] == (
        f"http://dialogue-intent.{cluster.namespace}.svc.cluster.local")

    cluster.set_ksvc_status("dialogue-policy", ready="False", reason="RevisionFailed",
                            message="container exited")
    failed = cluster.wait(ready_is("False", "StageFailed"), what="Ready=False")
    assert "policy (dialogue-policy) [RevisionFailed: container exited]" in failed["message"]
    cluster.wait(lambda: any(e["reason"] == "StageFailed" and e["type"] == "Warning"
                             for e in cluster.events("dialogue")), what="a StageFailed Event")


def test_updating_a_stage_changes_its_service_only(cluster):
    cluster.apply(pipeline_manifest())
    before = versions(wait_services(cluster, ISOLATED))
    manifest = pipeline_manifest()
    manifest["spec"]["stages"][1]["batching"]["maxBatchSize"] = 4
    manifest["spec"]["stages"][1]["resources"]["cpu"]["initial"] = "2"
    cluster.apply(manifest)
    policy = cluster.wait(lambda: (s := cluster.get("ksvc", "dialogue-policy"))
                          and s["metadata"]["generation"] > before["dialogue-policy"][0] and s,
                          what="dialogue-policy to change")
    container = policy["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][container["args"].index("--max-batch-size") + 1] == "4"
    assert container["resources"]["limits"]["cpu"] == "2"
    cluster.wait(lambda: cluster.pipeline("dialogue")["status"]["observedGeneration"] == 2,
                 what="status of generation 2")
    after = versions(cluster.children("dialogue"))
    assert {n: v for n, v in after.items() if n != "dialogue-policy"} == {
        n: v for n, v in before.items() if n != "dialogue-policy"}


def test_removing_a_stage_deletes_its_service(cluster):
    cluster.apply(pipeline_manifest())
    wait_services(cluster, ISOLATED)
    manifest = pipeline_manifest()
    del manifest["spec"]["stages"][2]
    cluster.apply(manifest)
    services = wait_services(cluster, ISOLATED - {"dialogue-response"})
    router = services["dialogue-router"]["spec"]["template"]["spec"]["containers"][0]
    assert not any(a.startswith("response=") for a in router["args"])
    events = cluster.wait(lambda: [e for e in cluster.events("dialogue")
                                   if e["reason"] == "Deleted"], what="a Deleted Event")
    assert "dialogue-response" in events[0]["message"]


def test_fused_and_switching_composition(cluster):
    cluster.apply(pipeline_manifest(composition="fused"))
    fused = wait_services(cluster, {"dialogue-fused"})["dialogue-fused"]
    container = fused["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"] == {"cpu": "3", "memory": "1536Mi"}
    assert json.loads(json.dumps(container["args"]))[-2:] == [
        "--pipeline", "/etc/sluice/pipeline.yaml"]
    cluster.apply(pipeline_manifest(composition="isolated"))
    wait_services(cluster, ISOLATED)
    cluster.apply(pipeline_manifest(composition="auto"))
    ready = cluster.wait(lambda: (c := condition(cluster.pipeline("dialogue"), "Ready"))
                         and "served as isolated" in c.get("message", "") and c,
                         what="the auto composition note")
    assert ready["status"] == "Unknown"
    assert set(cluster.children("dialogue")) == ISOLATED


def test_deleting_the_pipeline_garbage_collects_every_child(cluster):
    cluster.apply(pipeline_manifest())
    wait_services(cluster, ISOLATED)
    cluster.kubectl("delete", "inferencepipeline", "dialogue", "--wait=true")
    cluster.wait(lambda: not cluster.children("dialogue")
                 and not cluster.children("dialogue", "configmap"),
                 what="the garbage collector to delete the children", timeout=180)


def test_drift_is_repaired(cluster):
    cluster.apply(pipeline_manifest())
    wait_services(cluster, ISOLATED)
    cluster.kubectl("patch", "ksvc", "dialogue-intent", "--type=merge", "-p", json.dumps(
        {"spec": {"template": {"metadata": {"annotations": {
            "autoscaling.knative.dev/max-scale": "99"}}}}}))
    cluster.kubectl("delete", "ksvc", "dialogue-router")
    cluster.wait(lambda: (s := cluster.get("ksvc", "dialogue-intent")) and s["spec"]["template"][
        "metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] == "4",
        what="the operator to restore max-scale")
    wait_services(cluster, ISOLATED)


def test_a_name_held_by_someone_else_is_reported_and_left_alone(cluster):
    foreign = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
               "metadata": {"name": "dialogue-policy"},
               "spec": {"template": {"spec": {"containers": [{"image": "someone/else:1"}]}}}}
    cluster.apply(foreign)
    cluster.apply(pipeline_manifest())
    ready = cluster.wait(lambda: (c := condition(cluster.pipeline("dialogue"), "Ready"))
                         and c.get("reason") == "NameConflict" and c, what="NameConflict")
    assert ready["status"] == "False"
    assert "Knative Service dialogue-policy" in ready["message"]
    kept = cluster.get("ksvc", "dialogue-policy")
    assert kept["spec"]["template"]["spec"]["containers"][0]["image"] == "someone/else:1"
    assert not kept["metadata"].get("ownerReferences")
    cluster.kubectl("delete", "ksvc", "dialogue-policy")
    wait_services(cluster, ISOLATED)


def test_replicas_and_cpu_come_from_the_pods(cluster):
    cluster.apply(pipeline_manifest())
    wait_services(cluster, ISOLATED)
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "dialogue-intent-00001-pod", "labels": {
            "sluice.dev/pipeline": "dialogue", "sluice.dev/stage": "intent",
            "serving.knative.dev/service": "dialogue-intent"}},
        "spec": {"containers": [{"name": "runtime", "image": RUNTIME_IMAGE,
                                 "resources": {"requests": {"cpu": "1", "memory": "512Mi"},
                                               "limits": {"cpu": "1", "memory": "512Mi"}}}]},
    }
    cluster.apply(pod)  # KWOK's fake node runs it and marks it Ready

    def intent():
        stages = cluster.pipeline("dialogue").get("status", {}).get("stages") or []
        return next((s for s in stages if s["name"] == "intent" and s["replicas"] == 1), None)

    assert cluster.wait(intent, what="intent to report one replica")["cpu"] == "1"
