"""The inputs a variant is compared with the original on: generated from the model's
input signature with a seed, or the user's own arrays checked against it.

Generated samples are floats drawn from a standard normal, integers uniform in a stated
range (``[low, high)``; the default ``[0, 2)`` is a valid index for any vocabulary, as
the profiler's are) and booleans uniform; free dimensions other than the batch axis take
``free_dim``. Random inputs exercise the arithmetic, not the task: a model's real inputs
(``--samples``) say more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_INT_RANGE = (0, 2)
#: Rows generated unless asked otherwise: enough that one disagreement moves the figure
#: by less than half a percent.
DEFAULT_COUNT = 256


class SampleError(ValueError):
    """Samples that cannot be made or do not fit the model (one line for the user)."""


@dataclass(frozen=True)
class InputSpec:
    """One model input as its signature declares it (``None`` or a name: a free
    dimension; the first is the batch axis)."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...]

    def describe_shape(self) -> str:
        """``(N, 2048)``: the batch axis as N, other free dimensions as ``?``."""
        free = ("N", *("?" for _ in self.shape[1:]))
        dims = [str(d) if isinstance(d, int) else free[i] for i, d in enumerate(self.shape)]
        return f"({', '.join(dims)})"


def generate(inputs: Sequence[InputSpec], count: int, seed: int, int_range: tuple[int, int],
             free_dim: int) -> dict[str, np.ndarray]:
    """``count`` rows for every input, the same for the same seed."""
    rng = np.random.default_rng(seed)
    samples = {}
    for spec in inputs:
        dtype = np.dtype(spec.dtype)
        shape = (count, *(d if isinstance(d, int) else free_dim for d in spec.shape[1:]))
        if dtype.kind == "f":
            samples[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            samples[spec.name] = rng.integers(*int_range, size=shape).astype(dtype)
        elif dtype.kind == "b":
            samples[spec.name] = rng.integers(0, 2, size=shape).astype(dtype)
        else:
            raise SampleError(f"input {spec.name} holds {dtype} values, which are not "
                              "generated: give --samples FILE.npy (or .npz, one array per "
                              "input name)")
    return samples


def load_samples(path: Path, inputs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """The user's samples: a ``.npy`` array for a one-input model, or a ``.npz`` with an
    array per input name; cast to the inputs' types, rows the first axis."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise SampleError(f"cannot read samples from {path}: "
                          f"{' '.join(str(exc).split())}") from None
    if isinstance(loaded, np.ndarray):
        if len(inputs) != 1:
            names = ", ".join(spec.name for spec in inputs)
            raise SampleError(f"{path} holds one array but the model has {len(inputs)} "
                              f"inputs ({names}): give an .npz with one array per input name")
        return _fit({inputs[0].name: loaded}, inputs)
    with loaded:
        missing = [spec.name for spec in inputs if spec.name not in loaded.files]
        if missing:
            raise SampleError(f"{path} has no array for input(s) {', '.join(missing)} "
                              f"(it has: {', '.join(loaded.files) or 'none'})")
        return _fit({spec.name: loaded[spec.name] for spec in inputs}, inputs)


def _fit(arrays: Mapping[str, np.ndarray], inputs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """``arrays`` checked against the inputs' ranks, fixed dimensions and kinds of values,
    and cast to their types; SampleError saying which input does not fit."""
    rows = {name: array.shape[0] if array.ndim else 0 for name, array in arrays.items()}
    if len(set(rows.values())) > 1:
        raise SampleError(f"the inputs' samples have different numbers of rows: {rows}")
    if 0 in rows.values():
        raise SampleError("the samples hold no rows")
    fitted = {}
    for spec in inputs:
        array = arrays[spec.name]
        fixed = all(not isinstance(want, int) or want == got
                    for want, got in zip(spec.shape, array.shape, strict=False))
        if array.ndim != len(spec.shape) or not fixed:
            raise SampleError(f"input {spec.name}: samples of shape {array.shape} do not fit "
                              f"the model's {spec.describe_shape()}")
        if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
            raise SampleError(f"input {spec.name}: samples of type {array.dtype} cannot stand "
                              f"for the model's {spec.dtype}")
        fitted[spec.name] = array.astype(spec.dtype, copy=False)
    return fitted
