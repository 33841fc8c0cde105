"""Real CPU cgroups for tests: find a writable hierarchy, start a process inside one."""

from __future__ import annotations

import os
from pathlib import Path

CPU_V1 = Path("/sys/fs/cgroup/cpu")
CPU_V2 = Path("/sys/fs/cgroup")


def writable_cpu_hierarchy() -> tuple[Path, str] | None:
    """Where this machine lets us make a CPU cgroup, and the file that limits it."""
    if (CPU_V1 / "cpu.cfs_quota_us").exists() and os.access(CPU_V1, os.W_OK):
        return CPU_V1, "v1"
    controllers = CPU_V2 / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split() and os.access(
            CPU_V2, os.W_OK):
        return CPU_V2, "v2"
    return None


def in_cgroup(cgroup: Path, argv: list[str]) -> list[str]:
    """``argv`` started inside ``cgroup`` (the shell joins it, then execs)."""
    return ["sh", "-c", f'echo $$ > "{cgroup}/cgroup.procs" && exec "$@"', "sh", *argv]
