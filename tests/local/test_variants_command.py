"""`sluice variants` for real on Magika's trained classifier: quantized files, their
agreement, the updated manifest, the profile measured under real CPU quotas, one-line
errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from sluice_core.profiles import load_profile
from sluice_core.spec import parse_pipeline

from tests.conftest import ROOT
from tests.local.test_variants_manifest import schema_errors
from tests.operator.crd import schema
from tests.runtime.cgroups import scratch_cgroup
from tests.trained import magika_model

MANIFEST = ROOT / "examples" / "pipelines" / "magika.yaml"
STAGE = "content-type"
#: A tiny grid and few samples: the test checks behaviour, not the figures.
FAST = ["--samples-count", "48", "--int-range", "0:257", "--cores", "1", "--batches", "1,4",
        "--seconds-per-point", "0.05", "--min-samples", "2"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sluice(*args):
    return subprocess.run([sys.executable, "-m", "sluice_local", *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One real run: int8 and uint8 variants of Magika, measured in a quota cgroup."""
    out = tmp_path_factory.mktemp("magika-variants")
    with scratch_cgroup() as (root, _):
        done = sluice("variants", magika_model(), "--manifest", MANIFEST, "--stage", STAGE,
                      "--out", out, "--variants", "int8,uint8", "--json",
                      "--cgroup-root", root, *FAST)
    assert done.returncode == 0, done.stderr
    return out, json.loads(done.stdout)


def test_the_int8_variant_exists_and_is_smaller(made):
    out, report = made
    by_name = {v["name"]: v for v in report["variants"]}
    assert list(by_name) == ["default", "int8", "uint8"]
    int8 = out / "magika-int8.onnx"
    onnx.checker.check_model(str(int8))
    assert by_name["int8"]["file"] == str(int8)
    assert by_name["int8"]["size_bytes"] == int8.stat().st_size
    assert int8.stat().st_size < magika_model().stat().st_size / 2  # weights in a byte each
    assert by_name["default"]["size_bytes"] == magika_model().stat().st_size
    assert by_name["int8"]["size_ratio"] == pytest.approx(
        int8.stat().st_size / magika_model().stat().st_size, abs=1e-3)
    assert by_name["int8"]["sha256"] == sha256(int8)
    quantized = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert "DynamicQuantizeLinear" in quantized


def test_agreement_is_a_figure_in_0_1_on_the_stated_samples(made):
    _, report = made
    assert report["kind"] == "classifier"
    assert report["samples"] == {"count": 48, "source": "generated", "seed": 0,
                                 "int_range": [0, 257]}
    assert "not task accuracy" in report["note"]
    default, *variants = report["variants"]
    assert default["agreement"] == 1.0
    assert default["relative_error"] == 0.0
    for variant in variants:
        assert 0.0 <= variant["agreement"] <= 1.0
        assert 0.0 <= variant["relative_error"] < 0.5
        assert variant["accuracy"] == round(variant["agreement"], 4)  # stage accuracy is 1


def test_the_manifest_gets_the_variants_and_stays_valid(made):
    out, report = made
    written = out / "magika.yaml"
    assert report["manifest"] == str(written)
    manifest = yaml.safe_load(written.read_text())
    assert list(schema_errors(manifest, schema())) == []
    stage = parse_pipeline(manifest).stage(STAGE)
    assert [v.name for v in stage.variants] == ["default", "int8", "uint8"]
    int8 = stage.variant("int8")
    assert int8.model.uri == "file:///models/magika-int8.onnx"
    assert int8.model.sha256 == sha256(out / "magika-int8.onnx")
    figures = {v["name"]: v["accuracy"] for v in report["variants"]}
    assert int8.accuracy == figures["int8"]
    original = yaml.safe_load(MANIFEST.read_text())
    del manifest["spec"]["stages"][0]["variants"]
    assert manifest == original  # nothing else changed


def test_the_profile_has_every_variant_on_the_grid(made):
    out, report = made
    assert report["profile"] == str(out / "magika.profile.json")
    profile = load_profile(out / "magika.profile.json")
    assert profile.pipeline == "magika"
    stage = profile.stage(STAGE)
    assert list(stage.variants) == ["default", "int8", "uint8"]
    for name, model in stage.variants.items():
        assert model.cores_measured == (1.0,)
        assert model.batches_measured == (1, 4, 8)  # and the stage's maxBatchSize
        assert model.accuracy == next(v["accuracy"] for v in report["variants"]
                                      if v["name"] == name)
    assert stage.variant("int8").sha256 == sha256(out / "magika-int8.onnx")
    assert stage.variant("default").sha256 == sha256(magika_model())
    assert profile.host["cgroup"] in ("v1", "v2")
    latency = {(p["cores"], p["batch"]) for p in report["variants"][1]["latency"]}
    assert latency == {(1.0, 1), (1.0, 4), (1.0, 8)}


def test_without_a_manifest_the_table_names_its_samples(tmp_path):
    samples = tmp_path / "features.npy"
    np.save(samples, np.random.default_rng(1).integers(0, 257, (20, 2048)).astype(np.int32))
    done = sluice("variants", magika_model(), "--out", tmp_path / "out", "--variants", "int8",
                  "--samples", samples, "--no-profile")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["variant", "size", "MB", "size"]
    assert lines[1].split()[0] == "default"
    assert lines[2].split()[0] == "int8"
    assert f"20 samples from {samples}" in done.stdout
    assert "not task accuracy" in done.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model-int8.onnx"]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "corrupt.onnx").write_bytes(b"not an onnx model")
    np.save(folder / "short.npy", np.zeros((4, 100), np.int32))
    manifest = yaml.safe_load(MANIFEST.read_text())
    manifest["spec"]["stages"][0]["model"]["sha256"] = "0" * 64
    (folder / "pinned.yaml").write_text(yaml.safe_dump(manifest))
    return folder


@pytest.mark.parametrize(("args", "says"), [
    (("{bad}/corrupt.onnx",), "{bad}/corrupt.onnx is not an ONNX model onnxruntime can load"),
    (("{bad}/missing.onnx",), "no model file at {bad}/missing.onnx"),
    (("{model}", "--manifest", str(MANIFEST), "--stage", "nope"),
     "no stage 'nope' in pipeline magika (stages: content-type)"),
    (("{model}", "--stage", STAGE), "--stage needs --manifest"),
    (("{model}", "--manifest", str(MANIFEST)), "--manifest needs --stage"),
    (("{model}", "--manifest", "{bad}/pinned.yaml", "--stage", STAGE),
     "is not the model stage content-type pins (sha256 000000"),
    (("{model}", "--samples", "{bad}/short.npy"),
     "input bytes: samples of shape (4, 100) do not fit the model's (N, 2048)"),
    (("{model}", "--variants", "int4"), "unknown variant 'int4' (known: int8, "),
    (("{model}", "--int-range", "5:5"), "--int-range LOW:HIGH needs LOW < HIGH"),
])
def test_bad_input_is_one_line_and_exit_2(bad_inputs, tmp_path, args, says):
    values = {"bad": bad_inputs, "model": magika_model()}
    argv = [a.format(**values) for a in args]
    done = sluice("variants", *argv, "--out", tmp_path, "--no-profile")
    assert done.returncode == 2, done.stdout
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("sluice variants: error: ")
    assert says.format(**values) in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written
