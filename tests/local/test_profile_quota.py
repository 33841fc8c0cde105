"""Where quota cgroups can be made, and the one line that says why not.

This machine runs the tests as root with writable cgroups, so a hierarchy that cannot be
used is simulated with directories shaped like one (a fault the real part cannot produce
on demand here); the real cgroups are exercised in test_profile_command.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sluice_local.profiling.quota import QuotaError, explain_unwritable, hierarchy_at


def v1_like(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cpu.cfs_quota_us").write_text("-1\n")
    return folder


def v2_like(folder: Path, controllers: str, subtree: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cgroup.controllers").write_text(controllers + "\n")
    (folder / "cgroup.subtree_control").write_text(subtree + "\n")
    return folder


def test_explains_a_v1_hierarchy_it_cannot_write(tmp_path):
    message = explain_unwritable(v1_like(tmp_path / "cpu"), tmp_path, uid=1000)
    assert "v1 cpu hierarchy" in message
    assert "not writable by uid 1000" in message
    assert "run as root" in message
    assert "--cgroup-root" in message


def test_explains_a_v2_hierarchy_without_the_cpu_controller(tmp_path):
    v2 = v2_like(tmp_path / "unified", "memory io pids")
    message = explain_unwritable(tmp_path / "none", v2, uid=1000)
    assert "cpu controller is not available" in message


def test_explains_a_v2_hierarchy_it_cannot_write(tmp_path):
    v2 = v2_like(tmp_path / "unified", "cpu memory")
    assert "v2 hierarchy" in explain_unwritable(tmp_path / "none", v2, uid=1000)


def test_explains_no_cgroups_at_all(tmp_path):
    message = explain_unwritable(tmp_path / "a", tmp_path / "b", uid=0)
    assert message.startswith("no cgroup filesystem with the cpu controller")


def test_a_given_v1_directory_is_used(tmp_path):
    found = hierarchy_at(v1_like(tmp_path / "cg"))
    assert (found.root, found.version) == (tmp_path / "cg", "v1")


def test_a_given_v2_directory_needs_cpu_for_its_children(tmp_path):
    with pytest.raises(QuotaError, match=r"echo \+cpu > .*/cgroup.subtree_control"):
        hierarchy_at(v2_like(tmp_path / "off", "cpu memory", "memory"))
    found = hierarchy_at(v2_like(tmp_path / "on", "cpu memory", "cpu memory"))
    assert found.version == "v2"


@pytest.mark.parametrize(("name", "message"), [
    ("absent", "no such directory"),
    ("plain", "not a CPU cgroup directory"),
])
def test_a_given_directory_that_is_no_cgroup(tmp_path, name, message):
    (tmp_path / "plain").mkdir()
    with pytest.raises(QuotaError, match=message):
        hierarchy_at(tmp_path / name)
