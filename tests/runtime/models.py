"""Small ONNX models built for tests: each exercises one behaviour of the runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# OIP datatype -> (ONNX element type, numpy dtype)
DATATYPES = {
    "BOOL": (TensorProto.BOOL, np.bool_),
    "INT8": (TensorProto.INT8, np.int8),
    "INT16": (TensorProto.INT16, np.int16),
    "INT32": (TensorProto.INT32, np.int32),
    "INT64": (TensorProto.INT64, np.int64),
    "UINT8": (TensorProto.UINT8, np.uint8),
    "UINT16": (TensorProto.UINT16, np.uint16),
    "UINT32": (TensorProto.UINT32, np.uint32),
    "UINT64": (TensorProto.UINT64, np.uint64),
    "FP16": (TensorProto.FLOAT16, np.float16),
    "FP32": (TensorProto.FLOAT, np.float32),
    "FP64": (TensorProto.DOUBLE, np.float64),
}


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def passthrough(path: Path, datatypes: tuple[str, ...] = tuple(DATATYPES)) -> Path:
    """One input and one output per datatype: ``in_<T>[N,3]`` -> ``out_<T>`` (Identity)."""
    nodes, inputs, outputs = [], [], []
    for name in datatypes:
        elem = DATATYPES[name][0]
        inputs.append(helper.make_tensor_value_info(f"in_{name}", elem, ["N", 3]))
        outputs.append(helper.make_tensor_value_info(f"out_{name}", elem, ["N", 3]))
        nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
    return _save(helper.make_graph(nodes, "passthrough", inputs, outputs), path)


def slow(path: Path, width: int = 512, layers: int = 8, seq: int | None = None) -> Path:
    """``x[N,width]`` -> ``y[N,width]`` (``[N,seq,width]`` with ``seq``) through ``layers``
    MatMuls: cost grows with rows.

    A request with thousands of rows keeps an executor busy long enough to queue others
    behind it, without any sleep in the model.
    """
    shape = ["N", width] if seq is None else ["N", seq, width]
    rng = np.random.default_rng(7)
    weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    nodes, current = [], "x"
    for i in range(layers):
        out = "y" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [current, "w"], [out]))
        current = out
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(weight, "w")],
    )
    return _save(graph, path)


def row_sum(path: Path) -> Path:
    """``x[N,K]`` -> ``s[N,1]`` with K free: requests of different K cannot share a batch."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1)],
        "row_sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "K"])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    return _save(graph, path)


def reshaper(path: Path) -> Path:
    """``x[4]`` reshaped to the ``shape`` input: a bad shape makes onnxruntime fail."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "reshaper",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["A", "B"])],
    )
    return _save(graph, path)


def heavy(path: Path, megabytes: int = 200) -> Path:
    """``x[N,1024]`` times a weight of ``megabytes`` MB: big enough to see weight copies in RSS."""
    rows = megabytes * 1024 * 1024 // (4 * 1024)
    weight = np.random.default_rng(3).standard_normal((1024, rows)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "heavy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", rows])],
        [numpy_helper.from_array(weight, "w")],
    )
    return _save(graph, path)


def spinner(path: Path, width: int = 64) -> Path:
    """``x[N,width], spins[N,1]`` -> ``y[N,width]``: ``max(spins)`` MatMuls in a Loop.

    Its cost depends on the data, not the shape, so the runtime's latency model, learned
    on zero inputs at warm-up, predicts almost nothing for a request that computes for
    seconds: a real way to make queued requests outlive their deadline behind it.
    """
    rng = np.random.default_rng(11)
    weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["y_in", "w"], ["y_out"]),
        ],
        "spin",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("y_in", TensorProto.FLOAT, ["N", width]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("y_out", TensorProto.FLOAT, ["N", width]),
        ],
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["spins"], ["trips"], keepdims=0),
            helper.make_node("Loop", ["trips", "", "x"], ["y"], body=body),
        ],
        "spinner",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width]),
            helper.make_tensor_value_info("spins", TensorProto.INT64, ["N", 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
        [numpy_helper.from_array(weight, "w")],
    )
    return _save(graph, path)


def labels(path: Path) -> Path:
    """String in, string out: ``text[N]`` -> ``intent_id[N]`` (INT64) and ``label[N]``.

    Two ai.onnx.ml LabelEncoders: the shape of an NLP stage whose vocabulary lookup is in
    the graph and whose answer is a label.
    """
    to_id = helper.make_node(
        "LabelEncoder", ["text"], ["intent_id"], domain="ai.onnx.ml",
        keys_strings=["hello", "bye", "thanks", "grüß gott"], values_int64s=[1, 2, 3, 1],
        default_int64=0,
    )
    to_label = helper.make_node(
        "LabelEncoder", ["intent_id"], ["label"], domain="ai.onnx.ml",
        keys_int64s=[0, 1, 2, 3], values_strings=["unknown", "greeting", "farewell", "thanks"],
        default_string="unknown",
    )
    graph = helper.make_graph(
        [to_id, to_label], "labels",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["N"])],
        [helper.make_tensor_value_info("intent_id", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("label", TensorProto.STRING, ["N"])],
    )
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path
