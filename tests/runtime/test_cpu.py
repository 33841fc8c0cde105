"""The CPU the process really has: its own cgroup, found through /proc, tightest over ancestors.

Parsing and the walk over ancestors are tested on injected /proc texts and files for the
layouts a machine cannot switch between (v2, v1, hybrid, namespaced); a real child cgroup
of this machine checks the whole path end to end (as root, which CI is).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sluice_runtime.cpu import OwnCgroup, cgroup_cores, cpu_allocation, own_cgroup

from tests.runtime.harness import Runtime

V2_MOUNTINFO = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
HYBRID_MOUNTINFO = (
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)


def test_v2_process_in_a_systemd_slice_walks_up_to_the_root():
    own = own_cgroup("0::/system.slice/sluice.service\n", V2_MOUNTINFO)
    assert own.v2 == (Path("/sys/fs/cgroup/system.slice/sluice.service"),
                      Path("/sys/fs/cgroup/system.slice"), Path("/sys/fs/cgroup"))
    assert own.v1_cpu == ()


def test_hybrid_machine_finds_the_v1_cpu_hierarchy_and_the_unified_one():
    proc = "4:memory:/a\n2:cpu,cpuacct:/local/stage-1\n0::/other\n"
    own = own_cgroup(proc, HYBRID_MOUNTINFO)
    assert own.v1_cpu == (Path("/sys/fs/cgroup/cpu,cpuacct/local/stage-1"),
                          Path("/sys/fs/cgroup/cpu,cpuacct/local"),
                          Path("/sys/fs/cgroup/cpu,cpuacct"))
    assert own.v2[0] == Path("/sys/fs/cgroup/unified/other")


def test_namespaced_container_sees_its_own_cgroup_at_the_mount_point():
    # A private cgroup namespace: the process is at "/" and the mount's root is "/".
    assert own_cgroup("0::/\n", V2_MOUNTINFO).v2 == (Path("/sys/fs/cgroup"),)


def test_a_cgroup_outside_the_mounted_subtree_is_not_guessed():
    mountinfo = "29 23 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert own_cgroup("0::/elsewhere\n", mountinfo).v2 == ()
    assert own_cgroup("0::/kubepods/pod1/ctr\n", mountinfo).v2 == (
        Path("/sys/fs/cgroup/ctr"), Path("/sys/fs/cgroup"))


def test_mount_points_with_escaped_spaces():
    mountinfo = r"29 23 0:26 / /mnt/my\040cgroups rw - cgroup2 cgroup2 rw" + "\n"
    assert own_cgroup("0::/x\n", mountinfo).v2[0] == Path("/mnt/my cgroups/x")


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def v1_quota(quota_us: int) -> dict[str, str]:
    return {"cpu.cfs_quota_us": f"{quota_us}\n", "cpu.cfs_period_us": "100000\n"}


def test_the_tightest_limit_over_ancestors_and_hierarchies_binds(tmp_path):
    root = write(tmp_path / "v2", {"cpu.max": "max 100000\n"})
    parent = write(root / "slice", {"cpu.max": "150000 100000\n"})
    own = write(parent / "stage", {"cpu.max": "max 100000\n"})
    assert cgroup_cores(OwnCgroup(v2=(own, parent, root))) == 1.5
    v1 = write(tmp_path / "v1", v1_quota(50000))
    assert cgroup_cores(OwnCgroup(v2=(own, parent, root), v1_cpu=(v1,))) == 0.5
    unlimited = write(tmp_path / "free", v1_quota(-1))
    assert cgroup_cores(OwnCgroup(v1_cpu=(unlimited,))) is None
    assert cgroup_cores(OwnCgroup()) is None


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


def in_cgroup(cgroup: Path, argv: list[str]) -> list[str]:
    """``argv`` started inside ``cgroup`` (the shell joins it, then execs)."""
    return ["sh", "-c", f'echo $$ > "{cgroup}/cgroup.procs" && exec "$@"', "sh", *argv]


def test_a_process_in_a_child_cgroup_sees_its_ancestors_limit(child_cgroups):
    probe = [sys.executable, "-c",
             "from sluice_runtime.cpu import cpu_allocation; print(cpu_allocation())"]
    outside = float(subprocess.run(probe, capture_output=True, text=True, check=True).stdout)
    inside = float(subprocess.run(in_cgroup(child_cgroups, probe), capture_output=True,
                                  text=True, check=True).stdout)
    assert inside == 0.5
    assert outside == cpu_allocation() > 0.5


def test_the_runtime_in_a_child_cgroup_runs_one_executor_for_half_a_core(
        child_cgroups, example_models, tmp_path):
    runtime = Runtime(["--model", f"mlp={example_models / 'mlp.onnx'}"], tmp_path,
                      wrap=lambda command: in_cgroup(child_cgroups, command))
    runtime.start()
    try:
        assert runtime.metric("sluice_cpu_allocation_cores") == 0.5
        assert runtime.metric("sluice_executors") == 1
    finally:
        runtime.stop()
