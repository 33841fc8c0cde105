"""Real CPU cgroups for tests: find a writable hierarchy, make and limit cgroups, start a
process inside one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CPU_V1 = Path("/sys/fs/cgroup/cpu")
CPU_V2 = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def writable_cpu_hierarchy() -> tuple[Path, str] | None:
    """Where this machine lets us make a CPU cgroup, and the file that limits it."""
    if (CPU_V1 / "cpu.cfs_quota_us").exists() and os.access(CPU_V1, os.W_OK):
        return CPU_V1, "v1"
    controllers = CPU_V2 / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split() and os.access(
            CPU_V2, os.W_OK):
        return CPU_V2, "v2"
    return None


def set_cpu_limit(cgroup: Path, version: str, cores: float | None) -> None:
    """Limit ``cgroup`` to ``cores`` (None: unlimited), as the kubelet does on a resize."""
    quota = -1 if cores is None else round(cores * PERIOD_US)
    if version == "v1":
        (cgroup / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (cgroup / "cpu.cfs_quota_us").write_text(str(quota))
    else:
        (cgroup / "cpu.max").write_text(f"{'max' if quota < 0 else quota} {PERIOD_US}")


def _remove(hierarchy: Path, folder: Path) -> None:
    if folder.exists():
        for pid in (folder / "cgroup.procs").read_text().split():
            (hierarchy / "cgroup.procs").write_text(pid)
        folder.rmdir()


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
    hierarchy, version = found
    folder = hierarchy / f"sluice-test-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        if version == "v2":
            (folder / "cgroup.subtree_control").write_text("+cpu")
        yield folder, version
    finally:
        for child in folder.iterdir():
            if child.is_dir():
                _remove(hierarchy, child)
        _remove(hierarchy, folder)


def in_cgroup(cgroup: Path, argv: list[str]) -> list[str]:
    """``argv`` started inside ``cgroup`` (the shell joins it, then execs)."""
    return ["sh", "-c", f'echo $$ > "{cgroup}/cgroup.procs" && exec "$@"', "sh", *argv]
