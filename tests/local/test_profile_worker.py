"""The measurement worker (`python -m sluice_runtime.measure`) on its own: its rules and
the JSON document it prints for real models."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import onnx
import pytest
from onnx import TensorProto, helper
from sluice_runtime.measure import MeasureError, parse_sizes, settled

from tests.runtime import models


@pytest.mark.parametrize(("latencies", "expected"), [
    ([], False),
    ([1.0, 1.0], False),  # fewer runs than the window
    ([9.0, 1.0, 1.1, 1.2], True),  # a slow first run, then steady
    ([1.0, 1.0, 1.3], False),  # 1.3 > 1.25 x 1.0
    ([1.0, 1.25, 1.1], True),
    ([5.0, 1.0, 1.0, 3.0], False),
])
def test_warm_up_settles_when_the_last_runs_agree(latencies, expected):
    assert settled(latencies) is expected


@pytest.mark.parametrize(("text", "expected"), [("1,4,16", (1, 4, 16)), ("8,1,8", (1, 8))])
def test_sizes(text, expected):
    assert parse_sizes(text, "--batches") == expected


@pytest.mark.parametrize("text", ["", "0", "1,a", "-2"])
def test_bad_sizes(text):
    with pytest.raises(MeasureError, match="--batches"):
        parse_sizes(text, "--batches")


@pytest.fixture(scope="module")
def worker_models(tmp_path_factory):
    out = tmp_path_factory.mktemp("worker-models")
    models.slow(out / "small.onnx", width=64, layers=2)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, out / "fixed.onnx")
    (out / "corrupt.onnx").write_bytes(b"not an onnx model")
    return out


def measure(*args, cache_dir):
    return subprocess.run(
        [sys.executable, "-m", "sluice_runtime.measure", *map(str, args),
         "--seconds-per-batch", "0.05", "--min-samples", "3", "--cache-dir", str(cache_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_document_of_a_batchable_model(worker_models, tmp_path):
    path = worker_models / "small.onnx"
    done = measure(path, "--batches", "1,3,5", "--threads", "1,2", cache_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["format"] == "sluice.measure/v1"
    assert document["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert document["batchable"] is True
    assert document["shared_weights"] is True
    assert document["warnings"] == []
    assert document["threads_available"] == [1, 2]
    assert 0 < document["import_s"] < document["load_s"]
    assert 0 < document["prepare_s"] < document["load_s"]
    assert document["warmup_s"] > 0
    assert document["warmup_runs"] >= 3 * 2 * 2  # each thread count at the smallest and largest
    assert document["rss_mib"] > 10
    assert document["cpu_allocation_cores"] > 0
    assert [(r["batch"], r["threads"]) for r in document["runs"]] == [
        (1, 1), (1, 2), (3, 1), (3, 2), (5, 1), (5, 2)]
    for run in document["runs"]:
        assert len(run["latencies_ms"]) >= 3
        assert all(v > 0 for v in run["latencies_ms"])
    # Weights prepared in the cache given, as the runtime prepares them.
    assert any(tmp_path.glob("prepared/*/weights.bin"))


def test_a_model_without_a_batch_axis_is_measured_at_one_request(worker_models, tmp_path):
    done = measure(worker_models / "fixed.onnx", "--batches", "1,4", "--threads", "1",
                   cache_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["batchable"] is False
    assert [r["batch"] for r in document["runs"]] == [1]


@pytest.mark.parametrize(("name", "extra", "message"), [
    ("absent.onnx", (), "no file at"),
    ("corrupt.onnx", (), "onnxruntime cannot load"),
    ("small.onnx", ("--sha256", "0" * 64), "sha256 is"),
    ("small.onnx", ("--batches", "0"), "--batches expects integers >= 1"),
])
def test_errors_are_one_line_and_status_2(worker_models, tmp_path, name, extra, message):
    done = measure(worker_models / name, *extra, cache_dir=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
