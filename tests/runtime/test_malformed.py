"""Malformed requests each get the right gRPC status, and the server keeps serving."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from tests.runtime.harness import Runtime, infer
from tests.runtime.models import DATATYPES

INVALID = grpc.StatusCode.INVALID_ARGUMENT
Request = service_pb2.ModelInferRequest


@pytest.fixture(scope="module")
def server(tmp_path_factory, example_models, test_models):
    runtime = Runtime([
        "--model", f"mlp={example_models / 'mlp.onnx'}",
        "--model", f"passthrough={test_models / 'passthrough.onnx'}",
        "--model", f"typed={test_models / 'typed.onnx'}",
        "--model", f"reshaper={test_models / 'reshaper.onnx'}",
        "--model", f"row_sum={test_models / 'row_sum.onnx'}",
    ], tmp_path_factory.mktemp("malformed")).start()
    yield runtime
    runtime.stop()


def mlp(shape=(1, 384), datatype="FP32", raw: bytes | None = None, name="features") -> Request:
    """A request to the MLP with raw contents, correct unless told otherwise."""
    request = Request(model_name="mlp")
    request.inputs.add(name=name, datatype=datatype, shape=list(shape))
    if raw is None:
        count = int(np.prod(shape)) if all(d >= 0 for d in shape) else 0
        raw = np.zeros(count, np.float32).tobytes()
    request.raw_input_contents.append(raw)
    return request


def typed(name: str, datatype: str, field: str, values: list) -> Request:
    request = Request(model_name="typed")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=[1, len(values)])
    getattr(tensor.contents, field).extend(values)
    return request


def edit(request: Request, change: Callable[[Request], object]) -> Request:
    change(request)
    return request


def passthrough(rows_of_bool: int = 1) -> Request:
    request = Request(model_name="passthrough")
    for datatype, (_, dtype) in DATATYPES.items():
        rows = rows_of_bool if datatype == "BOOL" else 1
        request.inputs.add(name=f"in_{datatype}", datatype=datatype, shape=[rows, 3])
        request.raw_input_contents.append(np.zeros((rows, 3), dtype).tobytes())
    return request


def reshaper(shape: list[int]) -> Request:
    request = Request(model_name="reshaper")
    request.inputs.add(name="x", datatype="FP32", shape=[4])
    request.inputs.add(name="shape", datatype="INT64", shape=[2])
    request.raw_input_contents.extend([
        np.arange(4, dtype=np.float32).tobytes(), np.array(shape, np.int64).tobytes()
    ])
    return request


def with_budget(request: Request, param: service_pb2.InferParameter) -> Request:
    request.parameters["sluice-budget-ms"].CopyFrom(param)
    return request


CASES: list[tuple[str, Callable[[], Request], grpc.StatusCode, str]] = [
    ("unknown model", lambda: Request(model_name="nope"), grpc.StatusCode.NOT_FOUND, "nope"),
    ("empty model name", lambda: Request(), INVALID, "model name"),
    ("unknown version", lambda: edit(mlp(), lambda r: setattr(r, "model_version", "7")),
     grpc.StatusCode.NOT_FOUND, "version"),
    ("no inputs", lambda: Request(model_name="mlp"), INVALID, "features"),
    ("unknown input name", lambda: mlp(name="feature"), INVALID, "feature"),
    ("wrong datatype", lambda: mlp(datatype="FP64", raw=bytes(8 * 384)), INVALID, "features"),
    ("unsupported datatype", lambda: mlp(datatype="FP8"), INVALID, "FP8"),
    ("BYTES datatype", lambda: mlp(datatype="BYTES"), INVALID, "BYTES"),
    ("wrong rank", lambda: mlp(shape=(384,)), INVALID, "rank"),
    ("wrong fixed dimension", lambda: mlp(shape=(1, 383)), INVALID, "features"),
    ("raw contents too short", lambda: mlp(raw=bytes(100)), INVALID, "features"),
    ("raw contents too long", lambda: mlp(raw=bytes(4 * 385)), INVALID, "features"),
    ("two raw entries for one input",
     lambda: edit(mlp(), lambda r: r.raw_input_contents.append(b"")), INVALID, "raw"),
    ("raw contents without inputs",
     lambda: Request(model_name="mlp", raw_input_contents=[b"x"]), INVALID, "raw"),
    ("typed contents too few values",
     lambda: edit(mlp(), lambda r: (r.ClearField("raw_input_contents"),
                                    r.inputs[0].contents.fp32_contents.extend([1.0] * 10))),
     INVALID, "features"),
    ("typed contents in the wrong field",
     lambda: edit(mlp(), lambda r: (r.ClearField("raw_input_contents"),
                                    r.inputs[0].contents.int_contents.extend([1] * 384))),
     INVALID, "fp32_contents"),
    ("raw and typed contents together",
     lambda: edit(mlp(), lambda r: r.inputs[0].contents.fp32_contents.extend([1.0] * 384)),
     INVALID, "both"),
    ("no data at all", lambda: edit(mlp(), lambda r: r.ClearField("raw_input_contents")),
     INVALID, "no data"),
    ("negative dimension", lambda: mlp(shape=(-1, 384)), INVALID, "negative"),
    ("zero rows", lambda: mlp(shape=(0, 384)), INVALID, "batch dimension"),
    ("absurdly large shape", lambda: mlp(shape=(1 << 40, 384), raw=b""), INVALID, "too large"),
    ("duplicate input",
     lambda: edit(mlp(), lambda r: (r.inputs.add().CopyFrom(r.inputs[0]),
                                    r.raw_input_contents.append(r.raw_input_contents[0]))),
     INVALID, "more than once"),
    ("input without a name", lambda: mlp(name=""), INVALID, "no name"),
    ("unknown requested output", lambda: edit(mlp(), lambda r: r.outputs.add(name="logits")),
     INVALID, "logits"),
    ("output requested twice",
     lambda: edit(mlp(), lambda r: (r.outputs.add(name="scores"), r.outputs.add(name="scores"))),
     INVALID, "more than once"),
    ("requested output without a name", lambda: edit(mlp(), lambda r: r.outputs.add()),
     INVALID, "no name"),
    ("FP16 in typed contents",
     lambda: typed("in_FP16", "FP16", "fp32_contents", [1.0, 2.0, 3.0]), INVALID, "raw"),
    ("INT8 value out of range", lambda: typed("in_INT8", "INT8", "int_contents", [1, 300, 2]),
     INVALID, "out of range"),
    ("UINT64 in int64_contents",
     lambda: typed("in_UINT64", "UINT64", "int64_contents", [1, 2, 3]), INVALID, "uint64"),
    ("inputs disagree on rows", lambda: passthrough(rows_of_bool=2), INVALID, "batch dimension"),
    ("budget is a string",
     lambda: with_budget(mlp(), service_pb2.InferParameter(string_param="soon")),
     INVALID, "sluice-budget-ms"),
    ("budget is not finite",
     lambda: with_budget(mlp(), service_pb2.InferParameter(double_param=float("nan"))),
     INVALID, "sluice-budget-ms"),
    ("budget is negative (spent upstream)",
     lambda: with_budget(mlp(), service_pb2.InferParameter(int64_param=-5)),
     grpc.StatusCode.DEADLINE_EXCEEDED, "already spent"),
    ("budget already spent",
     lambda: with_budget(mlp(), service_pb2.InferParameter(double_param=0.0)),
     grpc.StatusCode.DEADLINE_EXCEEDED, "mlp"),
    ("variable-width input of wrong rank",
     lambda: edit(Request(model_name="row_sum"), lambda r: (
         r.inputs.add(name="x", datatype="FP32", shape=[1, 2, 2]),
         r.raw_input_contents.append(bytes(16)))),
     INVALID, "rank"),
    ("model fails on this input", lambda: reshaper([3, 3]), grpc.StatusCode.INTERNAL, "reshaper"),
]


@pytest.mark.parametrize(("request_builder", "code", "mentions"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_request_gets_the_right_status(server, request_builder, code, mentions):
    with pytest.raises(grpc.RpcError) as error:
        server.stub().ModelInfer(request_builder(), timeout=30)
    assert error.value.code() == code, error.value.details()
    assert mentions.lower() in error.value.details().lower()


def test_server_still_serves_after_every_malformed_request(server):
    for _, build, _, _ in CASES:
        with pytest.raises(grpc.RpcError):
            server.stub().ModelInfer(build(), timeout=30)
    client = server.client()
    assert client.is_server_live()
    assert client.is_server_ready()
    result = infer(client, "mlp", {"features": np.ones((2, 384), np.float32)})
    assert result.as_numpy("scores").shape == (2, 16)
    ok = infer(client, "reshaper", {"x": np.arange(4, dtype=np.float32),
                                    "shape": np.array([2, 2], np.int64)})
    assert ok.as_numpy("y").shape == (2, 2)
    assert server.process.poll() is None


@pytest.mark.parametrize(("method", "payload"), [
    ("ModelInfer", b"\x0a\xff\xff\xff\xff\x0f"),  # field 1 claims more bytes than follow
    ("ModelInfer", b"\xff\xff\xff"),              # not protobuf at all
    ("ModelMetadata", b"\x0a\x05ab"),
])
def test_bytes_that_are_not_the_request_message_get_invalid_argument(server, method, payload):
    with grpc.insecure_channel(server.url) as channel:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
        with pytest.raises(grpc.RpcError) as error:
            call(payload, timeout=30)
    assert error.value.code() == INVALID, error.value.details()
    assert "not a valid inference." in error.value.details()
    if method == "ModelInfer":
        assert server.metric("sluice_requests_total", model="_unknown",
                             code="INVALID_ARGUMENT") >= 1
    assert server.process.poll() is None
