"""The manifest `sluice split` writes, served by real runtimes, fused (every part in one
process) and isolated (a runtime per part behind a router): a tritonclient request gets
the whole model's answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.local.test_split import ATOL, RTOL, build_skip_model, sample, split_json, whole
from tests.runtime.conftest import start_runtime  # noqa: F401 (a fixture)
from tests.runtime.harness import infer
from tests.trained import magika_model

#: Each model and the parts it is cut into here (the skip model's cuts carry two tensors).
SPLITS = {"cnn": 4, "skip": 4, "magika": 2}


@pytest.fixture(scope="module")
def splits(example_models: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, tuple[Path, dict]]:
    """Each model and its split's report; an SLO no loaded test machine misses."""
    models = {"cnn": example_models / "cnn.onnx",
              "skip": build_skip_model(tmp_path_factory.mktemp("skip") / "skip.onnx"),
              "magika": magika_model()}
    return {key: (models[key], split_json(models[key], tmp_path_factory.mktemp(key),
                                          "--parts", parts, "--estimate", "--batch", 2,
                                          "--slo-ms", 600_000))
            for key, parts in SPLITS.items()}


def stages(report: dict) -> list[tuple[str, str]]:
    """(stage, part file) in order."""
    return [(f"part{p['part']}", p["file"]) for p in report["parts"]]


def assert_answers_as_the_whole_model(runtime, model: Path, key: str, report: dict) -> None:
    feed = sample(key)
    pipeline = Path(report["manifest"]).stem
    result = infer(runtime.client(), pipeline, feed, client_timeout=120)
    for name, expected in whole(model, feed).items():
        got = result.as_numpy(name)
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("key", list(SPLITS))
def test_the_parts_served_fused_answer_as_the_whole_model(start_runtime, splits, key):  # noqa: F811
    model, report = splits[key]
    overrides = [arg for stage, path in stages(report) for arg in ("--model", f"{stage}={path}")]
    server = start_runtime("--pipeline", report["manifest"], *overrides)
    assert_answers_as_the_whole_model(server, model, key, report)


@pytest.mark.parametrize("key", list(SPLITS))
def test_the_parts_served_isolated_answer_as_the_whole_model(start_runtime, splits, key):  # noqa: F811
    model, report = splits[key]
    remotes = []
    for stage, path in stages(report):
        part = start_runtime("--model", f"{stage}={path}")
        remotes += ["--remote", f"{stage}={part.url}"]
    router = start_runtime("--pipeline", report["manifest"], *remotes)
    assert_answers_as_the_whole_model(router, model, key, report)
    if key == "skip":  # the cuts carried the skip connection between processes
        assert any(len(cut["tensors"]) > 1 for cut in report["cuts"])
