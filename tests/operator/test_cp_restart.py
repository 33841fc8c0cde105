"""The operator stopped hard mid-way: on restart it converges, with no duplicate children."""

import copy

import pytest

from tests.operator.cluster import condition, pipeline_manifest

pytestmark = pytest.mark.controlplane

ISOLATED = {"dialogue-intent", "dialogue-policy", "dialogue-response", "dialogue-router"}


def test_restart_converges_without_duplicates(cluster, operator, control_plane):
    cluster.apply(pipeline_manifest())
    cluster.wait(lambda: set(cluster.children("dialogue")) == ISOLATED, what="the services")
    # Killed right after a new pipeline lands: it may have done none, some or all of it.
    cluster.apply(pipeline_manifest("second", composition="fused"))
    operator.stop(crash=True)
    try:
        # While it is down: the spec changes, a stage is added, children disappear.
        manifest = pipeline_manifest()
        manifest["spec"]["stages"][0]["batching"]["maxBatchSize"] = 2
        extra = copy.deepcopy(manifest["spec"]["stages"][2])
        extra["name"] = "extra"
        manifest["spec"]["stages"].append(extra)
        cluster.apply(manifest)
        cluster.kubectl("delete", "ksvc", "dialogue-policy")
        cluster.kubectl("delete", "configmap", "dialogue-manifest")
    finally:
        operator.start(control_plane)

    wanted = ISOLATED | {"dialogue-extra", "second-fused"}

    def converged():
        pipeline = cluster.pipeline("dialogue")
        status = pipeline.get("status", {})
        return (status.get("observedGeneration") == pipeline["metadata"]["generation"]
                and set(cluster.items("ksvc", "sluice.dev/pipeline")) == wanted
                and cluster.get("configmap", "dialogue-manifest") is not None)

    cluster.wait(converged, what="convergence after the restart", timeout=180)
    # Names are deterministic: every child exists exactly once, and nothing else was made.
    assert set(cluster.items("ksvc", "sluice.dev/pipeline")) == wanted
    assert set(cluster.items("configmap", "sluice.dev/pipeline")) == {
        "dialogue-manifest", "second-manifest"}
    intent = cluster.get("ksvc", "dialogue-intent")["spec"]["template"]["spec"]["containers"][0]
    assert intent["args"][intent["args"].index("--max-batch-size") + 1] == "2"
    router = cluster.get("ksvc", "dialogue-router")["spec"]["template"]["spec"]["containers"][0]
    assert "extra=dialogue-extra." + cluster.namespace + ".svc.cluster.local:80" in router["args"]
    second = cluster.wait(lambda: (p := cluster.pipeline("second")).get("status") and p,
                          what="status of the second pipeline")
    assert condition(second, "Ready")["status"] == "Unknown"
