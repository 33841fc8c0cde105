"""One ONNX model loaded once into onnxruntime, shared by every executor."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sluice_runtime.datatypes import from_onnx_type
from sluice_runtime.signature import DYNAMIC, ModelSignature, TensorSpec

log = logging.getLogger(__name__)


def _as_text(array: np.ndarray) -> np.ndarray:
    text = [e.decode("utf-8") if isinstance(e, bytes) else e for e in array.ravel()]
    return np.array(text, dtype=np.object_).reshape(array.shape)


def _as_bytes(array: np.ndarray) -> np.ndarray:
    data = np.empty(array.size, dtype=np.object_)
    data[:] = [e.encode("utf-8") if isinstance(e, str) else e for e in array.ravel()]
    return data.reshape(array.shape)


def _spec(node: ort.NodeArg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else DYNAMIC for d in node.shape)
    return TensorSpec(node.name, from_onnx_type(node.type), shape)


class OnnxModel:
    """An onnxruntime session with one intra-op thread.

    Parallelism comes from running several batches at once on this one session (its
    ``run`` is thread-safe), so a CPU resize changes how many run concurrently without
    rebuilding the session or loading a second copy of the weights.
    """

    def __init__(self, name: str, path: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads burn the CPU the batching loop and other executors need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.name = name
        self.path = path
        self._session = ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        self.signature = ModelSignature(
            inputs=tuple(_spec(n) for n in self._session.get_inputs()),
            outputs=tuple(_spec(n) for n in self._session.get_outputs()),
        )
        self._output_names = [t.name for t in self.signature.outputs]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Compute every output for a (batched) input dict. Blocking; call from a thread.

        String tensors travel as UTF-8 bytes everywhere else in the runtime; onnxruntime
        wants ``str`` (it reads a ``bytes`` element as its repr), so they are converted at
        this edge, both ways.
        """
        feed = {name: _as_text(array) if array.dtype == np.object_ else array
                for name, array in inputs.items()}
        outputs = self._session.run(self._output_names, feed)
        return {name: _as_bytes(array) if array.dtype == np.object_ else array
                for name, array in zip(self._output_names, outputs, strict=True)}

    def example_inputs(self, rows: int) -> dict[str, np.ndarray]:
        """Zero inputs of ``rows`` rows (free dimensions other than the batch axis set to 1)."""
        arrays = {}
        for spec in self.signature.inputs:
            shape = [1 if d == DYNAMIC else d for d in spec.shape]
            if self.signature.batchable:
                shape[0] = rows
            if spec.datatype.is_bytes:
                arrays[spec.name] = np.full(shape, b"", dtype=np.object_)
            else:
                arrays[spec.name] = np.zeros(shape, dtype=spec.datatype.dtype)
        return arrays
