"""Open Inference Protocol messages to and from protocol-neutral requests and arrays.

Decoding validates everything that can be checked without the model's signature
(datatypes, shapes, content sizes); :func:`signature.validate_request` checks the rest.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from sluice_core.invocation import BUDGET_PARAMETER

from sluice_runtime.datatypes import BY_NAME, Datatype, from_numpy
from sluice_runtime.errors import DeadlineUnmeetable, InvalidInput
from sluice_runtime.protocol import inference_pb2 as pb

# BUDGET_PARAMETER: the remaining end-to-end budget of a request, in milliseconds, as a
# request parameter: a pipeline router passes it down so each stage knows its deadline.

_MAX_ELEMENTS = 1 << 31


def request_deadline(
    now: float, grpc_remaining_s: float | None, budget_ms: float | None, default_slo_ms: float
) -> float:
    """The absolute deadline: the tightest of the gRPC deadline and the carried budget.

    When the caller gave neither, the model's default SLO applies.
    """
    limits = [now + grpc_remaining_s] if grpc_remaining_s is not None else []
    if budget_ms is not None:
        limits.append(now + budget_ms / 1000.0)
    return min(limits) if limits else now + default_slo_ms / 1000.0


def budget_from_parameters(parameters: Mapping[str, pb.InferParameter]) -> float | None:
    """The ``sluice-budget-ms`` request parameter, validated, or None when absent."""
    if BUDGET_PARAMETER not in parameters:
        return None
    param = parameters[BUDGET_PARAMETER]
    kind = param.WhichOneof("parameter_choice")
    if kind not in ("double_param", "int64_param", "uint64_param"):
        raise InvalidInput(f"parameter '{BUDGET_PARAMETER}' must be a number, got {kind}")
    value = float(getattr(param, kind))
    if not np.isfinite(value):
        raise InvalidInput(f"parameter '{BUDGET_PARAMETER}' must be finite, got {value}")
    if value < 0:
        # A budget carried down a pipeline goes negative once the deadline has passed.
        raise DeadlineUnmeetable(f"parameter '{BUDGET_PARAMETER}' is {value}: already spent")
    return value


def _element_count(name: str, shape: list[int]) -> int:
    count = 1
    for dim in shape:
        if dim < 0:
            raise InvalidInput(f"input '{name}': shape {shape} has a negative dimension")
        count *= dim
        if count > _MAX_ELEMENTS:
            raise InvalidInput(f"input '{name}': shape {shape} is too large")
    return count


def _decode_contents(
    name: str, datatype: Datatype, contents: pb.InferTensorContents, count: int
) -> np.ndarray:
    filled = [f.name for f, _ in contents.ListFields()]
    if datatype.contents_field is None:
        raise InvalidInput(
            f"input '{name}': {datatype.name} can only be sent in raw_input_contents"
        )
    wrong = [f for f in filled if f != datatype.contents_field]
    if wrong:
        raise InvalidInput(
            f"input '{name}': datatype {datatype.name} travels in {datatype.contents_field}, "
            f"not {', '.join(wrong)}"
        )
    values = getattr(contents, datatype.contents_field)
    if datatype.is_bytes:
        return _bytes_array(name, list(values), count)
    if len(values) != count:
        raise InvalidInput(
            f"input '{name}': {datatype.contents_field} holds {len(values)} values, "
            f"the shape needs {count}"
        )
    try:
        # Narrow integers travel widened to 32 bits: numpy refuses values that would wrap.
        return np.array(values, dtype=datatype.dtype).reshape(count)
    except OverflowError:
        raise InvalidInput(
            f"input '{name}': a value is out of range for {datatype.name}"
        ) from None


def _bytes_array(name: str, elements: list[bytes], count: int) -> np.ndarray:
    """BYTES elements as an object array, checked for count and for UTF-8 (ONNX strings)."""
    if len(elements) != count:
        plural = "" if len(elements) == 1 else "s"
        raise InvalidInput(
            f"input '{name}': BYTES contents hold {len(elements)} element{plural}, "
            f"the shape needs {count}"
        )
    for index, element in enumerate(elements):
        try:
            element.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(
                f"input '{name}': BYTES element {index} is not UTF-8 text"
            ) from None
    array = np.empty(count, dtype=np.object_)
    array[:] = elements
    return array


def _split_length_prefixed(name: str, raw: bytes) -> list[bytes]:
    """Raw BYTES contents: each element a 4-byte little-endian length, then its bytes."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput(
                f"input '{name}': BYTES element {len(elements)}'s length runs past the end "
                "of its raw contents"
            )
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInput(
                f"input '{name}': BYTES element {len(elements)} ({length} bytes) runs past "
                "the end of its raw contents"
            )
        elements.append(bytes(raw[offset:offset + length]))
        offset += length
    return elements


def _join_length_prefixed(elements: Iterable[Any]) -> bytes:
    """Encode BYTES elements (bytes, or text as ONNX returns it) as raw contents."""
    parts = []
    for element in elements:
        data = element.encode("utf-8") if isinstance(element, str) else bytes(element)
        parts.append(struct.pack("<I", len(data)) + data)
    return b"".join(parts)


def _decode_raw(name: str, datatype: Datatype, raw: bytes, count: int) -> np.ndarray:
    if datatype.is_bytes:
        return _bytes_array(name, _split_length_prefixed(name, raw), count)
    expected = count * datatype.dtype.itemsize
    if len(raw) != expected:
        raise InvalidInput(
            f"input '{name}': raw contents hold {len(raw)} bytes, "
            f"the shape and {datatype.name} need {expected}"
        )
    return np.frombuffer(raw, dtype=datatype.dtype)


def decode_inputs(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    """Decode every input tensor of a request into a numpy array of its declared shape."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "with raw contents every input needs exactly one"
        )
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        if not name:
            raise InvalidInput(f"input #{index} has no name")
        if name in arrays:
            raise InvalidInput(f"input '{name}' appears more than once")
        datatype = BY_NAME.get(tensor.datatype)
        if datatype is None:
            raise InvalidInput(f"input '{name}': unsupported datatype '{tensor.datatype}'")
        shape = list(tensor.shape)
        count = _element_count(name, shape)
        has_contents = tensor.HasField("contents") and bool(tensor.contents.ListFields())
        if raw and has_contents:
            raise InvalidInput(f"input '{name}': both contents and raw_input_contents are set")
        if raw:
            flat = _decode_raw(name, datatype, raw[index], count)
        elif has_contents:
            flat = _decode_contents(name, datatype, tensor.contents, count)
        elif count == 0:
            flat = np.empty(0, datatype.dtype)
        else:
            raise InvalidInput(f"input '{name}' carries no data")
        arrays[name] = flat.reshape(shape)
    return arrays


def requested_outputs(request: pb.ModelInferRequest) -> tuple[str, ...]:
    """Names of the outputs the caller asked for (empty: all)."""
    for index, output in enumerate(request.outputs):
        if not output.name:
            raise InvalidInput(f"requested output #{index} has no name")
    return tuple(o.name for o in request.outputs)


def _append_raw(tensors: Any, raw: Any, name: str, array: np.ndarray) -> None:
    """Add a tensor's metadata to ``tensors`` and its bytes to the parallel ``raw`` list."""
    datatype = from_numpy(array.dtype)
    tensor = tensors.add(name=name, datatype=datatype.name)
    tensor.shape.extend(array.shape)
    if datatype.is_bytes:
        raw.append(_join_length_prefixed(array.ravel()))
    else:
        raw.append(np.ascontiguousarray(array).tobytes())


def encode_response(
    model: str, request_id: str, outputs: Mapping[str, np.ndarray]
) -> pb.ModelInferResponse:
    """Encode output arrays as a response with ``raw_output_contents``."""
    response = pb.ModelInferResponse(model_name=model, id=request_id)
    for name, array in outputs.items():
        _append_raw(response.outputs, response.raw_output_contents, name, array)
    return response


def encode_request(
    model: str,
    inputs: Mapping[str, np.ndarray],
    outputs: tuple[str, ...] = (),
    budget_ms: float | None = None,
    request_id: str = "",
) -> pb.ModelInferRequest:
    """Encode arrays as a request with ``raw_input_contents`` (used to call other runtimes)."""
    request = pb.ModelInferRequest(model_name=model, id=request_id)
    for name, array in inputs.items():
        _append_raw(request.inputs, request.raw_input_contents, name, array)
    for name in outputs:
        request.outputs.add(name=name)
    if budget_ms is not None:
        request.parameters[BUDGET_PARAMETER].double_param = budget_ms
    return request


def decode_response(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """Decode a response from another runtime (raw or typed contents) into arrays."""
    as_request = pb.ModelInferRequest(raw_input_contents=response.raw_output_contents)
    for tensor in response.outputs:
        as_request.inputs.add(
            name=tensor.name, datatype=tensor.datatype, shape=tensor.shape,
            contents=tensor.contents,
        )
    return decode_inputs(as_request)
