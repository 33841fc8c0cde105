"""`sluice profile` for real: workers under real CPU quotas, the profile file they make,
cgroups cleaned up after success, failure and Ctrl-C, and one-line errors."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sluice_core.profiles import load_profile
from sluice_local import cli
from sluice_local.cgroupfs import writable_cpu_hierarchy

from tests.runtime import models
from tests.runtime.cgroups import scratch_cgroup


def busy(path: Path) -> Path:
    """Compute-bound, cost linear in rows (about 20 ms a row on one core here), so a batch
    of 8 outlasts a 0.5-core quota's 50 ms per period even on a machine a few times
    faster."""
    return models.slow(path, width=512, layers=64, seq=64)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("profile-models")
    busy(out / "busy.onnx")
    models.slow(out / "small.onnx", width=64, layers=2)
    models.slow(out / "smaller.onnx", width=32, layers=1)
    (out / "corrupt.onnx").write_bytes(b"not an onnx model")
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def children(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def manifest(tmp_path: Path, stages: list[dict], name: str = "chat") -> Path:
    document = {"apiVersion": "sluice.dev/v1alpha1", "kind": "InferencePipeline",
                "metadata": {"name": name},
                "spec": {"slo": {"latencyMs": 100}, "stages": stages}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_compute_bound_model_is_slower_under_a_smaller_quota(model_dir, tmp_path, capsys):
    out = tmp_path / "busy.json"
    with scratch_cgroup() as (root, _):
        status = cli.main([
            "profile", str(model_dir / "busy.onnx"), "--out", str(out), "--cores", "0.5,1",
            "--batches", "1,8", "--seconds-per-point", "0.1", "--min-samples", "3",
            "--cgroup-root", str(root)])
        left = children(root)
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert left == []  # every job's cgroup removed
    assert f"wrote {out}" in captured.out
    assert "2/2 busy/default @ 1 cores" in captured.err  # the progress, one line a job
    profile = load_profile(out)
    assert profile.pipeline == "busy"
    model = profile.stage("busy").variant("default")
    assert model.sha256 == sha256(model_dir / "busy.onnx")
    assert model.model == "busy.onnx"
    assert model.cores_measured == (0.5, 1.0)
    assert model.batches_measured == (1, 8)
    assert model.load_s > 0
    assert model.warmup_s > 0
    assert model.rss_mib > 10
    assert {(p.cores, p.batch): p.threads for p in model.points} == {
        (0.5, 1): 1, (0.5, 8): 1, (1.0, 1): 1, (1.0, 8): 1}
    assert all(p.samples >= 3 for p in model.points)
    # Each batch of 8 outlasts the half core's quota per period: it waits out throttling.
    ratio = model.latency_ms(8, 0.5) / model.latency_ms(8, 1.0)
    assert ratio > 1.4, [p for p in model.points if p.batch == 8]
    assert profile.host["cgroup"] in ("v1", "v2")
    assert profile.host["cores"] == len(os.sched_getaffinity(0))


@pytest.fixture
def system_hierarchy():
    found = writable_cpu_hierarchy()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root on a machine with a writable CPU cgroup")
        pytest.skip("needs a writable CPU cgroup (run as root)")
    return found


def test_every_variant_of_every_stage(model_dir, tmp_path, capsys, system_hierarchy):
    stages = [
        {"name": "first", "model": {"uri": "file:///models/small.onnx"},
         "accuracy": 0.95, "batching": {"maxBatchSize": 3},
         "variants": [{"name": "tiny", "accuracy": 0.8,
                       "model": {"uri": "file:///models/smaller.onnx",
                                 "sha256": sha256(model_dir / "smaller.onnx")}}]},
        {"name": "second", "model": {"uri": f"file://{model_dir}/smaller.onnx"}},
    ]
    out = tmp_path / "profiles" / "chat.json"
    status = cli.main([
        "profile", str(manifest(tmp_path, stages)), "--model-root", str(model_dir),
        "--out", str(out), "--cores", "1", "--batches", "1,4", "--seconds-per-point", "0.05",
        "--min-samples", "2"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    mine = f"sluice-profile-{os.getpid()}-"
    assert [n for n in children(system_hierarchy.root) if n.startswith(mine)] == []
    profile = load_profile(out)
    assert list(profile.stages) == ["first", "second"]
    first = profile.stage("first")
    assert sorted(first.variants) == ["default", "tiny"]
    assert (first.variant().accuracy, first.variant("tiny").accuracy) == (0.95, 0.8)
    assert first.variant("tiny").sha256 == sha256(model_dir / "smaller.onnx")
    assert first.variant().model == "small.onnx"
    # maxBatchSize 3 is measured besides the grid (the planner may choose either).
    assert first.variant().batches_measured == (1, 3, 4)
    assert profile.stage("second").variant().batches_measured == (1, 4, 8)  # default 8


def test_a_failing_worker_leaves_no_cgroup(model_dir, capsys, tmp_path):
    with scratch_cgroup() as (root, _):
        status = cli.main(["profile", str(model_dir / "corrupt.onnx"), "--cores", "1",
                           "--batches", "1", "--out", str(tmp_path / "x.json"),
                           "--cgroup-root", str(root)])
        left = children(root)
    err = capsys.readouterr().err
    assert status == 2
    assert left == []
    assert "sluice profile: error: corrupt/default @ 1 cores: " in err
    assert "onnxruntime cannot load" in err
    assert not (tmp_path / "x.json").exists()


def worker_running(cgroup: Path) -> bool:
    """The measurement worker runs in ``cgroup`` (past the shell that put it there)."""
    for pid in (cgroup / "cgroup.procs").read_text().split():
        try:
            if b"sluice_runtime.measure" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def test_ctrl_c_stops_the_worker_and_removes_its_cgroup(model_dir, tmp_path):
    with scratch_cgroup() as (root, _):
        process = subprocess.Popen(
            [sys.executable, "-m", "sluice_local", "profile", str(model_dir / "busy.onnx"),
             "--cores", "0.5", "--batches", "8", "--seconds-per-point", "30",
             "--out", str(tmp_path / "x.json"), "--cgroup-root", str(root)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)  # its own process group, as a terminal's Ctrl-C reaches
        try:
            deadline = time.monotonic() + 60
            while not children(root) and process.poll() is None:
                assert time.monotonic() < deadline, "no job cgroup appeared"
                time.sleep(0.05)
            (job,) = children(root)
            while not worker_running(root / job):
                assert time.monotonic() < deadline, "no worker started in the job's cgroup"
                time.sleep(0.02)
            os.killpg(process.pid, signal.SIGINT)
            _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        left = children(root)
    assert process.returncode == 130, err
    assert left == []
    assert "interrupted" in err
    assert not (tmp_path / "x.json").exists()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(("make_args", "message"), [
    (lambda d, t: [str(t / "absent.onnx")], "no model file at"),
    (lambda d, t: [str(t / "absent.yaml")], "cannot read the manifest"),
    (lambda d, t: [str(write(t / "bad.yaml", "spec: [unclosed"))], "not valid YAML"),
    (lambda d, t: [str(write(t / "nospec.yaml", "metadata: {name: x}\n"))],
     "spec: is required"),
    (lambda d, t: [str(manifest(t, [{"name": "a", "model": {"uri": "file:///models/x.onnx"}}]))],
     "stage a, variant default: model file:///models/x.onnx: no file at /models/x.onnx"),
    (lambda d, t: [str(manifest(t, [{"name": "a", "model": {"uri": "pvc://claim/m.onnx"}}])),
                   "--model-root", str(d)], "volume claim"),
    (lambda d, t: [str(d / "small.onnx"), "--cores", "64"], "exceeds the"),
    (lambda d, t: [str(d / "small.onnx"), "--batches", "0"], "--batches values must be >= 1"),
    (lambda d, t: [str(d / "small.onnx"), "--min-samples", "0"], "--min-samples"),
    # A hierarchy that cannot be used (as root here, the real one always can: it is given).
    (lambda d, t: [str(d / "small.onnx"), "--cgroup-root", str(t / "absent")],
     "--cgroup-root .*absent: no such directory"),
    (lambda d, t: [str(d / "small.onnx"), "--cgroup-root", str(t)],
     "not a CPU cgroup directory"),
])
def test_user_errors_are_one_line_and_status_2(model_dir, tmp_path, capsys, make_args,
                                               message):
    status = cli.main(["profile", *make_args(model_dir, tmp_path)])
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("sluice profile: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert captured.out == ""
