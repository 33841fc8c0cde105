"""One ONNX model in onnxruntime: a session per intra-op thread count, one copy of weights."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sluice_runtime.datatypes import from_onnx_type
from sluice_runtime.executors import in_compute_thread
from sluice_runtime.signature import DYNAMIC, ModelSignature, TensorSpec
from sluice_runtime.weights import WEIGHTS_FILE, prepare_shared_weights

log = logging.getLogger(__name__)


_arena_lock = threading.Lock()
_arena_registered = False


def _register_shared_arena() -> None:
    """Register the process-wide CPU arena that sessions opt into (once per process)."""
    global _arena_registered
    with _arena_lock:
        if not _arena_registered:
            memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                       ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(memory, None)
            _arena_registered = True


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
    """An ONNX model served by one onnxruntime session per intra-op thread count.

    Sessions for 1..n threads exist once :meth:`ensure_threads` asked for n; each runs
    batches concurrently (``run`` is thread-safe), so a batch can take one core or
    several. All of them map one prepared copy of the weights (:mod:`sluice_runtime.weights`).
    Where that copy cannot be prepared the model is served from its own file by one
    single-thread session, with a warning: more would each hold their own weights.
    """

    def __init__(self, name: str, path: Path, cache_dir: Path) -> None:
        self.name = name
        self.path = path
        self._lock = threading.Lock()
        try:
            self._source: Path = prepare_shared_weights(path, cache_dir)
            self.weights_file: Path | None = self._source.with_name(WEIGHTS_FILE)
            self._optimisation = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # done already
        except Exception as exc:  # onnxruntime's errors share no base class but Exception
            log.warning("model %s: cannot prepare shared weights (%s); serving it with one "
                        "intra-op thread", name, exc)
            self._source, self.weights_file = path, None
            self._optimisation = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._sessions: dict[int, ort.InferenceSession] = {1: self._new_session(1)}
        session = self._sessions[1]
        self.signature = ModelSignature(
            inputs=tuple(_spec(n) for n in session.get_inputs()),
            outputs=tuple(_spec(n) for n in session.get_outputs()),
        )
        self._output_names = [t.name for t in self.signature.outputs]

    @property
    def threads_available(self) -> tuple[int, ...]:
        """Intra-op thread counts a batch can run with now."""
        return tuple(sorted(self._sessions))

    def ensure_threads(self, max_threads: int) -> None:
        """Make the sessions for up to ``max_threads`` threads. Blocking; call from a thread.

        Sessions are kept when the CPU shrinks again: they cost little beside the shared
        weights, and a later resize up is followed at once.
        """
        if self.weights_file is None:
            return
        with self._lock:
            sessions = dict(self._sessions)
            for threads in range(2, max_threads + 1):
                if threads not in sessions:
                    sessions[threads] = self._new_session(threads)
            # Replaced whole: the event loop reads the sessions while this thread makes them.
            self._sessions = sessions

    def _new_session(self, threads: int) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = self._optimisation
        # Under a CPU quota a spinning worker burns quota it then lacks (docs/bench.md
        # measures it): workers sleep between parallel sections.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        # One arena for all sessions: activation memory does not grow with their number.
        options.add_session_config_entry("session.use_env_allocators", "1")
        _register_shared_arena()
        return in_compute_thread(
            ort.InferenceSession, str(self._source), options, ["CPUExecutionProvider"]
        )

    def run(self, inputs: dict[str, np.ndarray], threads: int = 1) -> dict[str, np.ndarray]:
        """Compute every output for a (batched) input dict with ``threads`` intra-op threads
        (one of :attr:`threads_available`). Blocking; call from a thread.

        String tensors travel as UTF-8 bytes everywhere else in the runtime; onnxruntime
        wants ``str`` (it reads a ``bytes`` element as its repr), so they are converted at
        this edge, both ways.
        """
        feed = {name: _as_text(array) if array.dtype == np.object_ else array
                for name, array in inputs.items()}
        outputs = self._sessions[threads].run(self._output_names, feed)
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
