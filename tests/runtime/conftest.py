"""Fixtures for runtime tests: generated models and runtime processes on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.runtime import models
from tests.runtime.cgroups import writable_cpu_hierarchy
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
def child_cgroups():
    """A parent cgroup limited to 0.5 core and an unlimited child inside it (removed after)."""
    found = writable_cpu_hierarchy()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root on a machine with a writable CPU cgroup")
        pytest.skip("needs a writable CPU cgroup (run as root)")
    hierarchy, version = found
    parent = hierarchy / f"sluice-test-{uuid.uuid4().hex[:8]}"
    child = parent / "stage"
    parent.mkdir()
    try:
        if version == "v1":
            (parent / "cpu.cfs_period_us").write_text("100000")
            (parent / "cpu.cfs_quota_us").write_text("50000")
        else:
            (parent / "cgroup.subtree_control").write_text("+cpu")
            (parent / "cpu.max").write_text("50000 100000")
        child.mkdir()
        yield child
    finally:
        for folder in (child, parent):
            if folder.exists():
                for pid in (folder / "cgroup.procs").read_text().split():
                    (hierarchy / "cgroup.procs").write_text(pid)
                folder.rmdir()
