
import pytest
from sluice_core.spec import Bounds
from sluice_operator.pipeline import InvalidPipeline, parse_pipeline, stage_source

from tests.operator.crd import example, served, setter


def test_example_parses_with_crd_defaults():
    pipeline = parse_pipeline(served(example()))
    assert pipeline.name == "dialogue"
    assert (pipeline.latency_ms, pipeline.percentile) == (100, 99.0)
    assert [s.name for s in pipeline.stages] == ["intent", "policy", "response"]
    intent = pipeline.stages[0]
    assert stage_source(intent).source == "/models/intent.onnx"
    assert intent.cpu == Bounds("1", "500m", "2")
    assert intent.memory == Bounds("512Mi", "256Mi", "1Gi")
    assert (intent.min_replicas, intent.max_replicas) == (1, 4)
    assert (pipeline.stages[2].max_batch_size, pipeline.stages[2].max_delay_ms) == (16, 5.0)
    assert pipeline.image is None


@pytest.mark.parametrize(
    ("composition", "effective"),
    [("isolated", "isolated"), ("fused", "fused"), ("auto", "isolated")],
)
def test_effective_composition(composition, effective):
    manifest = example()
    manifest["spec"]["composition"] = composition
    assert parse_pipeline(served(manifest)).effective_composition == effective


def test_defaults_fill_a_minimal_stage():
    manifest = {"apiVersion": "sluice.dev/v1alpha1", "kind": "InferencePipeline",
                "metadata": {"name": "tiny"},
                "spec": {"slo": {"latencyMs": 50},
                         "stages": [{"name": "only", "model": {"uri": "file:///m.onnx"}}]}}
    pipeline = parse_pipeline(served(manifest))
    stage = pipeline.stages[0]
    assert (pipeline.composition, pipeline.scaling_mode, pipeline.percentile) == (
        "isolated", "hybrid", 99.0)
    assert (stage.max_batch_size, stage.max_delay_ms) == (8, 2.0)
    assert stage.cpu == Bounds("1", "250m", "2")
    assert (stage.min_replicas, stage.max_replicas) == (1, 4)


@pytest.mark.parametrize(
    ("change", "reason", "says"),
    [
        (setter("spec", "stages", 0, "model", "uri", value="s3://bucket/intent.onnx"),
         "UnsupportedModelURI", "stage 'intent': model URI scheme 's3'"),
        (setter("spec", "stages", 1, "model", "uri", value="pvc://claim"),
         "InvalidModelURI", "spec.stages[1].model.uri"),
        (setter("spec", "stages", 0, "name", value="dialogue"), "ModelNameClash",
         "rename the stage"),
        (setter("metadata", "name", value="p" * 60), "InvalidName", "at most 56 characters"),
        (setter("spec", "stages", 2, "name", value="r" * 60), "InvalidName",
         "at most 54 characters"),
        (setter("metadata", "name", value="9lives"), "InvalidName", "DNS-1035"),
    ],
)
def test_semantic_problems_name_what_to_fix(change, reason, says):
    manifest = example()
    change(manifest)
    body = served(manifest)
    with pytest.raises(InvalidPipeline) as caught:
        parse_pipeline(body)
    assert caught.value.reason == reason
    assert says in caught.value.message


def test_a_field_an_older_crd_did_not_default_takes_the_crds_default():
    body = served(example())
    del body["spec"]["stages"][0]["batching"]
    stage = parse_pipeline(body).stages[0]
    assert (stage.max_batch_size, stage.max_delay_ms) == (8, 2.0)
