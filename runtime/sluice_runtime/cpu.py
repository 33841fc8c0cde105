"""How many CPU cores this process may use, as the kernel enforces it.

In a pod, in-place resize rewrites the container's cgroup limit while the process runs,
so the answer is re-read periodically rather than fixed at start-up.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _cgroup_v2_cores(root: Path) -> float | None:
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def _cgroup_v1_cores(root: Path) -> float | None:
    for folder in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


def _affinity_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_allocation(cgroup_root: Path) -> float:
    """Cores this process may use: cgroup v2 ``cpu.max``, then the v1 CFS quota, then affinity.

    A cgroup limit larger than the CPUs the process can be scheduled on is capped by them.
    """
    affinity = _affinity_cores()
    for reader in (_cgroup_v2_cores, _cgroup_v1_cores):
        cores = reader(cgroup_root)
        if cores is not None:
            return min(cores, float(affinity))
    return float(affinity)


def executors_for(cores: float) -> int:
    """Concurrent batch executions for a CPU allocation: one per whole core, at least one.

    A fractional core rounds to nearest: 1.5 cores run two executors that the kernel
    throttles a little, which beats leaving half a core idle.
    """
    return max(1, math.floor(cores + 0.5))
