"""How far a variant's outputs agree with the original's: pure over arrays, and on the real
Magika model's outputs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from sluice_local.variants.agreement import (
    CLASSIFIER,
    REGRESSION,
    OutputSpec,
    agreement,
    detect_kind,
    relative_error,
    top1_agreement,
)

from tests.trained import magika_model


def test_top1_agreement_counts_rows_whose_best_class_matches():
    reference = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1]])
    candidate = reference.copy()
    candidate[3] = [0.4, 0.5, 0.1]  # the last row's best class changes, the others only shift
    candidate[0] = [0.6, 0.3, 0.1]
    assert top1_agreement(reference, candidate) == 0.75


def test_labels_agree_element_by_element():
    reference = np.array([[1, 2], [3, 4]], dtype=np.int64)
    candidate = np.array([[1, 2], [3, 5]], dtype=np.int64)
    assert top1_agreement(reference, candidate) == 0.75


def test_relative_error_is_the_norm_of_the_difference_over_the_reference():
    reference = [np.array([3.0, 4.0])]  # norm 5
    candidate = [np.array([3.0, 3.0])]  # difference norm 1
    assert relative_error(reference, candidate) == pytest.approx(0.2)
    assert relative_error([np.zeros(3)], [np.zeros(3)]) == 0.0
    assert relative_error([np.zeros(3)], [np.ones(3)]) == float("inf")


def test_shapes_must_match():
    with pytest.raises(ValueError, match="shape"):
        top1_agreement(np.zeros((4, 3)), np.zeros((3, 3)))


@pytest.mark.parametrize(("outputs", "kind"), [
    ([OutputSpec("target_label", "float32", (None, 214))], CLASSIFIER),
    ([OutputSpec("tokens", "int64", (None, 16))], CLASSIFIER),  # labels already
    ([OutputSpec("score", "float32", (None, 1))], REGRESSION),  # one value is no class choice
    ([OutputSpec("embedding", "float32", (None,))], REGRESSION),
    ([OutputSpec("action", "float16", (None, 64))], CLASSIFIER),
])
def test_kind_is_detected_from_the_first_output(outputs, kind):
    assert detect_kind(outputs) == kind


@pytest.fixture(scope="module")
def magika_outputs():
    session = ort.InferenceSession(str(magika_model()), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    features = rng.integers(0, 257, (32, 2048)).astype(np.int32)
    return session.run(None, {"bytes": features})


def test_an_identical_variant_agrees_fully(magika_outputs):
    same = [output.copy() for output in magika_outputs]
    assert agreement(CLASSIFIER, magika_outputs, same) == 1.0
    assert agreement(REGRESSION, magika_outputs, same) == 1.0


def test_a_perturbed_variant_agrees_less_and_within_bounds(magika_outputs):
    (probabilities,) = magika_outputs
    shuffled = probabilities[:, ::-1].copy()  # every row's best class moves
    figure = agreement(CLASSIFIER, magika_outputs, [shuffled])
    assert 0.0 <= figure < 1.0
    rows_kept = np.argmax(shuffled, axis=-1) == np.argmax(probabilities, axis=-1)
    assert figure == pytest.approx(rows_kept.mean())
    off = agreement(REGRESSION, magika_outputs, [probabilities * 1.1])
    assert off == pytest.approx(0.9)
    assert agreement(REGRESSION, magika_outputs, [probabilities * 5]) == 0.0  # floored at 0
