"""onnxruntime at the split's edge: probing what every value is, timing parts, comparing.

The probes run the model twice with sample inputs, once with 2 rows and once with 3 (and
the inputs' other free axes at 32, then 48), returning every value: a value whose first
axis followed the rows is a batch tensor; an axis that did not change is fixed.
Timings take one intra-op thread (the compute of one core, what a stage's cores are
counted in) and onnxruntime's full graph optimisation, as the runtime serves a model.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from sluice_local.split.graph import SplitError, Value
from sluice_local.split.onnxgraph import with_every_value_as_output

#: Rows, and the size of the inputs' other free axes, in the two probes.
PROBE_ROWS = (2, 3)
PROBE_FREE_SIZES = (32, 48)
#: How long each timing runs at least (after one warm-up run), and how many runs at least.
SEGMENT_MIN_S = 0.05
PART_MIN_S = 0.3
MIN_RUNS = 5

Arrays = dict[str, np.ndarray]


def sample_inputs(model: onnx.ModelProto, rows: int, free_size: int = PROBE_FREE_SIZES[0],
                  seed: int = 0) -> Arrays:
    """Inputs for ``model`` with ``rows`` rows: normal floats, integers 0 or 1, empty
    strings; free axes other than the first sized ``free_size``."""
    rng = np.random.default_rng(seed)
    initializers = {i.name for i in model.graph.initializer}
    feed = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        if not value.type.HasField("tensor_type"):
            raise SplitError(f"input '{value.name}' is not a tensor: cannot make samples for it")
        tensor = value.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        shape = [d.dim_value if d.dim_value > 0 else (rows if axis == 0 else free_size)
                 for axis, d in enumerate(tensor.shape.dim)]
        if np.issubdtype(dtype, np.floating):
            feed[value.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.object_:
            feed[value.name] = np.full(shape, "", dtype=np.object_)
        else:
            feed[value.name] = rng.integers(0, 2, shape).astype(dtype)
    return feed


def session(model: onnx.ModelProto | bytes, *, optimise: bool = True) -> ort.InferenceSession:
    """A one-thread CPU session (SplitError with onnxruntime's reason when it refuses)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    data = model if isinstance(model, bytes) else model.SerializeToString()
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors share no base class but Exception
        raise SplitError(f"onnxruntime cannot load the model: {' '.join(str(exc).split())}"
                         ) from None


def run(model_session: ort.InferenceSession, feed: Mapping[str, np.ndarray]) -> Arrays:
    """Every output of one run, by name (SplitError with onnxruntime's reason)."""
    names = [o.name for o in model_session.get_outputs()]
    try:
        outputs = model_session.run(names, dict(feed))
    except Exception as exc:  # onnxruntime's errors share no base class but Exception
        raise SplitError(f"onnxruntime cannot run the model on sample inputs: "
                         f"{' '.join(str(exc).split())}") from None
    return dict(zip(names, outputs, strict=True))


def _nbytes(array: np.ndarray) -> int:
    if array.dtype == np.object_:
        return sum(len(str(e).encode()) for e in array.ravel())
    return int(array.nbytes)


def _observed(name: str, first: object, second: object) -> Value:
    """What two probes tell of one value."""
    if not isinstance(first, np.ndarray) or not isinstance(second, np.ndarray):
        return Value(name, "", (), (), False, 0)
    if first.ndim != second.ndim:
        static = (False,) * first.ndim
    else:
        static = tuple(a == b for a, b in zip(first.shape, second.shape, strict=True))
    batch = first.ndim > 0 and (first.shape[0], second.shape[0]) == PROBE_ROWS
    return Value(name, first.dtype.name, tuple(first.shape), static, batch, _nbytes(first))


def probe_values(model: onnx.ModelProto) -> dict[str, Value]:
    """Every input and node output of ``model`` as the two probes saw it."""
    probe = session(with_every_value_as_output(model), optimise=False)
    feeds = [sample_inputs(model, rows, free, seed=rows)
             for rows, free in zip(PROBE_ROWS, PROBE_FREE_SIZES, strict=True)]
    first, second = ({**feed, **run(probe, feed)} for feed in feeds)
    return {name: _observed(name, first[name], second[name]) for name in first}


def timed_run(model_session: ort.InferenceSession, feed: Mapping[str, np.ndarray],
              min_s: float) -> tuple[float, Arrays]:
    """The median latency in ms of ``min_s`` seconds of runs (at least MIN_RUNS, after a
    warm-up run), and the outputs."""
    outputs = run(model_session, feed)
    names = list(outputs)
    feed = dict(feed)
    times_s = []
    started = time.perf_counter()
    while len(times_s) < MIN_RUNS or time.perf_counter() - started < min_s:
        begun = time.perf_counter()
        model_session.run(names, feed)
        times_s.append(time.perf_counter() - begun)
    return statistics.median(times_s) * 1000, outputs


def _inputs(model_session: ort.InferenceSession, values: Arrays) -> Arrays:
    """What a stage takes of the previous stage's outputs: by name, as the runtime wires."""
    return {i.name: values[i.name] for i in model_session.get_inputs()}


def timed_chain(models: Sequence[onnx.ModelProto | bytes], feed: Mapping[str, np.ndarray],
                min_s: float) -> tuple[list[float], Arrays]:
    """Each model timed on the previous one's outputs; the latencies in ms and the last
    model's outputs."""
    latencies_ms = []
    values = dict(feed)
    for model in models:
        model_session = session(model)
        latency_ms, values = timed_run(model_session, _inputs(model_session, values), min_s)
        latencies_ms.append(latency_ms)
    return latencies_ms, values


def chained_outputs(models: Sequence[onnx.ModelProto | bytes],
                    feed: Mapping[str, np.ndarray], *, optimise: bool) -> Arrays:
    """The last model's outputs, each model run once on the previous one's."""
    values = dict(feed)
    for model in models:
        model_session = session(model, optimise=optimise)
        values = run(model_session, _inputs(model_session, values))
    return values


def max_abs_diff(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]
                 ) -> dict[str, float]:
    """Per output, the largest absolute difference (inf where shapes or types differ,
    or non-numeric values differ)."""
    diffs = {}
    for name, expected in want.items():
        actual = got[name]
        if actual.shape != expected.shape or actual.dtype != expected.dtype:
            diffs[name] = float("inf")
        elif expected.dtype == np.object_:
            diffs[name] = 0.0 if np.array_equal(actual, expected) else float("inf")
        else:
            delta = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
            diffs[name] = float(delta.max()) if delta.size else 0.0
    return diffs


def equal_within(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray],
                 rtol: float, atol: float) -> bool:
    """True when every output matches: floats within ``rtol``/``atol``, the rest exactly."""
    for name, expected in want.items():
        actual = got[name]
        if actual.shape != expected.shape or actual.dtype != expected.dtype:
            return False
        if np.issubdtype(expected.dtype, np.floating):
            if not np.allclose(actual, expected, rtol=rtol, atol=atol):
                return False
        elif not np.array_equal(actual, expected):
            return False
    return True
