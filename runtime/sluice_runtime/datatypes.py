"""Open Inference Protocol datatypes and their numpy and ONNX counterparts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Datatype:
    """One OIP datatype: its numpy dtype and the ``InferTensorContents`` field carrying it."""

    name: str
    dtype: np.dtype
    contents_field: str | None  # None: only raw contents can carry it (FP16 has no field)

    @property
    def is_bytes(self) -> bool:
        """Variable-length elements (numpy objects), length-prefixed in raw contents."""
        return self.name == "BYTES"


_TABLE = [
    Datatype("BOOL", np.dtype(np.bool_), "bool_contents"),
    Datatype("INT8", np.dtype(np.int8), "int_contents"),
    Datatype("INT16", np.dtype(np.int16), "int_contents"),
    Datatype("INT32", np.dtype(np.int32), "int_contents"),
    Datatype("INT64", np.dtype(np.int64), "int64_contents"),
    Datatype("UINT8", np.dtype(np.uint8), "uint_contents"),
    Datatype("UINT16", np.dtype(np.uint16), "uint_contents"),
    Datatype("UINT32", np.dtype(np.uint32), "uint_contents"),
    Datatype("UINT64", np.dtype(np.uint64), "uint64_contents"),
    Datatype("FP16", np.dtype(np.float16), None),
    Datatype("FP32", np.dtype(np.float32), "fp32_contents"),
    Datatype("FP64", np.dtype(np.float64), "fp64_contents"),
    # Strings, as bytes objects in numpy object arrays (UTF-8 text for ONNX's string type).
    Datatype("BYTES", np.dtype(np.object_), "bytes_contents"),
]

BY_NAME: dict[str, Datatype] = {d.name: d for d in _TABLE}
BY_DTYPE: dict[np.dtype, Datatype] = {d.dtype: d for d in _TABLE}

# onnxruntime reports element types as 'tensor(float)' and so on.
_ONNX_ELEMENT = {
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "float16": "FP16",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
}


def from_onnx_type(onnx_type: str) -> Datatype:
    """Map an onnxruntime type string such as ``tensor(float)`` to its OIP datatype."""
    element = onnx_type.removeprefix("tensor(").removesuffix(")")
    if element not in _ONNX_ELEMENT:
        raise ValueError(f"ONNX type {onnx_type!r} has no Open Inference Protocol datatype")
    return BY_NAME[_ONNX_ELEMENT[element]]


def from_numpy(dtype: np.dtype) -> Datatype:
    """Map a numpy dtype to its OIP datatype."""
    try:
        return BY_DTYPE[np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype") from None
