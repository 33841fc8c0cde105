"""The CPU the process really has: its own cgroup, found through /proc, tightest over ancestors.

Parsing and the walk over ancestors are tested on injected /proc texts and files for the
layouts a machine cannot switch between (v2, v1, hybrid, namespaced); a real child cgroup
of this machine checks the whole path end to end (as root, which CI is).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sluice_runtime.cpu import (
    CpuUsage,
    OwnCgroup,
    cgroup_cores,
    cgroup_cpu_usage,
    cpu_allocation,
    own_cgroup,
)

from tests.runtime.cgroups import in_cgroup
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


def test_cpu_accounting_reads_use_here_and_throttling_where_the_quota_binds(tmp_path):
    root = write(tmp_path / "v2", {"cpu.stat": "usage_usec 900000000\n"})
    parent = write(root / "pipeline", {
        "cpu.max": "50000 100000\n",
        "cpu.stat": "usage_usec 9000000\nnr_periods 40\nnr_throttled 7\nthrottled_usec 350000\n"})
    own = write(parent / "stage", {"cpu.max": "max 100000\n",
                                   "cpu.stat": "usage_usec 2500000\nnr_periods 0\n"})
    usage = cgroup_cpu_usage(OwnCgroup(v2=(own, parent, root)))
    assert (usage.usage_s, usage.periods, usage.throttled_periods) == (2.5, 40, 7)
    assert usage.throttled_s == pytest.approx(0.35)
    throttled = "nr_periods 10\nnr_throttled 4\nthrottled_time 2000000000\n"
    cpu = write(tmp_path / "cpu" / "stage", {**v1_quota(25000), "cpu.stat": throttled})
    acct = write(tmp_path / "cpuacct" / "stage", {"cpuacct.usage": "1500000000\n"})
    usage = cgroup_cpu_usage(OwnCgroup(v1_cpu=(cpu,), v1_cpuacct=(acct,)))
    assert usage == CpuUsage(1.5, 10, 4, 2.0)
    assert cgroup_cpu_usage(OwnCgroup()) == CpuUsage()
