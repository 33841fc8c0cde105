"""Where profiling may make CPU cgroups, and why not when it may not.

A profile measured without a quota would claim latencies at 0.5 cores that were measured
on every core: profiling refuses instead, saying what stands in the way and what to do.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from sluice_local.cgroupfs import (
    CPU_V1,
    CPU_V2,
    CpuHierarchy,
    make_cpu_cgroup,
    remove_cgroup,
    set_cpu_limit,
    writable_cpu_hierarchy,
)

_DELEGATE_HINT = ("run as root (sudo), or give --cgroup-root a cgroup v2 directory delegated "
                  "to you with the cpu controller enabled (e.g. from systemd-run --user "
                  "--scope -p Delegate=yes)")


class QuotaError(RuntimeError):
    """CPU cgroups cannot be made or used here (one line: why, and what to do)."""


def _has_cpu_controller(folder: Path, listing: str) -> bool:
    try:
        return "cpu" in (folder / listing).read_text().split()
    except OSError:
        return False


def explain_unwritable(v1: Path = CPU_V1, v2: Path = CPU_V2, uid: int | None = None) -> str:
    """Why no CPU cgroup can be made under the default hierarchies, and what to do."""
    uid = os.geteuid() if uid is None else uid
    if (v1 / "cpu.cfs_quota_us").exists():
        return (f"the cgroup v1 cpu hierarchy {v1} is not writable by uid {uid} "
                f"(read-only, or not root): {_DELEGATE_HINT}")
    if (v2 / "cgroup.controllers").exists():
        if not _has_cpu_controller(v2, "cgroup.controllers"):
            return (f"the cpu controller is not available in {v2} (cgroup.controllers lacks "
                    "cpu; is it bound to a v1 hierarchy?): enable it, or "
                    f"{_DELEGATE_HINT}")
        return (f"the cgroup v2 hierarchy {v2} is not writable by uid {uid} "
                f"(read-only, or not root): {_DELEGATE_HINT}")
    return (f"no cgroup filesystem with the cpu controller at {v1} or {v2}: profiling "
            "needs Linux CPU cgroups, mounted and writable")


def hierarchy_at(root: Path) -> CpuHierarchy:
    """The CPU hierarchy rooted at ``root`` (a cgroup directory given by the user);
    QuotaError saying why it cannot be used."""
    if not root.is_dir():
        raise QuotaError(f"--cgroup-root {root}: no such directory")
    if (root / "cpu.cfs_quota_us").exists():
        found = CpuHierarchy(root, "v1")
    elif (root / "cgroup.controllers").exists():
        if not _has_cpu_controller(root, "cgroup.subtree_control"):
            raise QuotaError(f"--cgroup-root {root}: the cpu controller is not enabled for "
                             f"its children (echo +cpu > {root}/cgroup.subtree_control)")
        found = CpuHierarchy(root, "v2")
    else:
        raise QuotaError(f"--cgroup-root {root}: not a CPU cgroup directory (no "
                         "cpu.cfs_quota_us, no cgroup.controllers)")
    if not os.access(root, os.W_OK):
        raise QuotaError(f"--cgroup-root {root}: not writable by uid {os.geteuid()}: "
                         f"{_DELEGATE_HINT}")
    return found


def find_hierarchy(root: Path | None = None) -> CpuHierarchy:
    """The hierarchy to make quota cgroups in: ``root`` if given, else the system's;
    QuotaError when there is none this process may write."""
    if root is not None:
        return hierarchy_at(root)
    found = writable_cpu_hierarchy()
    if found is None:
        raise QuotaError(explain_unwritable())
    return found


@contextlib.contextmanager
def quota_cgroup(hierarchy: CpuHierarchy, name: str, cores: float) -> Iterator[Path]:
    """A new cgroup ``name`` limited to ``cores``, removed on the way out whatever happens
    (processes still in it are moved to the hierarchy's root first)."""
    try:
        folder = make_cpu_cgroup(hierarchy.root, name, hierarchy.version)
    except OSError as exc:
        with contextlib.suppress(OSError):  # made, but not made usable (v2 subtree_control)
            remove_cgroup(hierarchy.root, hierarchy.root / name)
        raise QuotaError(f"cannot make a CPU cgroup in {hierarchy.root}: "
                         f"{exc.strerror or exc}: {_DELEGATE_HINT}") from None
    try:
        try:
            set_cpu_limit(folder, hierarchy.version, cores)
        except OSError as exc:
            raise QuotaError(f"cannot set a {cores:g}-core quota on {folder}: "
                             f"{exc.strerror or exc}") from None
        yield folder
    finally:
        remove_cgroup(hierarchy.root, folder)
