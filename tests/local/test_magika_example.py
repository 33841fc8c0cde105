"""The trained example: Magika's model copied by `make models`, served by a real runtime
from examples/pipelines/magika.yaml, asked by examples/magika_client.py about real files,
with features computed as Magika computes them."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from magika import Magika, PredictionMode
from magika.types import Seekable

from tests.conftest import ROOT
from tests.runtime.conftest import start_runtime  # noqa: F401 (a fixture)
from tests.trained import magika_model

CLIENT = ROOT / "examples" / "magika_client.py"
PIPELINE = ROOT / "examples" / "pipelines" / "magika.yaml"
#: Real files of known types: this very test (Python), a PNG image, a YAML manifest.
PYTHON_FILE = Path(__file__)
REAL_FILES = (PYTHON_FILE, ROOT / "docs" / "img" / "demo-hybrid.png",
              ROOT / "examples" / "pipelines" / "dialogue.yaml")
#: One line per file: ``PATH: LABEL (DESCRIPTION), probability P``.
ANSWER = re.compile(r"^(?P<path>.+): (?P<label>\S+) \((?P<description>.+)\), "
                    r"probability (?P<probability>[0-9.]+)$")


def load_client():
    spec = importlib.util.spec_from_file_location("magika_client", CLIENT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def client():
    return load_client()


def magikas_own_features(path: Path, config) -> list[int]:
    """Magika's feature extraction itself (a private method: tests only, never serving)."""
    with path.open("rb") as stream:
        found = Magika._extract_features_from_seekable(
            Seekable(stream), config.beg_size, 0, config.end_size, config.padding_token,
            config.block_size, False)
    return found.beg + found.end


@pytest.mark.parametrize("content", [
    b"print('hello')\n" * 500,  # longer than a block: beginning and end differ
    b"  \n\t leading and trailing whitespace is stripped \n\n  ",
    b"short",  # shorter than a window: padded
    bytes(range(256)) * 20,  # binary, whitespace bytes inside
    b"\x00" + b" " * 5000 + b"\x01",  # whitespace fills whole blocks
])
def test_features_match_magikas_own(client, tmp_path, content):
    path = tmp_path / "sample.bin"
    path.write_bytes(content)
    config = client.load_config()
    ours = client.file_features(path, config)
    assert ours.dtype == np.int32
    assert ours.shape == (config.beg_size + config.end_size,)
    assert ours.tolist() == magikas_own_features(path, config)


def test_the_labels_are_magikas_model_outputs_in_order(client):
    config = client.load_config()
    magika = Magika()
    own = magika._model_config.target_labels_space  # private: tests only
    assert len(config.labels) == 214  # the model's target_label width
    assert list(config.labels) == [str(label) for label in own]
    assert [config.describe(label) for label in config.labels] == [
        magika._get_ct_info(label).description for label in own]


def test_make_models_copies_magika_from_the_installed_package(example_models):
    copied = example_models / "magika.onnx"
    assert copied.read_bytes() == magika_model().read_bytes()


def test_make_models_works_without_magika(tmp_path):
    # The runtime image generates its models with onnx and numpy only.
    blocker = tmp_path / "site" / "magika"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('magika is not installed here')")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "make_models.py"), "--out",
         str(tmp_path / "models")],
        capture_output=True, text=True, check=False, timeout=120,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert "magika is not installed" in done.stdout
    assert (tmp_path / "models" / "cnn.onnx").is_file()
    assert not (tmp_path / "models" / "magika.onnx").exists()


def test_a_served_magika_classifies_real_files(example_models, start_runtime):  # noqa: F811
    runtime = start_runtime("--pipeline", PIPELINE,
                            "--model", f"content-type={example_models / 'magika.onnx'}")
    done = subprocess.run(
        [sys.executable, str(CLIENT), "--url", runtime.url, *map(str, REAL_FILES)],
        capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    answers = [ANSWER.match(line) for line in done.stdout.splitlines()]
    assert len(answers) == len(REAL_FILES), done.stdout
    magika = Magika(prediction_mode=PredictionMode.BEST_GUESS)
    for path, answer in zip(REAL_FILES, answers, strict=True):
        assert answer is not None, done.stdout
        expected = magika.identify_path(path).prediction
        assert answer["path"] == str(path)
        assert answer["label"] == expected.dl.label
        assert answer["description"] == expected.dl.description
        assert float(answer["probability"]) == pytest.approx(expected.score, abs=1e-3)
    assert answers[0]["label"] == "python"
    assert float(answers[0]["probability"]) > 0.9
