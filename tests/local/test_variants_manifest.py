"""A stage's `variants` list rewritten with measured variants: pure, and the result valid as
the core's parser and the CRD's schema read it."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from sluice_core.spec import parse_pipeline
from sluice_local.variants.manifest import (
    ManifestError,
    VariantEntry,
    model_stem,
    sibling_uri,
    variant_accuracy,
    with_variants,
)

from tests.conftest import ROOT
from tests.operator.crd import schema

SHA = "a" * 64


def schema_errors(obj, node, path="$"):
    """What the CRD's structural schema refuses in ``obj``: undeclared fields, types,
    required fields, patterns, bounds (CEL rules are the API server's: test_variants_crd)."""
    kinds = {"object": dict, "array": list, "string": str, "integer": int,
             "number": (int, float), "boolean": bool}
    if "type" in node and not isinstance(obj, kinds[node["type"]]):
        yield f"{path}: not {node['type']}"
        return
    if isinstance(obj, dict):
        yield from (f"{path}.{key}: required" for key in node.get("required", ())
                    if key not in obj)
        for key, value in obj.items():
            if key not in node.get("properties", {}):
                if node.get("properties") is not None:
                    yield f"{path}.{key}: not declared"
                continue
            yield from schema_errors(value, node["properties"][key], f"{path}.{key}")
    elif isinstance(obj, list):
        if len(obj) > node.get("maxItems", len(obj)):
            yield f"{path}: more than {node['maxItems']} items"
        for i, item in enumerate(obj):
            yield from schema_errors(item, node["items"], f"{path}[{i}]")
    elif isinstance(obj, str):
        if "pattern" in node and not re.search(node["pattern"], obj):
            yield f"{path}: {obj!r} does not match {node['pattern']}"
        if len(obj) > node.get("maxLength", len(obj)):
            yield f"{path}: longer than {node['maxLength']}"
    elif isinstance(obj, int | float) and not node.get("minimum", obj) <= obj <= node.get(
            "maximum", obj):
        yield f"{path}: {obj} out of [{node.get('minimum')}, {node.get('maximum')}]"


def dialogue():
    return yaml.safe_load((ROOT / "examples" / "pipelines" / "dialogue.yaml").read_text())


def test_the_schema_checker_catches_what_the_crd_refuses():
    bad = dialogue()
    bad["spec"]["stages"][0]["variants"] = [
        {"name": "Int8", "accuracy": 1.5, "model": {"uri": "int8.onnx", "sha256": "abc"}},
        {"name": "x"}]
    errors = list(schema_errors(bad, schema()))
    assert len(errors) == 5, errors  # name, accuracy, uri, sha256, and a missing model
    assert list(schema_errors(dialogue(), schema())) == []


def test_variants_are_added_next_to_the_stage_model_with_their_figures():
    entries = [VariantEntry("int8", "policy-int8.onnx", SHA, 0.97),
               VariantEntry("uint8", "policy-uint8.onnx", SHA, 0.99)]
    original = dialogue()
    kept = copy.deepcopy(original)
    updated = with_variants(original, "policy", entries)
    assert original == kept  # pure: the input is not changed
    stage = updated["spec"]["stages"][1]
    assert stage["variants"] == [
        {"name": "int8", "accuracy": 0.97,
         "model": {"uri": "file:///models/policy-int8.onnx", "sha256": SHA}},
        {"name": "uint8", "accuracy": 0.99,
         "model": {"uri": "file:///models/policy-uint8.onnx", "sha256": SHA}}]
    assert updated["spec"]["stages"][0] == original["spec"]["stages"][0]
    assert list(schema_errors(updated, schema())) == []
    pipeline = parse_pipeline(updated)
    assert [v.name for v in pipeline.stage("policy").variants] == ["default", "int8", "uint8"]
    assert pipeline.stage("policy").variant("int8").accuracy == 0.97


def test_a_variant_made_again_replaces_its_entry_and_others_stay():
    manifest = dialogue()
    manifest["spec"]["stages"][0]["variants"] = [
        {"name": "distilled", "accuracy": 0.9, "model": {"uri": "https://m.example/d.onnx"}},
        {"name": "int8", "accuracy": 0.5, "model": {"uri": "file:///models/old.onnx"}}]
    updated = with_variants(manifest, "intent", [VariantEntry("int8", "intent-int8.onnx", SHA,
                                                              0.98)])
    variants = updated["spec"]["stages"][0]["variants"]
    assert [v["name"] for v in variants] == ["distilled", "int8"]
    assert variants[1]["accuracy"] == 0.98
    assert variants[1]["model"]["uri"] == "file:///models/intent-int8.onnx"


def test_no_such_stage_names_the_stages():
    with pytest.raises(ManifestError, match=r"no stage 'nope'.*intent, policy, response"):
        with_variants(dialogue(), "nope", [])


def test_more_than_the_crd_allows_is_refused_before_writing():
    entries = [VariantEntry(f"v{i}", f"m{i}.onnx", SHA, 0.9) for i in range(9)]
    with pytest.raises(ManifestError, match="at most 8"):
        with_variants(dialogue(), "intent", entries)


def test_an_invalid_manifest_is_refused_with_the_field():
    manifest = dialogue()
    manifest["spec"]["slo"]["latencyMs"] = 0
    with pytest.raises(ManifestError, match=r"spec\.slo\.latencyMs"):
        with_variants(manifest, "intent", [])


@pytest.mark.parametrize(("uri", "expected"), [
    ("file:///models/magika.onnx", "file:///models/magika-int8.onnx"),
    ("https://models.example/v3/model.onnx?x=1", "https://models.example/v3/magika-int8.onnx"),
    ("pvc://claim/dir/model.onnx", "pvc://claim/dir/magika-int8.onnx"),
])
def test_a_variant_lives_next_to_the_stage_model(uri, expected):
    assert sibling_uri(uri, "magika-int8.onnx") == expected


@pytest.mark.parametrize(("uri", "stem"), [
    ("file:///models/magika.onnx", "magika"), ("https://m.example/v3/model.onnx?x=1", "model"),
    ("pvc://claim/dir/intent.v2.onnx", "intent.v2")])
def test_variants_are_named_after_the_stage_models_file(uri, stem):
    assert model_stem(uri) == stem


@pytest.mark.parametrize(("stage_accuracy", "agreed", "expected"), [
    (1.0, 0.97, 0.97), (0.9, 0.5, 0.45), (0.8, 1.0, 0.8), (1.0, 0.123456789, 0.1235)])
def test_a_variants_accuracy_is_the_stage_accuracy_scaled_by_agreement(
        stage_accuracy, agreed, expected):
    assert variant_accuracy(stage_accuracy, agreed) == expected
