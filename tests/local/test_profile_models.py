"""Where a manifest's model URI is on this machine (shared by every local command)."""

from __future__ import annotations

import pytest
from sluice_local.models import ModelLocationError, local_model_path, local_model_source


@pytest.fixture
def root(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("intent.onnx", "sub/deep.onnx", "with space.onnx"):
        (tmp_path / name).write_bytes(b"onnx")
    return tmp_path


@pytest.mark.parametrize(("uri", "relative"), [
    ("file:///models/intent.onnx", "intent.onnx"),
    ("file:///models/sub/deep.onnx", "sub/deep.onnx"),
    ("file:///models/with%20space.onnx", "with space.onnx"),
])
def test_models_in_the_image_directory_are_rerooted(root, uri, relative):
    assert local_model_path(uri, root) == root / relative


def test_other_file_uris_are_taken_as_they_are(root):
    uri = f"file://{root}/intent.onnx"
    assert local_model_path(uri) == root / "intent.onnx"
    assert local_model_path(uri, root / "elsewhere") == root / "intent.onnx"


def test_a_missing_image_model_says_to_give_the_model_root():
    with pytest.raises(ModelLocationError, match=r"no file at /models/absent.onnx: .*--model-root"):
        local_model_path("file:///models/absent.onnx")


def test_a_missing_file_under_the_root_is_named(root):
    with pytest.raises(ModelLocationError, match=rf"no file at {root}/absent.onnx$"):
        local_model_path("file:///models/absent.onnx", root)


@pytest.mark.parametrize(("uri", "message"), [
    ("https://example.com/m.onnx", "is remote"),
    ("pvc://claim/m.onnx", "volume claim"),
    ("file://host/m.onnx", "must be file:///ABSOLUTE/PATH"),
    ("s3://bucket/m.onnx", "scheme 's3'.* is not served"),
    ("https://", "has no host"),
])
def test_uris_without_a_local_path(root, uri, message):
    with pytest.raises(ModelLocationError, match=message):
        local_model_path(uri, root)


def test_sources_are_absolute_paths_or_urls_the_runtime_fetches(root, monkeypatch):
    monkeypatch.chdir(root)
    assert local_model_source("file:///models/intent.onnx", root.relative_to(root)) == str(
        root / "intent.onnx")
    assert local_model_source("http://example.com/m.onnx", root) == "http://example.com/m.onnx"
    with pytest.raises(ModelLocationError, match="volume claim"):
        local_model_source("pvc://claim/m.onnx", root)
    with pytest.raises(ModelLocationError, match="has no host"):
        local_model_source("http://", root)
