"""How closely a variant's outputs follow the original's on the same inputs: pure.

The figure is agreement with the original model on a sample set, **not task accuracy**:
a variant that agrees 100 % is exactly as right and as wrong as the original on those
samples, and samples unlike real traffic say little about real traffic.

- A *classifier* (first output a score per class, or labels already) is judged by top-1
  agreement: the share of rows whose best class (the argmax over the last axis; for
  integer outputs, the labels themselves) is the original's.
- Anything else is judged by relative error: ``‖variant - original‖ / ‖original‖`` over
  every numeric output's elements together, and its figure is
  ``max(0, 1 - relative error)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CLASSIFIER = "classifier"
REGRESSION = "regression"
KINDS = (CLASSIFIER, REGRESSION)


@dataclass(frozen=True)
class OutputSpec:
    """One model output as its signature declares it (``None`` or a name: a free
    dimension)."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...]


def detect_kind(outputs: Sequence[OutputSpec]) -> str:
    """:data:`CLASSIFIER` when the first output holds a score per class (floats whose last
    dimension has at least two entries, or a free one) or labels (integers, strings);
    otherwise
    :data:`REGRESSION`."""
    first = outputs[0]
    kind = np.dtype(first.dtype).kind
    if kind in "iubOUS":  # integers, booleans, strings: labels already
        return CLASSIFIER
    if kind == "f" and len(first.shape) >= 2:
        classes = first.shape[-1]
        if not isinstance(classes, int) or classes >= 2:
            return CLASSIFIER
    return REGRESSION


def _same_shape(reference: np.ndarray, candidate: np.ndarray) -> None:
    if reference.shape != candidate.shape:
        raise ValueError(f"outputs of shape {candidate.shape} cannot be compared with the "
                         f"original's {reference.shape}")


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Share of rows whose best class is the original's (labels: share of equal labels)."""
    _same_shape(reference, candidate)
    if np.dtype(reference.dtype).kind == "f":
        reference, candidate = reference.argmax(axis=-1), candidate.argmax(axis=-1)
    if reference.size == 0:
        return 1.0
    return float(np.mean(reference == candidate))


def relative_error(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> float:
    """``‖candidate - reference‖ / ‖reference‖`` over every numeric output's elements
    together (float64; string outputs have no distance); 0 when both are zero, infinite when
    only the reference is."""
    difference = 0.0
    norm = 0.0
    for ref, cand in zip(reference, candidate, strict=True):
        _same_shape(ref, cand)
        if np.dtype(ref.dtype).kind not in "fiub":
            continue
        ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
        difference += float(np.sum((cand64 - ref64) ** 2))
        norm += float(np.sum(ref64 ** 2))
    if norm == 0.0:
        return 0.0 if difference == 0.0 else math.inf
    return math.sqrt(difference / norm)


def agreement(kind: str, reference: Sequence[np.ndarray],
              candidate: Sequence[np.ndarray]) -> float:
    """The variant's agreement figure in [0, 1] (see the module's docstring)."""
    if kind == CLASSIFIER:
        return top1_agreement(reference[0], candidate[0])
    return max(0.0, 1.0 - relative_error(reference, candidate))
