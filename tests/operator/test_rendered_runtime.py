"""The commands the operator renders, run by the real runtime on loopback.

Each Knative Service's container args and the manifest ConfigMap are taken as rendered;
only what Knative and Kubernetes would provide changes: loopback ports instead of
0.0.0.0:8001, the ConfigMap as a file, model files from examples/models, and the stage
services' cluster addresses pointing at the local stage runtimes. hack/request.py, the
kind script's client, sends the request.
"""

import subprocess
import sys

import pytest
from sluice_operator.pipeline import parse_pipeline
from sluice_operator.render import desired_children
from sluice_operator.settings import OperatorSettings

from tests.operator.cluster import pipeline_manifest
from tests.operator.crd import REPO, served
from tests.runtime.harness import Runtime

MODELS = REPO / "examples" / "models"
POD_ADDRESS = ["serve", "--host", "0.0.0.0", "--port", "8001", "--metrics-port", "8002"]


@pytest.fixture(scope="module")
def models():
    missing = [s for s in ("intent", "policy", "response") if not (MODELS / f"{s}.onnx").exists()]
    assert not missing, f"examples/models lacks {missing}: run `make models`"
    return MODELS


def rendered(composition, models):
    manifest = pipeline_manifest(composition=composition)
    for stage in manifest["spec"]["stages"]:
        stage["model"]["uri"] = stage["model"]["uri"].replace("file:///models",
                                                              f"file://{models}")
    children = desired_children(parse_pipeline(served(manifest)), OperatorSettings())
    return {o["metadata"]["name"]: o for o in children}


def local_args(ksvc, manifest_file=None, addresses=None):
    """The container's args with the pod's address, manifest path and peers made local."""
    (container,) = ksvc["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[: len(POD_ADDRESS)] == POD_ADDRESS
    local = []
    for arg in args[len(POD_ADDRESS):]:
        if manifest_file is not None:
            arg = arg.replace("/etc/sluice/pipeline.yaml", str(manifest_file))
        for cluster_address, loopback in (addresses or {}).items():
            arg = arg.replace(cluster_address, loopback)
        local.append(arg)
    return local


def request(runtime):
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "request.py"), "--target", runtime.url,
         "--model", "dialogue"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_isolated_services_serve_the_pipeline(models, tmp_path):
    children = rendered("isolated", models)
    manifest = tmp_path / "pipeline.yaml"
    manifest.write_text(children["dialogue-manifest"]["data"]["pipeline.yaml"])
    stages = {}
    try:
        for stage in ("intent", "policy", "response"):
            service = f"dialogue-{stage}"
            stages[service] = Runtime(local_args(children[service]), tmp_path).start()
        addresses = {f"{s}.ml.svc.cluster.local:80": r.url for s, r in stages.items()}
        router = Runtime(local_args(children["dialogue-router"], manifest, addresses), tmp_path)
        stages["dialogue-router"] = router.start()
        assert "dialogue: tokens [1, 16]" in request(router)
    finally:
        for runtime in stages.values():
            runtime.stop()


def test_fused_service_serves_the_pipeline(models, tmp_path):
    children = rendered("fused", models)
    manifest = tmp_path / "pipeline.yaml"
    manifest.write_text(children["dialogue-manifest"]["data"]["pipeline.yaml"])
    fused = Runtime(local_args(children["dialogue-fused"], manifest), tmp_path).start()
    try:
        assert "dialogue: tokens [1, 16]" in request(fused)
    finally:
        fused.stop()
