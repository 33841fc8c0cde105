"""Load a model with onnxruntime, read its signature, run the sample inputs through it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sluice_local.variants.agreement import OutputSpec
from sluice_local.variants.samples import InputSpec

#: Rows per run: bounds the memory of large inputs (images) over a big sample set.
ROWS_PER_RUN = 32
#: onnxruntime logs errors only: its warnings would otherwise interleave with ours.
_LOG_ERRORS_ONLY = 3
#: onnxruntime's element types whose numpy names differ.
_NUMPY_NAMES = {"float": "float32", "double": "float64", "string": "object"}


class ModelLoadError(ValueError):
    """onnxruntime cannot load or run the model (one line for the user)."""


@dataclass(frozen=True)
class Signature:
    """A model's inputs and outputs."""

    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]


def _numpy_type(onnx_type: str) -> str:
    element = onnx_type.removeprefix("tensor(").removesuffix(")")
    return str(np.dtype(_NUMPY_NAMES.get(element, element)))


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = _LOG_ERRORS_ONLY
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own kinds, and TypeError for types
        message = " ".join(str(exc).split())
        raise ModelLoadError(f"{path} is not an ONNX model onnxruntime can load: "
                             f"{message}") from None


def signature(path: Path) -> Signature:
    """The model's signature as onnxruntime reads it; ModelLoadError when it cannot."""
    session = _session(path)
    return Signature(
        inputs=tuple(InputSpec(i.name, _numpy_type(i.type), tuple(i.shape))
                     for i in session.get_inputs()),
        outputs=tuple(OutputSpec(o.name, _numpy_type(o.type), tuple(o.shape))
                      for o in session.get_outputs()),
    )


def run(path: Path, samples: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Every output of the model over all the samples' rows, in :data:`ROWS_PER_RUN`
    chunks; ModelLoadError when a run fails."""
    session = _session(path)
    rows = len(next(iter(samples.values())))
    chunks: list[list[np.ndarray]] = []
    for start in range(0, rows, ROWS_PER_RUN):
        feed = {name: array[start:start + ROWS_PER_RUN] for name, array in samples.items()}
        try:
            chunks.append(session.run(None, feed))
        except Exception as exc:  # as in _session
            message = " ".join(str(exc).split())
            raise ModelLoadError(f"{path.name} failed on the samples (rows {start}..): "
                                 f"{message}") from None
    return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]
