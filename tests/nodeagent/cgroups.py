"""A node's cgroups: one folder per pod and per container, in every hierarchy that limits or
accounts for it (v1: ``cpu``, ``cpuacct`` where it is apart, ``memory``; v2: the unified
tree), the CPU limit written with the project's own cgroup code, as the kubelet would."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from sluice_local.cgroupfs import (
    CpuHierarchy,
    make_cpu_cgroup,
    remove_cgroup,
    set_cpu_limit,
    writable_cpu_hierarchy,
)

V1_ROOT = Path("/sys/fs/cgroup")


class CgroupError(RuntimeError):
    """Cgroups cannot be made here (not root, or no CPU controller)."""


@dataclass(frozen=True)
class ContainerCgroups:
    """Where one container's process goes: every folder it joins, and the limiting ones."""

    joined: tuple[Path, ...]
    cpu: Path
    memory: Path | None


class NodeCgroups:
    """The node's cgroup folders, below each hierarchy's root, removed by :meth:`close`."""

    def __init__(self, node: str) -> None:
        found = writable_cpu_hierarchy()
        if found is None:
            raise CgroupError("no writable CPU cgroup hierarchy: the node agent runs as root")
        self._cpu: CpuHierarchy = found
        self._roots = {"cpu": found.root}
        if found.version == "v1":
            for name in ("cpuacct", "memory"):
                root = V1_ROOT / name
                if root.is_dir() and root.resolve() != found.root.resolve():
                    self._roots[name] = root
        self._folder = f"sluice-node-{node}"
        for root in self._roots.values():
            self._make(root, self._folder)

    @property
    def version(self) -> str:
        """``v1`` or ``v2``."""
        return self._cpu.version

    def _make(self, parent: Path, name: str) -> Path:
        folder = parent / name
        if not folder.exists():
            make_cpu_cgroup(parent, name, self.version)
            if self.version == "v2":
                with contextlib.suppress(OSError):  # a tree without the memory controller
                    (folder / "cgroup.subtree_control").write_text("+memory")
        return folder

    def container(self, pod_uid: str, container: str) -> ContainerCgroups:
        """The container's folders (made when missing)."""
        joined = []
        for root in self._roots.values():
            pod = self._make(root / self._folder, pod_uid)
            joined.append(self._make(pod, container))
        memory_root = self._roots.get("memory", self._cpu.root)
        memory = memory_root / self._folder / pod_uid / container
        return ContainerCgroups(tuple(joined), joined[0], memory)

    def set_cpu(self, cgroups: ContainerCgroups, cores: float | None) -> None:
        """The container's CPU limit, live (None: unlimited)."""
        set_cpu_limit(cgroups.cpu, self.version, cores)

    def set_memory(self, cgroups: ContainerCgroups, limit_bytes: int | None) -> None:
        """The container's memory limit (None: unlimited)."""
        if cgroups.memory is None:
            return
        if self.version == "v1":
            target, value = "memory.limit_in_bytes", "-1" if limit_bytes is None else str(
                limit_bytes)
        else:
            target, value = "memory.max", "max" if limit_bytes is None else str(limit_bytes)
        if (cgroups.memory / target).exists():
            (cgroups.memory / target).write_text(value)

    def remove_pod(self, pod_uid: str) -> None:
        """The pod's folders, with any process left in them moved out first."""
        for root in self._roots.values():
            remove_cgroup(root, root / self._folder / pod_uid)

    def close(self) -> None:
        """Every folder of the node."""
        for root in self._roots.values():
            remove_cgroup(root, root / self._folder)
