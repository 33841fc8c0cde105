"""String tensors (BYTES): raw length-prefixed elements and typed bytes_contents, in and out."""

from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from tests.runtime.harness import infer

TEXTS = ["hello", "bye", "grüß gott", "", "something else"]
EXPECTED_IDS = [1, 2, 1, 0, 0]
EXPECTED_LABELS = [b"greeting", b"farewell", b"greeting", b"unknown", b"unknown"]


@pytest.fixture
def server(start_runtime, test_models):
    return start_runtime("--model", f"labels={test_models / 'labels.onnx'}",
                         "--max-batch-size", "16", "--max-delay-ms", "5")


def text_array(texts) -> np.ndarray:
    return np.array([t.encode() for t in texts], dtype=np.object_)


def test_metadata_shows_bytes_tensors(server):
    metadata = server.client().get_model_metadata("labels")
    assert [(t.name, t.datatype) for t in metadata.inputs] == [("text", "BYTES")]
    assert [(t.name, t.datatype) for t in metadata.outputs] == [
        ("intent_id", "INT64"), ("label", "BYTES")]


def test_strings_in_and_out_through_tritonclient(server):
    result = infer(server.client(), "labels", {"text": text_array(TEXTS)})
    assert result.as_numpy("intent_id").tolist() == EXPECTED_IDS
    assert result.as_numpy("label").tolist() == EXPECTED_LABELS


def test_concurrent_string_requests_are_batched_and_split_back(server):
    from concurrent.futures import ThreadPoolExecutor

    def call(i):
        texts = [TEXTS[(i + k) % len(TEXTS)] for k in range(1 + i % 3)]
        got = infer(server.client(), "labels", {"text": text_array(texts)}).as_numpy("label")
        return texts, got.tolist()

    with ThreadPoolExecutor(12) as pool:
        for texts, labels in pool.map(call, range(36)):
            assert labels == [EXPECTED_LABELS[TEXTS.index(t)] for t in texts]
    assert server.metric("sluice_batch_size_sum", model="labels") > server.metric(
        "sluice_batch_size_count", model="labels")  # some batches held several requests


def bytes_request(**fields) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="labels")
    request.inputs.add(name="text", datatype="BYTES", shape=[2], **fields)
    return request


def raw_elements(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def test_typed_bytes_contents_are_accepted(server):
    request = bytes_request(contents=service_pb2.InferTensorContents(
        bytes_contents=[b"thanks", b"bye"]))
    response = server.stub().ModelInfer(request, timeout=30)
    names = [o.name for o in response.outputs]
    label = response.raw_output_contents[names.index("label")]
    assert label == raw_elements(b"thanks", b"farewell")


@pytest.mark.parametrize(("raw", "mentions"), [
    (raw_elements(b"hello"), "hold 1 element,"),                      # one short
    (raw_elements(b"hello", b"bye", b"x"), "hold 3 elements"),        # one too many
    (raw_elements(b"hello") + struct.pack("<I", 99) + b"bye", "runs past"),  # bad length
    (b"\x01\x00", "runs past"),                                          # truncated prefix
    (raw_elements(b"hello", b"\xff\xfe"), "UTF-8"),                   # not text
])
def test_malformed_bytes_get_invalid_argument(server, raw, mentions):
    request = bytes_request()
    request.raw_input_contents.append(raw)
    with pytest.raises(grpc.RpcError) as error:
        server.stub().ModelInfer(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert mentions in error.value.details()
