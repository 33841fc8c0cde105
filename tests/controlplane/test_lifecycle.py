"""The control plane starts, serves and stops without leftovers, reusing the cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.controlplane import build, versions
from tests.controlplane.cluster import ControlPlane
from tests.controlplane.process import port_is_free

pytestmark = pytest.mark.controlplane

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_starts_and_stops_cleanly_twice_from_the_cache(control_plane):
    builds_before = list(build.BUILT_IN_THIS_PROCESS)
    for _ in range(2):
        plane = ControlPlane.start()
        records, ports, workdir = list(plane.processes), plane.ports.all(), plane.workdir
        try:
            assert plane.built == ()
            # Knative's webhook runs as root (it is reached over the process nodes' bridge).
            assert [r.name for r in records] == [
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kwok",
                *(["knative-webhook"] if os.geteuid() == 0 else []),
            ]
            assert plane.is_running()
            assert plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
            version = plane.kubectl("version", "-o", "json").stdout
            assert f'"gitVersion": "{versions.KUBERNETES_VERSION}"' in version
        finally:
            plane.stop()
        assert not [r.name for r in records if r.is_running()]
        assert [p for p in ports if not port_is_free(p)] == []
        assert not workdir.exists()
    assert list(build.BUILT_IN_THIS_PROCESS) == builds_before


def _cli(cache_root: Path, command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLUICE_CACHE_DIR": str(cache_root)}
    return subprocess.run(
        [sys.executable, "-m", "tests.controlplane", command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_up_status_down(control_plane, tmp_path):
    # A private cache root whose components link to the real cache: the CLI's run
    # directory stays apart from a cluster a developer may have up.
    private = tmp_path / "cache"
    (private / "controlplane").mkdir(parents=True)
    real = versions.cache_dir()
    for component in versions.ALL_COMPONENTS:
        link = component.directory(private / "controlplane")
        link.symlink_to(component.directory(real), target_is_directory=True)

    up = _cli(private, "up")
    assert up.returncode == 0, up.stderr
    export = [line for line in up.stdout.splitlines() if line.startswith("export KUBECONFIG=")]
    assert len(export) == 1
    kubeconfig = export[0].removeprefix("export KUBECONFIG=")
    # `up` has returned; the control plane keeps running without it.
    state = ControlPlane.from_state(private / "controlplane" / "run" / "state.json")
    try:
        assert state.is_running()
        nodes = control_plane.kubectl("get", "nodes", "-o", "name", kubeconfig=Path(kubeconfig))
        assert nodes.stdout.split() == ["node/kwok-node-0"]
        status = _cli(private, "status")
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        down = _cli(private, "down")
    assert down.returncode == 0, down.stderr
    assert not [r.name for r in state.processes if r.is_running()]
    assert [p for p in state.ports.all() if not port_is_free(p)] == []
    assert not (private / "controlplane" / "run").exists()
    assert _cli(private, "status").returncode == 1
