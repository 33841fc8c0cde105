"""How many CPU cores this process may use, as the kernel enforces it.

In a pod, in-place resize rewrites the container's cgroup limit while the process runs,
so the answer is re-read periodically rather than fixed at start-up.

The limit that binds is the one on the process's *own* cgroup and its ancestors, found
through ``/proc/self/cgroup`` and ``/proc/self/mountinfo``: reading the cgroup root is only
right in a container with a private cgroup namespace, and wrong in a child cgroup (how
local mode runs each stage), a systemd slice or the host's namespace, where the root has
no limit and the process would believe it has every core.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class OwnCgroup:
    """The directories of this process's cgroup, own first, then each ancestor to the root.

    ``v2`` in the unified hierarchy, ``v1_cpu`` and ``v1_cpuacct`` in the v1 hierarchies
    holding those controllers (one and the same where they are mounted together); any is
    empty when the machine has no such hierarchy mounted here.
    """

    v2: tuple[Path, ...] = ()
    v1_cpu: tuple[Path, ...] = ()
    v1_cpuacct: tuple[Path, ...] = ()


def _unescape(field: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def _chain(mount_point: Path, mount_root: str, cgroup_path: str) -> tuple[Path, ...]:
    """Directories from the process's cgroup up to the mount point, or () if not below it."""
    root = mount_root.rstrip("/") + "/"
    path = cgroup_path.rstrip("/") + "/"
    if not path.startswith(root):
        return ()
    relative = [part for part in path[len(root):].split("/") if part]
    return tuple(mount_point.joinpath(*relative[:depth])
                 for depth in range(len(relative), -1, -1))


def own_cgroup(proc_cgroup: str, mountinfo: str) -> OwnCgroup:
    """Find this process's cgroup directories from the texts of the two /proc files."""
    v2_path: str | None = None
    v1_paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            v2_path = path
        for controller in controllers.split(","):
            v1_paths[controller] = path
    v2: tuple[Path, ...] = ()
    v1: dict[str, tuple[Path, ...]] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        separator = fields.index("-")
        if len(fields) < separator + 4 or len(fields) < 5:
            continue
        mount_root, mount_point = _unescape(fields[3]), Path(_unescape(fields[4]))
        fstype, options = fields[separator + 1], fields[separator + 3].split(",")
        if fstype == "cgroup2" and v2_path is not None and not v2:
            v2 = _chain(mount_point, mount_root, v2_path)
        elif fstype == "cgroup":
            for controller in ("cpu", "cpuacct"):
                if controller in options and controller in v1_paths and controller not in v1:
                    v1[controller] = _chain(mount_point, mount_root, v1_paths[controller])
    return OwnCgroup(v2, v1.get("cpu", ()), v1.get("cpuacct", ()))


def read_own_cgroup() -> OwnCgroup:
    """This process's cgroup directories (none found: an empty result, never an error)."""
    try:
        return own_cgroup(Path("/proc/self/cgroup").read_text(),
                          Path("/proc/self/mountinfo").read_text())
    except OSError:  # not Linux, or /proc not mounted
        return OwnCgroup()


def _cgroup_v2_cores(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def _cgroup_v1_cores(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _tightest(limits: list[float | None]) -> float | None:
    found = [cores for cores in limits if cores is not None]
    return min(found) if found else None


def cgroup_cores(own: OwnCgroup) -> float | None:
    """The tightest CPU limit over the process's cgroup and its ancestors, in either
    hierarchy (a hybrid machine may limit in both); None when nothing limits it."""
    return _tightest([_cgroup_v2_cores(d) for d in own.v2]
                     + [_cgroup_v1_cores(d) for d in own.v1_cpu])


@dataclass(frozen=True)
class CpuUsage:
    """Cumulative CPU accounting of a cgroup: what it used and how often it was throttled."""

    usage_s: float | None = None
    periods: int | None = None
    throttled_periods: int | None = None
    throttled_s: float | None = None


def _stat(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    pairs = (line.split() for line in lines)
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}


def _limiting(chain: tuple[Path, ...], cores: Callable[[Path], float | None]) -> Path:
    """The directory whose quota binds (throttling is counted there), else the own one."""
    limited = [(c, folder) for folder in chain if (c := cores(folder)) is not None]
    return min(limited, key=lambda pair: pair[0])[1] if limited else chain[0]


def cgroup_cpu_usage(own: OwnCgroup) -> CpuUsage:
    """CPU used by the process's cgroup and throttling of the cgroup whose quota binds it
    (v2 ``cpu.stat``; v1 ``cpuacct.usage`` and ``cpu.stat``). Missing figures are None."""
    if own.v2 and not own.v1_cpu:  # a hybrid machine keeps the cpu controller in v1
        used = _stat(own.v2[0] / "cpu.stat")
        stat = _stat(_limiting(own.v2, _cgroup_v2_cores) / "cpu.stat")
        if used or stat:
            return CpuUsage(
                used["usage_usec"] / 1e6 if "usage_usec" in used else None,
                stat.get("nr_periods"), stat.get("nr_throttled"),
                stat["throttled_usec"] / 1e6 if "throttled_usec" in stat else None,
            )
    throttling = (_stat(_limiting(own.v1_cpu, _cgroup_v1_cores) / "cpu.stat")
                  if own.v1_cpu else {})
    usage_s = None
    if own.v1_cpuacct:
        with contextlib.suppress(OSError, ValueError):  # not accounted: None
            usage_s = int((own.v1_cpuacct[0] / "cpuacct.usage").read_text()) / 1e9
    return CpuUsage(
        usage_s, throttling.get("nr_periods"), throttling.get("nr_throttled"),
        throttling["throttled_time"] / 1e9 if "throttled_time" in throttling else None,
    )


def _affinity_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_allocation(cgroup_dir: Path | None = None) -> float:
    """Cores this process may use: its cgroup's limit (v2 ``cpu.max`` or the v1 CFS quota,
    the tightest over its ancestors), capped by the CPUs it can be scheduled on.

    ``cgroup_dir`` reads one directory instead of discovering the process's own cgroup:
    for a limit mounted somewhere unusual, and for tests that inject files.
    """
    affinity = float(_affinity_cores())
    if cgroup_dir is None:
        cores = cgroup_cores(read_own_cgroup())
    else:
        cores = _tightest([_cgroup_v2_cores(cgroup_dir)]
                          + [_cgroup_v1_cores(d) for d in (cgroup_dir / "cpu",
                                                           cgroup_dir / "cpu,cpuacct",
                                                           cgroup_dir)])
    return affinity if cores is None else min(cores, affinity)

