"""The one pipeline spec: the CRD's defaults and rules, for manifests no API server checked."""

import copy

import pytest
from sluice_core.spec import (
    DEFAULT_VARIANT,
    Bounds,
    SpecError,
    load_pipeline,
    parse_pipeline,
)

from tests.operator.crd import EXAMPLE_PATH, example, served, setter
from tests.spec_cases import INVALID


def test_the_example_parses_with_the_crds_defaults():
    pipeline = load_pipeline(EXAMPLE_PATH)
    assert pipeline.name == "dialogue"
    assert (pipeline.latency_ms, pipeline.percentile, pipeline.slo_quantile) == (100, 99.0, 0.99)
    assert [s.name for s in pipeline.stages] == ["intent", "policy", "response"]
    intent = pipeline.stages[0]
    assert intent.uri == "file:///models/intent.onnx"
    assert intent.cpu == Bounds("1", "500m", "2")
    assert (intent.cpu.min_value, intent.cpu.max_value) == (0.5, 2.0)
    assert (intent.min_replicas, intent.max_replicas) == (1, 4)
    assert (pipeline.stages[2].max_batch_size, pipeline.stages[2].max_delay_ms) == (16, 5.0)
    assert [v.name for v in intent.variants] == [DEFAULT_VARIANT]


def test_defaults_equal_what_the_api_server_fills_in():
    minimal = {"metadata": {"name": "tiny"},
               "spec": {"slo": {"latencyMs": 50},
                        "stages": [{"name": "only", "model": {"uri": "file:///m.onnx"}}]}}
    assert parse_pipeline(minimal) == parse_pipeline(served(copy.deepcopy(minimal),
                                                            namespace="default", uid="",
                                                            generation=0))
    stage = parse_pipeline(minimal).stages[0]
    assert (stage.max_batch_size, stage.max_delay_ms, stage.accuracy) == (8, 2.0, 1.0)
    assert stage.cpu == Bounds("1", "250m", "2")
    assert stage.memory == Bounds("512Mi", "256Mi", "1Gi")


def test_a_partly_given_resource_takes_the_other_defaults():
    manifest = example()
    manifest["spec"]["stages"][0]["resources"] = {"cpu": {"max": "4"}}
    assert parse_pipeline(manifest).stages[0].cpu == Bounds("1", "250m", "4")


@pytest.mark.parametrize(("change", "says"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_everything_the_api_server_refuses_is_refused(change, says):
    manifest = example()
    change(manifest)
    with pytest.raises(SpecError) as caught:
        parse_pipeline(manifest)
    # The field the API server names is the one the core names (or inside it).
    api_field = says.split(":")[0].split(" ")[0]
    if api_field.startswith(("spec.", "metadata.")):
        assert caught.value.field.startswith(api_field.split("[")[0]), caught.value.message


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (setter("spec", "stages", 0, "modle", value={"uri": "file:///m"}),
         "spec.stages[0].modle", "unknown field"),
        (setter("spec", "slo", "latencyMs", value="100"), "spec.slo.latencyMs",
         "must be an integer"),
        (setter("spec", "stages", 0, "resources", "cpu", "min", value="1500m"),
         "spec.stages[0].resources.cpu.min", "cpu.min (1500m) must not exceed cpu.initial (1)"),
        (setter("spec", "stages", 0, "name", value="dialogue"), "spec.stages[0].name",
         "rename the stage"),
        (setter("spec", "slo", "minAccuracy", value=0.9), "spec.slo.minAccuracy",
         "exceeds the best end-to-end accuracy"),
        (setter("spec", "stages", 0, "variants",
                value=[{"name": "default", "model": {"uri": "file:///a.onnx"}}]),
         "spec.stages[0].variants", "not 'default'"),
        (setter("spec", value=[]), "spec", "must be a mapping"),
    ],
)
def test_errors_name_the_field_and_what_to_fix(change, field, says):
    manifest = example()
    for stage in manifest["spec"]["stages"]:
        stage["accuracy"] = 0.9
    change(manifest)
    with pytest.raises(SpecError) as caught:
        parse_pipeline(manifest)
    assert caught.value.field == field
    assert says in caught.value.message


def test_variants_and_the_accuracy_floor():
    manifest = example()
    manifest["spec"]["slo"]["minAccuracy"] = 0.8
    manifest["spec"]["stages"][2]["accuracy"] = 0.95
    manifest["spec"]["stages"][2]["variants"] = [
        {"name": "small", "accuracy": 0.85, "model": {"uri": "file:///models/small.onnx"}}]
    pipeline = parse_pipeline(manifest)
    response = pipeline.stage("response")
    assert [(v.name, v.accuracy) for v in response.variants] == [
        ("default", 0.95), ("small", 0.85)]
    assert response.variant("small").model.uri == "file:///models/small.onnx"
    assert pipeline.min_accuracy == 0.8


def test_an_unreadable_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_pipeline(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_pipeline(broken)
