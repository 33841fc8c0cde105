"""The Open Inference Protocol as an unmodified third-party client (tritonclient) sees it."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2
from tritonclient.utils import InferenceServerException

from tests.runtime.harness import infer, service_request
from tests.runtime.models import DATATYPES


@pytest.fixture
def server(start_runtime, example_models, test_models):
    return start_runtime(
        "--model", f"cnn={example_models / 'cnn.onnx'}",
        "--model", f"mlp={example_models / 'mlp.onnx'}",
        "--model", f"passthrough={test_models / 'passthrough.onnx'}",
        "--model", f"typed={test_models / 'typed.onnx'}",
    )


def direct(path, inputs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))


def test_liveness_readiness_and_health(server):
    client = server.client()
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mlp")
    assert server.health() == health_pb2.HealthCheckResponse.SERVING


def test_server_metadata(server):
    metadata = server.client().get_server_metadata()
    assert metadata.name == "sluice"
    assert metadata.version


def test_model_metadata_describes_tensors(server):
    metadata = server.client().get_model_metadata("cnn")
    assert metadata.name == "cnn"
    assert metadata.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("images", "FP32", [-1, 3, 224, 224])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
        ("logits", "FP32", [-1, 100])
    ]


@pytest.mark.parametrize("call", ["get_model_metadata", "is_model_ready"])
def test_unknown_model_is_not_found(server, call):
    with pytest.raises(InferenceServerException) as error:
        getattr(server.client(), call)("no-such-model")
    assert error.value.status() == "StatusCode.NOT_FOUND"


@pytest.mark.parametrize(("model", "input_name", "shape"), [
    ("cnn", "images", (2, 3, 224, 224)),
    ("mlp", "features", (5, 384)),
])
def test_outputs_equal_onnxruntime_run_directly(server, example_models, model, input_name, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    result = infer(server.client(), model, {input_name: x})
    expected = direct(example_models / f"{model}.onnx", {input_name: x})
    for name, value in expected.items():
        np.testing.assert_array_equal(result.as_numpy(name), value)


def sample(datatype, rng):
    dtype = DATATYPES[datatype][1]
    if datatype == "BOOL":
        return rng.integers(0, 2, (2, 3)).astype(bool)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, (2, 3), dtype=dtype, endpoint=True)
    return rng.standard_normal((2, 3)).astype(dtype)


def test_every_datatype_in_raw_contents(server):
    rng = np.random.default_rng(1)
    arrays = {f"in_{t}": sample(t, rng) for t in DATATYPES}
    result = infer(server.client(), "passthrough", arrays)
    for datatype in DATATYPES:
        out = result.as_numpy(f"out_{datatype}")
        assert out.dtype == arrays[f"in_{datatype}"].dtype
        np.testing.assert_array_equal(out, arrays[f"in_{datatype}"])


CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents",
}


def test_every_datatype_in_typed_contents(server):
    rng = np.random.default_rng(2)
    request = service_request("typed")
    arrays = {}
    for datatype, field in CONTENTS_FIELD.items():
        arrays[datatype] = sample(datatype, rng)
        tensor = request.inputs.add(name=f"in_{datatype}", datatype=datatype, shape=[2, 3])
        getattr(tensor.contents, field).extend(arrays[datatype].ravel().tolist())
    response = server.stub().ModelInfer(request, timeout=30)
    by_name = {t.name: (t, raw) for t, raw in
               zip(response.outputs, response.raw_output_contents, strict=True)}
    for datatype, array in arrays.items():
        tensor, raw = by_name[f"out_{datatype}"]
        assert tensor.datatype == datatype
        assert list(tensor.shape) == [2, 3]
        np.testing.assert_array_equal(np.frombuffer(raw, array.dtype).reshape(2, 3), array)


def test_requested_outputs_are_honoured(server):
    arrays = {f"in_{t}": sample(t, np.random.default_rng(3)) for t in DATATYPES}
    result = infer(server.client(), "passthrough", arrays, outputs=["out_INT8", "out_FP64"])
    names = [o.name for o in result.get_response().outputs]
    assert sorted(names) == ["out_FP64", "out_INT8"]
