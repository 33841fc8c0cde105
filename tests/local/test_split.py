"""``sluice split``: real models cut into parts whose chain answers as the whole model does,
with a manifest the CRD accepts, and one-line refusals where no valid cut exists."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from sluice_core.spec import parse_pipeline
from sluice_local.cli import main

from tests.conftest import ROOT
from tests.operator.crd import schema, served
from tests.operator.test_crd import unknown_fields
from tests.runtime.models import _save as save_model
from tests.trained import magika_model

#: Chained parts equal the whole model within this (float32; integers exactly), and
#: exactly without graph optimisation (onnxruntime's fusions across a cut round apart).
RTOL, ATOL = 1e-5, 1e-5
MIB = 1 << 20


def sluice_split(*args: object) -> tuple[int, str, str]:
    """Run ``sluice split ARGS`` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(["split", *map(str, args)])
        except SystemExit as exc:  # argparse's usage errors
            status = int(exc.code or 0)
    return status, out.getvalue(), err.getvalue()


def split_json(model: Path, out: Path, *args: object) -> dict:
    """A successful split's JSON report."""
    status, stdout, stderr = sluice_split(model, "--out", out, "--json", *args)
    assert status == 0, stderr
    return json.loads(stdout)


def build_skip_model(path: Path) -> Path:
    """An MLP whose first activation skips four layers to an Add, a weight used by two
    layers far apart, and an output reshaped with the input's batch size read by Shape
    at the very start (as exporters write dynamic batch sizes)."""
    rng = np.random.default_rng(7)

    def weight(name: str, rows: int, cols: int) -> onnx.TensorProto:
        data = rng.standard_normal((rows, cols)) / np.sqrt(rows)
        return numpy_helper.from_array(data.astype(np.float32), name)

    def const(name: str, values: list[int]) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(values, dtype=np.int64), name)

    def node(op: str, inputs: list[str], output: str) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [output], name=output)

    layers = [node("Shape", ["x"], "x_shape"),
              node("Slice", ["x_shape", "zero", "one"], "rows"),
              node("Concat", ["rows", "four_four"], "y_shape"),
              node("MatMul", ["x", "w_in"], "stem_mm"), node("Relu", ["stem_mm"], "stem")]
    layers[2].attribute.append(helper.make_attribute("axis", 0))
    previous = "stem"
    for i, w in enumerate(("w_shared", "w1", "w2", "w_shared"), start=1):
        layers += [node("MatMul", [previous, w], f"h{i}_mm"), node("Relu", [f"h{i}_mm"], f"h{i}")]
        previous = f"h{i}"
    layers += [node("Add", [previous, "stem"], "joined"),
               node("MatMul", ["joined", "w_out"], "out16"),
               node("Reshape", ["out16", "y_shape"], "y")]
    graph = helper.make_graph(
        layers, "skip",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 4])],
        [weight("w_in", 16, 32), weight("w_shared", 32, 32), weight("w1", 32, 32),
         weight("w2", 32, 32), weight("w_out", 32, 16), const("zero", [0]), const("one", [1]),
         const("four_four", [4, 4])],
    )
    return save_model(graph, path)


@pytest.fixture(scope="module")
def models(example_models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three models split here: the example CNN (residual blocks), the synthetic skip
    model and Magika's trained classifier."""
    return {"cnn": example_models / "cnn.onnx",
            "skip": build_skip_model(tmp_path_factory.mktemp("skip") / "skip.onnx"),
            "magika": magika_model()}


def magika_rows() -> np.ndarray:
    """Real content: the first 2048 bytes of files of this repository, 256 as padding."""
    rows = []
    for name in ("README.md", "pyproject.toml", "Makefile"):
        data = np.frombuffer((ROOT / name).read_bytes()[:2048], dtype=np.uint8)
        rows.append(np.pad(data.astype(np.int32), (0, 2048 - data.size), constant_values=256))
    return np.stack(rows)


def sample(key: str) -> dict[str, np.ndarray]:
    """Three rows for each model's input."""
    rng = np.random.default_rng(3)
    if key == "magika":
        return {"bytes": magika_rows()}
    if key == "cnn":
        return {"images": rng.standard_normal((3, 3, 224, 224)).astype(np.float32)}
    return {"x": rng.standard_normal((3, 16)).astype(np.float32)}


def session_of(path: Path, optimise: bool = True) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if not optimise:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def whole(model: Path, feed: dict[str, np.ndarray], optimise: bool = True
          ) -> dict[str, np.ndarray]:
    session = session_of(model, optimise)
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed),
                    strict=True))


def chained(parts: list[Path], feed: dict[str, np.ndarray], optimise: bool = True
            ) -> dict[str, np.ndarray]:
    """Each part fed the previous part's outputs by name, as the runtime wires stages."""
    values = feed
    for path in parts:
        session = session_of(path, optimise)
        wanted = [i.name for i in session.get_inputs()]
        assert set(wanted) <= set(values), f"{path.name} takes {wanted}, given {list(values)}"
        outputs = session.run(None, {name: values[name] for name in wanted})
        values = dict(zip([o.name for o in session.get_outputs()], outputs, strict=True))
    return values


def assert_equal_outputs(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, expected in want.items():
        assert got[name].dtype == expected.dtype
        np.testing.assert_allclose(got[name], expected, rtol=RTOL, atol=ATOL, err_msg=name)


def part_files(report: dict) -> list[Path]:
    return [Path(p["file"]) for p in report["parts"]]


@pytest.fixture(scope="module")
def split_reports(models, tmp_path_factory) -> dict[tuple[str, int], dict]:
    """Each model split (by measured latency) into 2 and 4 parts, once for this module."""
    reports = {}
    for key, model in models.items():
        for parts in (2, 4):
            out = tmp_path_factory.mktemp(f"{key}-{parts}")
            reports[key, parts] = split_json(model, out, "--parts", parts, "--batch", 2)
    return reports


@pytest.mark.parametrize("parts", [2, 4])
@pytest.mark.parametrize("key", ["cnn", "skip", "magika"])
def test_the_chained_parts_answer_as_the_whole_model(models, split_reports, key, parts):
    report = split_reports[key, parts]
    files = part_files(report)
    assert len(files) == parts
    assert [f.name for f in files] == [f"{key.replace('magika', 'model')}-part{k}.onnx"
                                       for k in range(1, parts + 1)]
    feed = sample(key)
    assert_equal_outputs(chained(files, feed), whole(models[key], feed))
    exact = chained(files, feed, optimise=False)
    for name, expected in whole(models[key], feed, optimise=False).items():
        np.testing.assert_array_equal(exact[name], expected)
    # The command checked the same itself, on its own inputs, and says by how much.
    check = report["verification"]
    assert (check["rtol"], check["atol"]) == (RTOL, ATOL)
    assert all(diff <= ATOL + RTOL for diff in check["max_abs_diff"].values())
    assert all(diff == 0 for diff in check["max_abs_diff_unoptimised"].values())


@pytest.mark.parametrize("key", ["cnn", "skip", "magika"])
def test_what_crosses_each_cut_is_what_the_parts_hand_on(models, split_reports, key):
    report = split_reports[key, 4]
    sessions = [ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
                for f in part_files(report)]
    original = ort.InferenceSession(str(models[key]), providers=["CPUExecutionProvider"])
    assert [i.name for i in sessions[0].get_inputs()] == [i.name for i in original.get_inputs()]
    assert [o.name for o in sessions[-1].get_outputs()] == \
        [o.name for o in original.get_outputs()]
    for cut, before, after in zip(report["cuts"], sessions[:-1], sessions[1:], strict=True):
        names = [t["name"] for t in cut["tensors"]]
        assert [o.name for o in before.get_outputs()] == names
        assert [i.name for i in after.get_inputs()] == names
        for tensor, declared in zip(cut["tensors"], after.get_inputs(), strict=True):
            assert tensor["shape"][0] == -1  # the batch axis, free
            assert isinstance(declared.shape[0], str)
            itemsize = np.dtype(tensor["dtype"]).itemsize
            assert tensor["bytes_per_row"] == itemsize * math.prod(tensor["shape"][1:])
        assert cut["bytes_per_row"] == sum(t["bytes_per_row"] for t in cut["tensors"])


@pytest.mark.parametrize("parts", [2, 4])
def test_magikas_batch_size_is_rebuilt_in_each_part_not_its_input_carried(split_reports,
                                                                          parts):
    """Magika reads its input's shape at its first nodes and uses it to its last: later
    parts take the rows from what crosses into them instead of carrying the 8 KiB input."""
    for cut in split_reports["magika", parts]["cuts"]:
        assert "bytes" not in [t["name"] for t in cut["tensors"]]
        assert len(cut["tensors"]) == 1


def skip_positions(model: Path) -> tuple[int, int]:
    """The positions (node indices) where the skip tensor is made and read back."""
    names = [n.name for n in onnx.load(model).graph.node]
    return names.index("stem"), names.index("joined")


def test_a_skip_connection_is_carried_across_every_cut_it_spans(models, tmp_path):
    report = split_json(models["skip"], tmp_path, "--parts", 4, "--estimate")
    made, read = skip_positions(models["skip"])
    positions = [cut["position"] for cut in report["cuts"]]
    assert any(made < p <= read for p in positions)  # the estimate cuts inside the span
    for cut in report["cuts"]:
        names = [t["name"] for t in cut["tensors"]]
        assert ("stem" in names) == (made < cut["position"] <= read), cut
        # Later parts read only x's shape (its rows, rebuilt there), never x itself.
        assert "x" not in names
    feed = sample("skip")
    assert_equal_outputs(chained(part_files(report), feed), whole(models["skip"], feed))


def test_a_weight_used_on_both_sides_of_a_cut_is_in_each_part(models, tmp_path):
    report = split_json(models["skip"], tmp_path, "--parts", 4, "--estimate")
    parts = [onnx.load(f) for f in part_files(report)]
    using = [k for k, part in enumerate(parts)
             if {"h1_mm", "h4_mm"} & {n.name for n in part.graph.node}]
    assert len(using) == 2  # the two layers sharing the weight landed in different parts
    for k in using:
        assert "w_shared" in {i.name for i in parts[k].graph.initializer}
    for part in parts:  # and no part holds a weight it does not use
        used = {name for n in part.graph.node for name in n.input}
        assert {i.name for i in part.graph.initializer} <= used


# The CRD's openAPIV3Schema, checked as the API server's structural validation checks
# it (the CEL rules are parse_pipeline's, tests/core/test_spec.py holds the two alike).
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool,
          "integer": int, "number": (int, float)}


def schema_errors(obj, node, path="$"):
    """Where ``obj`` breaks the OpenAPI schema ``node``: types, enums, patterns, bounds,
    required fields; recursively."""
    if node.get("x-kubernetes-int-or-string"):
        if not isinstance(obj, int | str) or isinstance(obj, bool):
            yield f"{path}: must be an integer or a string"
        return
    if "anyOf" in node and all(list(schema_errors(obj, alt, path)) for alt in node["anyOf"]):
        yield f"{path}: matches none of anyOf"
    kind = node.get("type")
    if kind is not None and (not isinstance(obj, _TYPES[kind])
                             or (isinstance(obj, bool) and kind != "boolean")):
        yield f"{path}: must be {kind}, got {obj!r}"
        return
    if "enum" in node and obj not in node["enum"]:
        yield f"{path}: {obj!r} not in {node['enum']}"
    if isinstance(obj, str):
        if "pattern" in node and not re.search(node["pattern"], obj):
            yield f"{path}: {obj!r} does not match {node['pattern']}"
        if len(obj) > node.get("maxLength", math.inf) or len(obj) < node.get("minLength", 0):
            yield f"{path}: length {len(obj)} out of bounds"
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        if obj < node.get("minimum", -math.inf) or obj > node.get("maximum", math.inf):
            yield f"{path}: {obj} out of [{node.get('minimum')}, {node.get('maximum')}]"
        if "exclusiveMinimum" in node and obj <= node["exclusiveMinimum"]:
            yield f"{path}: {obj} must exceed {node['exclusiveMinimum']}"
    if isinstance(obj, list):
        if len(obj) > node.get("maxItems", math.inf) or len(obj) < node.get("minItems", 0):
            yield f"{path}: {len(obj)} items out of bounds"
        for i, item in enumerate(obj):
            yield from schema_errors(item, node.get("items", {}), f"{path}[{i}]")
    if isinstance(obj, dict):
        for key in node.get("required", []):
            if key not in obj:
                yield f"{path}.{key}: required"
        for key, value in obj.items():
            if key in node.get("properties", {}):
                yield from schema_errors(value, node["properties"][key], f"{path}.{key}")


def test_schema_errors_finds_what_the_schema_forbids():
    """The checker above is not vacuous: it finds each kind of mistake."""
    manifest = yaml.safe_load((ROOT / "examples" / "pipelines" / "dialogue.yaml").read_text())
    assert list(schema_errors(manifest, schema())) == []
    manifest["spec"]["slo"]["latencyMs"] = 0
    manifest["spec"]["composition"] = "sharded"
    manifest["spec"]["stages"][0]["name"] = "Part1"
    del manifest["spec"]["stages"][1]["model"]
    manifest["spec"]["stages"][2]["batching"]["maxBatchSize"] = "8"
    found = list(schema_errors(manifest, schema()))
    assert len(found) == 5, found


def test_the_manifest_chains_the_parts_and_the_crd_accepts_it(models, split_reports):
    report = split_reports["cnn", 4]
    path = Path(report["manifest"])
    manifest = yaml.safe_load(path.read_text())
    assert path.name == "cnn.yaml"
    assert list(schema_errors(manifest, schema())) == []
    assert list(unknown_fields(manifest, schema())) == []
    pipeline = parse_pipeline(served(manifest))
    assert pipeline.name == "cnn"
    assert pipeline.composition == "isolated"
    assert [s.name for s in pipeline.stages] == ["part1", "part2", "part3", "part4"]
    for stage, part in zip(pipeline.stages, report["parts"], strict=True):
        assert stage.uri == f"file:///models/cnn-{stage.name}.onnx" == part["uri"]
        assert stage.sha256 == hashlib.sha256(Path(part["file"]).read_bytes()).hexdigest()


def test_the_manifest_takes_the_name_uris_slo_and_composition_given(models, tmp_path):
    report = split_json(models["skip"], tmp_path, "--parts", 2, "--estimate",
                        "--name", "skipper", "--uri-prefix", "pvc://models/split/",
                        "--slo-ms", 40, "--composition", "fused")
    manifest = yaml.safe_load((tmp_path / "skipper.yaml").read_text())
    assert list(schema_errors(manifest, schema())) == []
    pipeline = parse_pipeline(served(manifest))
    assert (pipeline.name, pipeline.latency_ms, pipeline.composition) == ("skipper", 40, "fused")
    assert [s.uri for s in pipeline.stages] == [
        "pvc://models/split/skipper-part1.onnx", "pvc://models/split/skipper-part2.onnx"]
    assert [Path(p["file"]).name for p in report["parts"]] == [
        "skipper-part1.onnx", "skipper-part2.onnx"]


def test_the_table_names_every_cut_and_part(models, tmp_path):
    status, stdout, stderr = sluice_split(models["skip"], "--parts", 2, "--out", tmp_path,
                                          "--batch", 2)
    assert status == 0, stderr
    report = split_json(models["skip"], tmp_path / "again", "--parts", 2, "--batch", 2)
    lines = stdout.splitlines()
    part_lines = [line for line in lines if re.match(r"\s*[12]\s+\d+\s", line)]
    assert len(part_lines) >= 2
    for cut in report["cuts"]:
        for tensor in cut["tensors"]:
            assert tensor["name"] in stdout
    assert "skip.yaml" in stdout
    assert "rtol 1e-05" in stdout


def tiny_model(path: Path, *, batch: str | int = "N", scale_input: bool = False) -> Path:
    """x -> Relu -> Relu (-> Mul by a second, batchless input) -> y."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])]
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"])]
    if scale_input:
        inputs.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]))
        nodes.append(helper.make_node("Mul", ["b", "scale"], ["y"]))
    else:
        nodes.append(helper.make_node("Relu", ["b"], ["y"]))
    graph = helper.make_graph(nodes, "tiny", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])])
    return save_model(graph, path)


@pytest.mark.parametrize(("make", "args", "says"), [
    (tiny_model, ("--parts", 4),
     "tiny.onnx cannot be cut into 4 parts: it has 2 valid cut points (at most 3 parts)"),
    (lambda p: tiny_model(p, batch=1), ("--parts", 2),
     "tiny.onnx has no valid cut: the model's input 'x' has no batch axis"),
    (lambda p: tiny_model(p, scale_input=True), ("--parts", 2),
     "tiny.onnx has no valid cut: the model's input 'scale' has no batch axis"),
    (tiny_model, ("--parts", "auto"), "--parts auto needs --max-part-ms or --max-part-mib"),
    (tiny_model, ("--parts", 2, "--max-part-mib", 1),
     "--max-part-ms and --max-part-mib choose the number of parts: give --parts auto"),
    (tiny_model, ("--parts", "auto", "--max-part-ms", 1, "--estimate"),
     "--max-part-ms judges measured latency: drop --estimate"),
    (tiny_model, ("--parts", 17), "argument --parts: at most 16 parts"),
    (tiny_model, ("--parts", 0), "argument --parts: 0 is not a number of parts"),
    (lambda p: (p.write_text("not a model"), p)[1], ("--parts", 2), "cannot read"),
    (tiny_model, ("--parts", 2, "--name", "Tiny_Model"), "metadata.name"),
])
def test_impossible_splits_are_refused_in_one_line(tmp_path, make, args, says):
    model = make(tmp_path / "tiny.onnx")
    status, stdout, stderr = sluice_split(model, "--out", tmp_path / "out", *args)
    assert status == 2
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("sluice split: error: ")
    assert says in stderr
    assert not list((tmp_path / "out").glob("*.onnx"))


def test_auto_takes_the_fewest_parts_within_the_weights_limit(models, tmp_path):
    cnn = models["cnn"]
    total_bytes = sum(numpy_helper.to_array(i).nbytes for i in onnx.load(cnn).graph.initializer)
    report = split_json(cnn, tmp_path / "3", "--parts", "auto", "--max-part-mib", 3,
                        "--estimate")
    assert len(report["parts"]) >= math.ceil(total_bytes / (3 * MIB)) >= 2
    assert all(p["weights_bytes"] <= 3 * MIB for p in report["parts"])
    assert len(split_json(cnn, tmp_path / "all", "--parts", "auto", "--max-part-mib", 1000,
                          "--estimate")["parts"]) == 1


def test_auto_takes_one_part_when_the_whole_model_is_within_the_latency_limit(models,
                                                                                 tmp_path):
    report = split_json(models["skip"], tmp_path, "--parts", "auto", "--max-part-ms", 1e6)
    assert len(report["parts"]) == 1
    feed = sample("skip")
    assert_equal_outputs(chained(part_files(report), feed), whole(models["skip"], feed))


@pytest.mark.parametrize(("limit", "says"), [
    (("--max-part-mib", 2, "--estimate"), "within 2 MiB of weights"),
    (("--max-part-ms", 1e-9), "within 1e-09 ms"),
])
def test_auto_refuses_limits_no_split_meets(models, tmp_path, limit, says):
    status, _, stderr = sluice_split(models["cnn"], "--out", tmp_path, "--parts", "auto",
                                     *limit, "--batch", 1)
    assert status == 2
    assert len(stderr.strip().splitlines()) == 1
    assert "no split into at most 16 parts keeps every part " + says in stderr
