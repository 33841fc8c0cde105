"""Make CPU cgroups, set their quota, run processes in them: what the kubelet does for a
container's CPU limit and an in-place resize, for local processes (benchmarks, tests, and
local mode's stage processes).

Writes go to the cgroup filesystem directly: v1 ``cpu.cfs_quota_us`` (the ``cpu``
hierarchy; ``cpuacct`` may be separate) or v2 ``cpu.max``. Needs write access to the
hierarchy: root, or a delegated subtree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CPU_V1 = Path("/sys/fs/cgroup/cpu")
CPU_V2 = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


@dataclass(frozen=True)
class CpuHierarchy:
    """Where CPU cgroups can be made here, and which interface limits them."""

    root: Path
    version: str  # "v1" or "v2"


def writable_cpu_hierarchy() -> CpuHierarchy | None:
    """The CPU hierarchy this process may make cgroups in, or None."""
    if (CPU_V1 / "cpu.cfs_quota_us").exists() and os.access(CPU_V1, os.W_OK):
        return CpuHierarchy(CPU_V1, "v1")
    controllers = CPU_V2 / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split() and os.access(
            CPU_V2, os.W_OK):
        return CpuHierarchy(CPU_V2, "v2")
    return None


def make_cpu_cgroup(parent: Path, name: str, version: str) -> Path:
    """A new cgroup ``name`` under ``parent`` whose children can be CPU-limited too."""
    folder = parent / name
    folder.mkdir()
    if version == "v2":
        (folder / "cgroup.subtree_control").write_text("+cpu")
    return folder


def set_cpu_limit(cgroup: Path, version: str, cores: float | None) -> None:
    """Limit ``cgroup`` to ``cores`` (None: unlimited), live, as an in-place resize does."""
    quota = -1 if cores is None else round(cores * PERIOD_US)
    if version == "v1":
        (cgroup / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (cgroup / "cpu.cfs_quota_us").write_text(str(quota))
    else:
        (cgroup / "cpu.max").write_text(f"{'max' if quota < 0 else quota} {PERIOD_US}")


def remove_cgroup(hierarchy: Path, cgroup: Path) -> None:
    """Move any process left in ``cgroup`` (and its children) to the root, then remove it."""
    if not cgroup.exists():
        return
    for child in cgroup.iterdir():
        if child.is_dir():
            remove_cgroup(hierarchy, child)
    for pid in (cgroup / "cgroup.procs").read_text().split():
        (hierarchy / "cgroup.procs").write_text(pid)
    cgroup.rmdir()


def in_cgroup(cgroup: Path, argv: list[str]) -> list[str]:
    """``argv`` started inside ``cgroup`` (a shell joins it, then execs the command)."""
    return ["sh", "-c", f'echo $$ > "{cgroup}/cgroup.procs" && exec "$@"', "sh", *argv]
