import pytest
from sluice_operator.pipeline import parse_pipeline
from sluice_operator.status import (
    ServiceState,
    failed_status,
    merge_conditions,
    pipeline_status,
    service_state,
)

from tests.operator.crd import example, served

T0, T1 = "2030-01-01T00:00:00Z", "2030-01-01T00:05:00Z"


def ksvc(name, ready="True", generation=1, observed=1, reason="", message="", ns="ml"):
    status = {"observedGeneration": observed,
              "url": f"http://{name}.{ns}.example.com",
              "address": {"url": f"http://{name}.{ns}.svc.cluster.local"}}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready, "reason": reason,
                                 "message": message}]
    return {"metadata": {"name": name, "generation": generation}, "status": status}


def pod(service, cpu="1", ready=True, status_cpu=None, deleting=False):
    meta = {"labels": {"serving.knative.dev/service": service, "sluice.dev/pipeline": "dialogue"}}
    if deleting:
        meta["deletionTimestamp"] = T0
    status = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if status_cpu:
        status["containerStatuses"] = [
            {"name": "queue-proxy", "resources": {"limits": {"cpu": "9"}}},
            {"name": "runtime", "resources": {"limits": {"cpu": status_cpu}}}]
    return {"metadata": meta, "status": status,
            "spec": {"containers": [{"name": "runtime",
                                     "resources": {"limits": {"cpu": cpu}}}]}}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (None, ServiceState("Unknown", "NotCreated", "the Knative Service does not exist yet")),
        (ksvc("a"), ServiceState("True", "", "")),
        (ksvc("a", ready="False", reason="RevisionFailed", message="image pull"),
         ServiceState("False", "RevisionFailed", "image pull")),
        (ksvc("a", generation=2, observed=1),
         ServiceState("Unknown", "Deploying", "Knative has not yet observed generation 2")),
        (ksvc("a", ready=None),
         ServiceState("Unknown", "Deploying", "Knative reports no Ready condition yet")),
        ({"metadata": {"name": "a", "generation": 1}},
         ServiceState("Unknown", "Deploying", "Knative has not yet observed generation 1")),
    ],
)
def test_service_state(obj, expected):
    assert service_state(obj) == expected


def isolated(**overrides):
    services = {n: ksvc(n) for n in
                ("dialogue-intent", "dialogue-policy", "dialogue-response", "dialogue-router")}
    services.update(overrides)
    return {k: v for k, v in services.items() if v is not None}


def conditions_of(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


@pytest.mark.parametrize(
    ("services", "ready", "stages_ready", "count"),
    [
        (isolated(), ("True", "Ready"), ("True", "AllStagesReady"), "3/3"),
        (isolated(**{"dialogue-router": ksvc("dialogue-router", ready="Unknown")}),
         ("Unknown", "RouterNotReady"), ("True", "AllStagesReady"), "3/3"),
        (isolated(**{"dialogue-router": ksvc("dialogue-router", ready="False")}),
         ("False", "RouterFailed"), ("True", "AllStagesReady"), "3/3"),
        (isolated(**{"dialogue-policy": None}),
         ("Unknown", "StagesNotReady"), ("Unknown", "StagesNotReady"), "2/3"),
        (isolated(**{"dialogue-policy": ksvc("dialogue-policy", ready="False")}),
         ("False", "StageFailed"), ("False", "StageFailed"), "2/3"),
        (isolated(**{"dialogue-intent": ksvc("dialogue-intent", ready="False"),
                     "dialogue-policy": None}),
         ("False", "StageFailed"), ("False", "StageFailed"), "1/3"),
        ({}, ("Unknown", "StagesNotReady"), ("Unknown", "StagesNotReady"), "0/3"),
    ],
)
def test_isolated_status(services, ready, stages_ready, count):
    status = pipeline_status(parse_pipeline(served(example())), services, [], {}, T0)
    assert conditions_of(status) == {"Ready": ready, "StagesReady": stages_ready}
    assert status["stagesReady"] == count
    assert status["observedGeneration"] == 1
    assert status["composition"] == "isolated"


def test_isolated_status_details():
    services = isolated(**{"dialogue-policy": ksvc("dialogue-policy", ready="False",
                                                   reason="RevisionMissing",
                                                   message="no revision")})
    status = pipeline_status(parse_pipeline(served(example())), services, [], {}, T0)
    assert status["endpoint"] == "http://dialogue-router.ml.example.com"
    assert status["address"] == "http://dialogue-router.ml.svc.cluster.local"
    ready = status["conditions"][0]
    assert ready["message"] == "policy (dialogue-policy) [RevisionMissing: no revision]"
    assert ready["lastTransitionTime"] == T0
    assert status["stages"][1] == {
        "name": "policy", "service": "dialogue-policy",
        "url": "http://dialogue-policy.ml.svc.cluster.local", "ready": False,
        "replicas": 0, "cpu": "0", "batching": {"maxBatchSize": 32, "maxDelayMs": 2.0}}


def test_fused_status_points_every_stage_at_the_fused_service():
    manifest = example()
    manifest["spec"]["composition"] = "fused"
    pipeline = parse_pipeline(served(manifest))
    status = pipeline_status(pipeline, {"dialogue-fused": ksvc("dialogue-fused")}, [], {}, T0)
    assert conditions_of(status)["Ready"] == ("True", "AllStagesReady")
    assert {s["service"] for s in status["stages"]} == {"dialogue-fused"}
    assert status["endpoint"] == "http://dialogue-fused.ml.example.com"


def test_auto_says_it_is_served_as_isolated():
    manifest = example()
    manifest["spec"]["composition"] = "auto"
    status = pipeline_status(parse_pipeline(served(manifest)), isolated(), [], {}, T0)
    assert "served as isolated" in status["conditions"][0]["message"]
    assert status["composition"] == "isolated"


def test_replicas_and_cpu_come_from_ready_pods():
    pods = [pod("dialogue-intent"), pod("dialogue-intent", status_cpu="1500m"),
            pod("dialogue-intent", ready=False), pod("dialogue-intent", deleting=True),
            pod("dialogue-policy", cpu="500m"), {"metadata": {"labels": {}}}]
    status = pipeline_status(parse_pipeline(served(example())), isolated(), pods, {}, T0)
    by_name = {s["name"]: s for s in status["stages"]}
    assert (by_name["intent"]["replicas"], by_name["intent"]["cpu"]) == (2, "2500m")
    assert (by_name["policy"]["replicas"], by_name["policy"]["cpu"]) == (1, "500m")
    assert (by_name["response"]["replicas"], by_name["response"]["cpu"]) == (0, "0")


def test_merge_keeps_transition_times_and_foreign_conditions():
    previous = [
        {"type": "Ready", "status": "True", "reason": "Ready", "lastTransitionTime": T0},
        {"type": "StagesReady", "status": "Unknown", "reason": "x", "lastTransitionTime": T0},
        {"type": "SLOMet", "status": "True", "reason": "Measured", "lastTransitionTime": T0},
    ]
    updates = [{"type": "Ready", "status": "True", "reason": "Ready"},
               {"type": "StagesReady", "status": "True", "reason": "AllStagesReady"}]
    merged = merge_conditions(previous, updates, T1)
    assert [(c["type"], c["lastTransitionTime"]) for c in merged] == [
        ("Ready", T0), ("StagesReady", T1), ("SLOMet", T0)]


def test_failed_status_keeps_stages_and_endpoint_out_of_the_patch():
    previous = {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                "lastTransitionTime": T0}]}
    status = failed_status(previous, 3, "UnsupportedModelURI", "use pvc://", T1)
    assert set(status) == {"observedGeneration", "conditions"}
    assert status["observedGeneration"] == 3
    assert [(c["type"], c["status"], c["reason"], c["lastTransitionTime"])
            for c in status["conditions"]] == [
        ("Ready", "False", "UnsupportedModelURI", T1),
        ("StagesReady", "False", "UnsupportedModelURI", T1)]
