"""Make cheaper variants of an ONNX model with onnxruntime's own quantization tools.

Dynamic quantization (``onnxruntime.quantization.quantize_dynamic``) stores weights as
8-bit integers with a scale (about a quarter of the bytes) and quantizes activations on
the fly at each run. Static quantization (``quantize_static``, in the QDQ format
onnxruntime recommends for CPUs) fixes the activations' ranges beforehand from
calibration inputs, here the sample inputs themselves, so the variant's agreement is
measured on the data it was calibrated on. The model is first pre-processed as onnxruntime
recommends
(``quant_pre_process``: ONNX shape inference and onnxruntime's basic graph optimisations;
its symbolic shape inference needs sympy, which Sluice does not install, and is skipped).

Graph optimisation levels are not variants here: the runtime already optimises every model
at ``ORT_ENABLE_ALL`` when it loads it, so a file optimised beforehand would serve the same
graph.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from sluice_local.variants.recipes import Recipe

#: Operators a quantized graph has (dynamic, static QDQ): a variant with neither quantized
#: nothing.
QUANTIZED_MARKERS = ("DynamicQuantizeLinear", "QuantizeLinear")
#: Rows per calibration run.
CALIBRATION_ROWS = 16


class VariantError(RuntimeError):
    """onnxruntime could not make a variant (one line for the user)."""


@contextlib.contextmanager
def prepared(source: Path) -> Iterator[Path]:
    """``source`` pre-processed for quantization, in a scratch file removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="sluice-variants-") as scratch:
        path = Path(scratch) / "prepared.onnx"
        try:
            quant_pre_process(str(source), str(path), skip_symbolic_shape=True)
        except Exception as exc:  # onnxruntime raises many kinds; the user needs one line
            raise VariantError(f"cannot pre-process {source} for quantization: "
                               f"{_one_line(exc)}") from None
        yield path


class _Calibration(CalibrationDataReader):
    """The sample inputs, a few rows at a time, as ``quantize_static`` reads them."""

    def __init__(self, samples: Mapping[str, np.ndarray]) -> None:
        rows = len(next(iter(samples.values())))
        self._feeds = iter([{name: array[start:start + CALIBRATION_ROWS]
                             for name, array in samples.items()}
                            for start in range(0, rows, CALIBRATION_ROWS)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next rows; None once all were read."""
        return next(self._feeds, None)


def make_variant(source: Path, how: Recipe, out: Path,
                 samples: Mapping[str, np.ndarray]) -> bool:
    """Write the variant ``how`` of the pre-processed ``source`` to ``out`` (``samples``
    calibrate a static one); False (and no file) when the model has nothing that recipe
    quantizes."""
    op_types = list(how.op_types) if how.op_types else None
    try:
        if how.calibrated:
            quantize_static(source, out, _Calibration(samples), quant_format=QuantFormat.QDQ,
                            per_channel=how.per_channel, op_types_to_quantize=op_types,
                            weight_type=QuantType[how.weight_type],
                            activation_type=QuantType.QUInt8)
        else:
            quantize_dynamic(source, out, weight_type=QuantType[how.weight_type],
                             per_channel=how.per_channel, op_types_to_quantize=op_types)
    except Exception as exc:  # as above
        out.unlink(missing_ok=True)
        raise VariantError(f"variant {how.name}: onnxruntime could not quantize the model: "
                           f"{_one_line(exc)}") from None
    graph = onnx.load(str(out)).graph
    if not any(node.op_type in QUANTIZED_MARKERS for node in graph.node):
        out.unlink()
        return False
    return True


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
