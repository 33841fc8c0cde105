"""Fixtures for runtime tests: generated models and runtime processes on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.runtime import models
from tests.runtime.cgroups import scratch_cgroup, set_cpu_limit
from tests.runtime.harness import Runtime


@pytest.fixture(scope="session")
def test_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models built for single behaviours (datatypes, slowness, failures, weight size)."""
    out = tmp_path_factory.mktemp("test-models")
    models.passthrough(out / "passthrough.onnx")
    # FP16 has no typed contents field in the protocol: this one takes the rest.
    models.passthrough(out / "typed.onnx", tuple(t for t in models.DATATYPES if t != "FP16"))
    models.slow(out / "slow.onnx")
    models.spinner(out / "spinner.onnx")
    models.labels(out / "labels.onnx")
    models.row_sum(out / "row_sum.onnx")
    models.reshaper(out / "reshaper.onnx")
    return out


@pytest.fixture
def start_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """Start ``sluice-runtime serve`` with the given arguments; stopped after the test."""
    started: list[Runtime] = []

    def start(*args: str | Path) -> Runtime:
        runtime = Runtime([str(a) for a in args], tmp_path)
        started.append(runtime)
        return runtime.start()

    yield start
    for runtime in reversed(started):
        runtime.stop()


@pytest.fixture
def cpu_cgroup():
    """A CPU cgroup of our own whose limit a test sets and rewrites (removed after)."""
    with scratch_cgroup() as found:
        yield found


@pytest.fixture
def child_cgroups():
    """A parent cgroup limited to 0.5 core and an unlimited child inside it (removed after)."""
    with scratch_cgroup() as (parent, version):
        set_cpu_limit(parent, version, 0.5)
        child = parent / "stage"
        child.mkdir()
        yield child
