"""`sluice up` for real: the example pipeline as runtime processes in real CPU cgroups under
the hybrid policy, with real load; what happened is read from the report, the runtimes'
own metrics and the request log, never from timings. Ctrl-C, SIGTERM and --serve leave
no process, cgroup or port behind."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton

from tests.conftest import ROOT
from tests.runtime.cgroups import scratch_cgroup

DIALOGUE = ROOT / "examples" / "pipelines" / "dialogue.yaml"
PROFILES = ROOT / "examples" / "profiles" / "dialogue.json"
SLO_MS = 100.0


def up(*args: str, cgroup_root: Path, manifest: Path = DIALOGUE, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sluice_local", "up", str(manifest), "--profiles",
         str(PROFILES), "--cgroup-root", str(cgroup_root), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, **popen)  # its own group, as a terminal's Ctrl-C reaches


def run_pids(marker: Path) -> list[int]:
    """Processes whose command line names ``marker`` (every process of a run does)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if str(marker).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def assert_nothing_left(out: Path, cgroup_root: Path) -> None:
    assert run_pids(out) == [], "a process of the run outlived it"
    assert [p.name for p in cgroup_root.iterdir() if p.is_dir()] == [], "a cgroup was left"


@pytest.fixture(scope="module")
def step_run(example_models, tmp_path_factory):
    """Eight quiet seconds, then a step to about seven times the load for twenty: enough
    for the hybrid to resize a stage at once and, the need persisting, to add a replica."""
    return hybrid_step(tmp_path_factory.mktemp("up"), example_models, 150)


def hybrid_step(tmp: Path, example_models: Path, step_rps: int, *args: str,
                manifest: Path = DIALOGUE) -> tuple[Path, str]:
    """A hybrid run of eight seconds at 20 req/s, then 22 at ``step_rps``: its directory
    and what it printed, once it left nothing behind."""
    trace = tmp / "step.txt"
    trace.write_text("20\n" * 8 + f"{step_rps}\n" * 22)
    out = tmp / "run"
    with scratch_cgroup() as (root, _):
        process = up("--model-root", str(example_models), "--trace", str(trace),
                     "--policy", "hybrid", "--out", str(out), *args, cgroup_root=root,
                     manifest=manifest)
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
        assert_nothing_left(out, root)
    return out / "hybrid", stdout


def test_a_resize_is_applied_and_the_runtimes_follow_it(step_run):
    directory, _ = step_run
    report = json.loads((directory / "report.json").read_text())
    resizes = [a for a in report["actions"] if a["kind"] == "resize"]
    assert resizes, "the step should have been met with cores first"
    # In force means every serving replica's runtime reported the new cores (its own
    # sluice_cpu_allocation_cores, read from its cgroup).
    assert all(a["effective_s"] is not None and a["reaction_s"] >= 0 for a in resizes)
    first = resizes[0]
    cores = float(first["detail"].split()[0])
    after = [t for t in report["timeline"] if t["t_s"] > first["effective_s"]]
    stage = next(s for s in after[0]["stages"] if s["stage"] == first["stage"])
    assert stage["cores_per_replica"] == pytest.approx(cores)


def test_a_new_replica_joins_the_router_and_serves(step_run):
    directory, _ = step_run
    report = json.loads((directory / "report.json").read_text())
    scale_outs = [a for a in report["actions"] if a["kind"] == "replicas"]
    assert scale_outs, "the persisting step should have brought another replica"
    assert scale_outs[0]["effective_s"] is not None
    stage = scale_outs[0]["stage"]
    replicas = [r for r in report["replicas"] if r["stage"] == stage]
    joined_later = [r for r in replicas if r["started_s"] > 0]
    assert joined_later, replicas
    assert all(r["serving_s"] is not None for r in joined_later)
    assert any(r["answered"] > 0 for r in joined_later), "the new replica answered nothing"


def test_the_report_agrees_with_the_request_log(step_run):
    directory, stdout = step_run
    report = json.loads((directory / "report.json").read_text())
    with (directory / "requests.csv").open() as source:
        rows = list(csv.DictReader(source))
    answered = [float(r["latency_ms"]) for r in rows if r["code"] == "OK"]
    assert report["requests"] == len(rows) == sum(
        int(line) for line in (directory / "arrivals.txt").read_text().split())
    assert report["ok"] == sum(1 for ms in answered if ms <= SLO_MS)
    assert report["late"] == sum(1 for ms in answered if ms > SLO_MS)
    assert report["rejected"] == len(rows) - len(answered)
    assert report["p99_ms"] == pytest.approx(float(np.percentile(
        answered, 99, method="inverted_cdf")))
    # What the simulator made of the same counts under the same policy stands beside it.
    assert report["simulated"]["requests"] == report["requests"]
    assert report["simulated"]["policy"] == "hybrid"
    per_second = list(csv.DictReader((directory / "per-second.csv").open()))
    assert sum(int(r["sent"]) for r in per_second) == len(rows)
    assert (directory / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{100 * report['slo_attainment']:.2f}%" in stdout
    assert str(directory / "run.png") in stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_run_drains_reports_and_leaves_nothing(example_models, tmp_path, sig):
    out = tmp_path / "run"
    with scratch_cgroup() as (root, _):
        process = up("--model-root", str(example_models), "--rate", "20", "--duration-s",
                     "600", "--out", str(out), cgroup_root=root)
        try:
            deadline = time.monotonic() + 120
            output = Output(process)
            while not re.search(r"^t=3s ", output.text, re.MULTILINE):
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "the run never got going"
                time.sleep(0.2)
            os.killpg(process.pid, sig)
            _, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert_nothing_left(out, root)
    assert process.returncode == 0, stderr
    report = json.loads((out / "hybrid" / "report.json").read_text())
    assert report["interrupted"] is True
    assert report["requests"] > 0
    assert report["rejected"] == 0, "stopping must not fail what was in flight"
    assert report["simulated"] is None


class Output:
    """A process's standard output as it comes, read on a thread (a pipe must not fill)."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.text += line


def test_serve_prints_an_endpoint_any_client_can_use(example_models, tmp_path):
    out = tmp_path / "run"
    with scratch_cgroup() as (root, _):
        process = up("--model-root", str(example_models), "--serve", "--rate", "20",
                     "--out", str(out), cgroup_root=root)
        try:
            deadline = time.monotonic() + 120
            output = Output(process)
            while not (match := re.search(r"serving dialogue at (\S+)", output.text)):
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "no endpoint was printed"
                time.sleep(0.2)
            endpoint = match.group(1)
            client = triton.InferenceServerClient(endpoint)
            utterance = np.random.default_rng(0).standard_normal((8, 384)).astype(np.float32)
            tensor = triton.InferInput("utterance", list(utterance.shape), "FP32")
            tensor.set_data_from_numpy(utterance)
            result = client.infer("dialogue", [tensor])
            assert result.as_numpy("tokens").shape[0] == 8
            client.close()
            os.killpg(process.pid, signal.SIGINT)
            process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert_nothing_left(out, root)
    host, port = endpoint.rsplit(":", 1)
    with socket.socket() as sock:
        assert sock.connect_ex((host, int(port))) != 0, "the router's port is still open"


def test_where_cgroups_cannot_be_made_it_says_so_in_one_line(example_models, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sluice_local", "up", str(DIALOGUE), "--profiles",
         str(PROFILES), "--model-root", str(example_models), "--rate", "20",
         "--cgroup-root", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "not a CPU cgroup directory" in line
    assert "--no-quota" in line


@pytest.fixture(scope="module")
def fused_run(example_models, tmp_path_factory):
    """The dialogue pipeline fused: each replica one process running every stage, behind the
    balancer. Fused, it needs far fewer cores than isolated (no hops, no serialising): its
    floor is lowered so that the quiet start is planned small, then a step to ten times the
    load (of larger requests) for twenty seconds."""
    tmp = tmp_path_factory.mktemp("up-fused")
    fused = tmp / "fused.yaml"
    fused.write_text(DIALOGUE.read_text().replace("composition: isolated", "composition: fused")
                     .replace('min: "500m"', 'min: "200m"'))
    return hybrid_step(tmp, example_models, 200, "--rows-per-request", "32", manifest=fused)


def test_a_fused_pipeline_scales_as_one_unit_of_whole_pipeline_replicas(fused_run):
    directory, stdout = fused_run
    report = json.loads((directory / "report.json").read_text())
    assert report["composition"] == "fused"
    assert report["fused_stages"] == ["intent", "policy", "response"]
    # One unit, named after the pipeline (the model its replicas serve), is what scales.
    assert {s["stage"] for t in report["timeline"] for s in t["stages"]} == {"dialogue"}
    assert {r["stage"] for r in report["replicas"]} == {"dialogue"}
    resizes = [a for a in report["actions"] if a["kind"] == "resize"]
    assert resizes, "the step should have been met with cores first"
    first = resizes[0]
    assert first["effective_s"] is not None, "the replica's runtime never reported the cores"
    after = next(t for t in report["timeline"] if t["t_s"] > first["effective_s"])
    assert after["stages"][0]["cores_per_replica"] == pytest.approx(
        float(first["detail"].split()[0]))
    scale_outs = [a for a in report["actions"] if a["kind"] == "replicas"]
    assert scale_outs, "the persisting step should have brought another replica"
    assert scale_outs[0]["effective_s"] is not None
    # The balancer runs no model: the answers came from the replicas' last stage, the
    # new one's too.
    joined_later = [r for r in report["replicas"] if r["started_s"] > 0]
    assert joined_later
    assert all(r["serving_s"] is not None for r in joined_later)
    assert any(r["answered"] > 0 for r in joined_later), report["replicas"]
    with (directory / "requests.csv").open() as source:
        rows = list(csv.DictReader(source))
    assert report["requests"] == len(rows) == sum(
        int(line) for line in (directory / "arrivals.txt").read_text().split())
    assert sum(1 for r in rows if r["code"] == "OK") > 0.9 * len(rows)
    assert report["simulated"]["requests"] == report["requests"]
    assert "fused" in stdout


def test_without_quotas_it_runs_and_says_no_resize_was_applied(example_models, tmp_path):
    trace = tmp_path / "step.txt"
    trace.write_text("20\n" * 3 + "150\n" * 9)
    result = subprocess.run(
        [sys.executable, "-m", "sluice_local", "up", str(DIALOGUE), "--profiles", str(PROFILES),
         "--model-root", str(example_models), "--trace", str(trace), "--policy", "vertical",
         "--no-quota", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "run" / "vertical" / "report.json").read_text())
    assert report["quota"] is False
    resizes = [a for a in report["actions"] if a["kind"] == "resize"]
    assert resizes, "the step should have asked for cores"
    assert all("not applied" in a["detail"] and a["effective_s"] is None for a in resizes)
    assert "no CPU quotas (--no-quota)" in result.stdout
