"""Sample inputs for the agreement figure: generated from a model's input signature, or
the user's own arrays checked against it."""

from __future__ import annotations

import numpy as np
import pytest
from sluice_local.variants.samples import InputSpec, SampleError, generate, load_samples

MAGIKA_INPUT = InputSpec("bytes", "int32", (None, 2048))
IMAGES = InputSpec("images", "float32", ("N", 3, 8, 8))


def test_generated_samples_follow_the_signature_and_the_seed():
    first = generate([MAGIKA_INPUT, IMAGES], count=5, seed=3, int_range=(0, 257), free_dim=1)
    again = generate([MAGIKA_INPUT, IMAGES], count=5, seed=3, int_range=(0, 257), free_dim=1)
    other = generate([MAGIKA_INPUT, IMAGES], count=5, seed=4, int_range=(0, 257), free_dim=1)
    assert first["bytes"].shape == (5, 2048)
    assert first["bytes"].dtype == np.int32
    assert first["bytes"].min() >= 0
    assert first["bytes"].max() <= 256
    assert first["bytes"].max() > 200  # the whole stated range is used, not just {0, 1}
    assert first["images"].shape == (5, 3, 8, 8)
    assert first["images"].dtype == np.float32
    assert abs(float(first["images"].mean())) < 0.2  # standard normal
    assert np.array_equal(first["bytes"], again["bytes"])
    assert np.array_equal(first["images"], again["images"])
    assert not np.array_equal(first["images"], other["images"])


def test_free_dimensions_besides_the_batch_take_free_dim():
    sequence = InputSpec("tokens", "int64", ("N", "seq"))
    samples = generate([sequence], count=2, seed=0, int_range=(0, 2), free_dim=7)
    assert samples["tokens"].shape == (2, 7)


def test_string_inputs_cannot_be_generated():
    with pytest.raises(SampleError, match="--samples"):
        generate([InputSpec("text", "object", (None,))], count=2, seed=0, int_range=(0, 2),
                 free_dim=1)


def test_a_users_npy_file_is_checked_against_the_signature(tmp_path):
    good = tmp_path / "features.npy"
    np.save(good, np.zeros((4, 2048), dtype=np.int64))
    loaded = load_samples(good, [MAGIKA_INPUT])
    assert loaded["bytes"].dtype == np.int32  # cast to the model's type
    assert loaded["bytes"].shape == (4, 2048)

    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((4, 100), dtype=np.int32))
    with pytest.raises(SampleError, match=r"bytes.*\(4, 100\).*2048"):
        load_samples(wrong, [MAGIKA_INPUT])

    with pytest.raises(SampleError, match=r"2 inputs.*\.npz"):
        load_samples(good, [MAGIKA_INPUT, IMAGES])

    broken = tmp_path / "broken.npy"
    broken.write_bytes(b"not numpy")
    with pytest.raises(SampleError, match=r"broken\.npy"):
        load_samples(broken, [MAGIKA_INPUT])


def test_an_npz_file_names_each_input(tmp_path):
    path = tmp_path / "samples.npz"
    np.savez(path, bytes=np.ones((3, 2048), np.int32), images=np.ones((3, 3, 8, 8), np.float32))
    loaded = load_samples(path, [MAGIKA_INPUT, IMAGES])
    assert set(loaded) == {"bytes", "images"}
    np.savez(path, bytes=np.ones((3, 2048), np.int32))
    with pytest.raises(SampleError, match="images"):
        load_samples(path, [MAGIKA_INPUT, IMAGES])
    np.savez(path, bytes=np.ones((3, 2048), np.int32), images=np.ones((2, 3, 8, 8), np.float32))
    with pytest.raises(SampleError, match="rows"):
        load_samples(path, [MAGIKA_INPUT, IMAGES])
