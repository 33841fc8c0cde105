"""Real CPU cgroups for tests, made with the project's own cgroup code."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sluice_local.cgroupfs import (
    in_cgroup,
    make_cpu_cgroup,
    remove_cgroup,
    set_cpu_limit,
    writable_cpu_hierarchy,
)

__all__ = ["in_cgroup", "scratch_cgroup", "set_cpu_limit"]


@contextmanager
def scratch_cgroup() -> Iterator[tuple[Path, str]]:
    """A new CPU cgroup under the root (its path and hierarchy version), removed after.

    Skips where cgroups cannot be written, except under CI, which runs as root.
    """
    found = writable_cpu_hierarchy()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root on a machine with a writable CPU cgroup")
        pytest.skip("needs a writable CPU cgroup (run as root)")
    folder = make_cpu_cgroup(found.root, f"sluice-test-{uuid.uuid4().hex[:8]}", found.version)
    try:
        yield folder, found.version
    finally:
        remove_cgroup(found.root, folder)
