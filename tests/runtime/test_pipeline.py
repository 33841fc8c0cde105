"""Pipelines: fused (stages in one process) and isolated (stages in other runtimes)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from tests.conftest import ROOT
from tests.runtime.harness import Runtime, infer

ROOT_MANIFEST = "examples/pipelines/dialogue.yaml"
STAGES = ("intent", "policy", "response")


@pytest.fixture
def manifest():
    return ROOT / ROOT_MANIFEST


def by_hand(models_dir, utterance):
    x = utterance
    for stage in STAGES:
        session = ort.InferenceSession(str(models_dir / f"{stage}.onnx"))
        x = session.run(None, {session.get_inputs()[0].name: x})[0]
    return x


def overrides(models_dir):
    return [a for s in STAGES for a in ("--model", f"{s}={models_dir / (s + '.onnx')}")]


def utterances(rows=4, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, 384)).astype(np.float32)


def test_fused_pipeline_equals_running_the_stages_by_hand(start_runtime, example_models,
                                                          manifest):
    server = start_runtime("--pipeline", manifest, *overrides(example_models))
    client = server.client()
    x = utterances()
    result = infer(client, "dialogue", {"utterance": x})
    np.testing.assert_array_equal(result.as_numpy("tokens"), by_hand(example_models, x))
    metadata = client.get_model_metadata("dialogue")
    assert [t.name for t in metadata.inputs] == ["utterance"]
    assert [t.name for t in metadata.outputs] == ["tokens"]
    for stage in STAGES:  # every stage is a model of its own too
        assert client.is_model_ready(stage)
        assert server.metric("sluice_batch_size_count", model=stage) == 1


def test_isolated_pipeline_calls_remote_stages_and_passes_the_budget(
        start_runtime, example_models, manifest, tmp_path):
    logs = {s: tmp_path / f"{s}.jsonl" for s in STAGES}
    stage_servers = {
        s: start_runtime("--model", f"{s}={example_models / (s + '.onnx')}",
                         "--default-slo-ms", "3000000", "--request-log", logs[s])
        for s in STAGES
    }
    router = start_runtime("--pipeline", manifest, *[
        a for s in STAGES for a in ("--remote", f"{s}={stage_servers[s].url}")])
    x = utterances(rows=3, seed=1)
    result = infer(router.client(), "dialogue", {"utterance": x}, client_timeout=20)
    np.testing.assert_array_equal(result.as_numpy("tokens"), by_hand(example_models, x))
    for stage in STAGES:
        record = next(r for r in stage_servers[stage].request_log(logs[stage])
                      if r["event"] == "request")
        # The stage's own default SLO is 3000 s; its deadline came from the router's budget.
        # gRPC may round a timeout up when it encodes it, so the client's 20 s can reach
        # the router as slightly more: allow one second of slack, not 2,980.
        assert 0 < record["deadline"] - record["arrival"] <= 21
        assert record["code"] == "OK"


def test_remote_stage_errors_keep_their_status(start_runtime, example_models, manifest):
    stage = start_runtime("--model", f"intent={example_models / 'intent.onnx'}")
    router = start_runtime("--pipeline", manifest, "--remote", f"intent={stage.url}",
                           "--model", f"policy={example_models / 'policy.onnx'}",
                           "--model", f"response={example_models / 'response.onnx'}")
    stage.signal()
    assert stage.wait(60) == 0
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as error:
        infer(router.client(), "dialogue", {"utterance": utterances()})
    assert error.value.status() == "StatusCode.UNAVAILABLE"
    assert "intent" in error.value.message()


def test_stages_that_do_not_fit_together_stop_the_server_with_a_clear_message(
        example_models, manifest, tmp_path):
    spec = yaml.safe_load(manifest.read_text())
    spec["spec"]["stages"] = [spec["spec"]["stages"][i] for i in (0, 2, 1)]
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(spec))
    process = subprocess.run(
        [sys.executable, "-m", "sluice_runtime", "serve", "--pipeline", str(broken),
         *overrides(example_models), "--port", "0", "--metrics-port", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert process.returncode != 0
    assert "stage 'intent' -> 'response'" in process.stderr
    assert "shape" in process.stderr


def test_a_manifest_without_stages_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("metadata: {name: p}\nspec: {slo: {latencyMs: 50}, stages: []}\n")
    process = subprocess.run(
        [sys.executable, "-m", "sluice_runtime", "serve", "--pipeline", str(bad),
         "--port", "0", "--metrics-port", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert process.returncode != 0
    assert "spec.stages" in process.stderr


def test_a_runtime_with_nothing_to_serve_is_refused(tmp_path):
    """Started with no model and no pipeline, the CLI says what is missing."""
    with pytest.raises(AssertionError, match="nothing to serve"):
        Runtime([], tmp_path).start()
