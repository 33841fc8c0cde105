import pytest
from sluice_operator.modelsource import (
    MalformedSource,
    ModelSource,
    UnsupportedSource,
    resolve_source,
)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///models/intent.onnx", ModelSource("/models/intent.onnx")),
        ("file:///models/a%20b.onnx", ModelSource("/models/a b.onnx")),
        ("file:///models/./x/../intent.onnx", ModelSource("/models/intent.onnx")),
        ("https://models.example/intent.onnx", ModelSource("https://models.example/intent.onnx")),
        ("http://10.0.0.1:8080/m.onnx?v=2", ModelSource("http://10.0.0.1:8080/m.onnx?v=2")),
        ("pvc://models/intent.onnx", ModelSource("/models/pvc/models/intent.onnx", "models")),
        ("pvc://my-claim/dir/sub/policy.onnx",
         ModelSource("/models/pvc/my-claim/dir/sub/policy.onnx", "my-claim")),
    ],
)
def test_sources(uri, expected):
    assert resolve_source(uri) == expected


def test_claim_mount_path():
    assert resolve_source("pvc://weights/a.onnx").mount_path == "/models/pvc/weights"
    assert resolve_source("file:///a.onnx").mount_path is None


@pytest.mark.parametrize(
    ("uri", "error", "says"),
    [
        ("s3://bucket/model.onnx", UnsupportedSource, "'s3'"),
        ("gs://bucket/model.onnx", UnsupportedSource, "pvc://CLAIM/PATH"),
        ("pvc://claim", MalformedSource, "pvc://CLAIM/PATH"),
        ("pvc://claim/", MalformedSource, "pvc://CLAIM/PATH"),
        ("pvc://Claim/m.onnx", MalformedSource, "claim name"),
        ("pvc://claim/../etc/passwd", MalformedSource, "inside it"),
        ("file://host/models/m.onnx", MalformedSource, "file:///ABSOLUTE/PATH"),
        ("https:///nohost.onnx", MalformedSource, "no host"),
    ],
)
def test_bad_sources(uri, error, says):
    with pytest.raises(error, match=says.replace("(", r"\(").replace(".", r"\.")):
        resolve_source(uri)
