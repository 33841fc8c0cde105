"""One policy's run from start to end: processes, load, the control loop, and the teardown
that always happens (Ctrl-C and SIGTERM included).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

import yaml
from sluice_core.invocation import RuntimeInvocation
from sluice_core.scaling.types import Policy
from sluice_core.spec import Pipeline

from sluice_local.cgroupfs import CpuHierarchy
from sluice_local.records import Records, read_records
from sluice_local.up.controller import CHECK_INTERVAL_S, TICK_S, Controller, target_of
from sluice_local.up.fleet import SERVING, Fleet
from sluice_local.up.live import LiveView
from sluice_local.up.processes import ProcessGroup, RuntimeProcess, free_port
from sluice_local.up.timeline import RunTimeline
from sluice_local.up.topology import (
    Batching,
    RunFiles,
    fused_manifest,
    fused_replica_invocation,
    replica_invocation,
    router_invocation,
)

#: How long the first replicas and the router may take to load, warm up and answer.
STARTUP_TIMEOUT_S = 180.0
#: How long the load generator may take to finish what is in flight after the load ends.
LOAD_DRAIN_S = 60.0


class RunError(RuntimeError):
    """The run could not start or keep going (one line, with where to look)."""


@dataclass(frozen=True)
class RunSpec:
    """What every policy's run shares."""

    pipeline: Pipeline
    manifest: Path
    #: Model source per (stage, variant): a local path or an http(s) URL.
    model_sources: Mapping[tuple[str, str], str]
    rows_per_request: int
    #: Requests per second to send, or None to serve until stopped (--serve).
    counts: Sequence[int] | None
    seed: int
    hierarchy: CpuHierarchy | None
    #: A fused pipeline's stages, each replica of ``pipeline``'s one unit running them all
    #: (``pipeline`` is then the unit: :func:`sluice_core.fused.fused_unit`); empty when
    #: isolated.
    fused_stages: tuple[str, ...] = ()


@dataclass
class RunOutcome:
    """What one run produced."""

    timeline: RunTimeline
    requests: Records
    duration_s: float
    directory: Path
    #: True when it was stopped (Ctrl-C, SIGTERM) before the load ended.
    interrupted: bool


class StopFlag:
    """Set by SIGINT and SIGTERM while a run is going, so it stops cleanly."""

    def __init__(self) -> None:
        self.set = False

    @contextmanager
    def installed(self) -> Iterator[StopFlag]:
        """Catch SIGINT and SIGTERM for the duration."""
        def handle(signum: int, frame: FrameType | None) -> None:
            self.set = True

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float,
                stop: StopFlag) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if stop.set:
            raise KeyboardInterrupt
        if time.monotonic() > deadline:
            raise RunError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(CHECK_INTERVAL_S)


def _files(directory: Path, manifest: Path) -> RunFiles:
    files = RunFiles(directory, manifest.resolve(), directory / "admin-token")
    directory.mkdir(parents=True, exist_ok=True)
    files.admin_token.write_text(secrets.token_hex(16))
    os.chmod(files.admin_token, 0o600)
    return files


def _fused_manifest(spec: RunSpec, files: RunFiles, batching: Batching) -> Path:
    """The manifest a fused replica starts from: the pipeline's, batching as asked."""
    path = files.directory / (f"fused-{batching.max_batch_size}rows-"
                              f"{batching.max_delay_ms:g}ms.yaml")
    if not path.exists():
        manifest = yaml.safe_load(spec.manifest.read_text())
        path.write_text(yaml.safe_dump(fused_manifest(manifest, batching)))
    return path


def _start_load(spec: RunSpec, router: RuntimeProcess, directory: Path) -> subprocess.Popen[str]:
    """The load generator, replaying ``spec.counts`` at the router with the SLO as budget."""
    assert spec.counts is not None
    arrivals = directory / "arrivals.txt"
    arrivals.write_text("".join(f"{count}\n" for count in spec.counts))
    slo_ms = str(spec.pipeline.latency_ms)
    argv = [sys.executable, "-m", "sluice_local.loadgen", "--target", router.target,
            "--model", spec.pipeline.name, "--trace", str(arrivals),
            "--duration-s", str(len(spec.counts)), "--batch", str(spec.rows_per_request),
            "--budget-ms", slo_ms, "--slo-ms", slo_ms, "--seed", str(spec.seed),
            "--records", str(directory / "requests.csv"), "--json",
            str(directory / "load.json"), "--wait-s", "30"]
    log = (directory / "logs" / "load.log").open("w")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def run_policy(spec: RunSpec, policy: Policy, directory: Path, stream: TextIO,
               stop: StopFlag) -> RunOutcome:
    """Run the pipeline under ``policy`` for the whole load (or until stopped)."""
    files = _files(directory, spec.manifest)
    token = files.admin_token.read_text()
    group = ProcessGroup(spec.hierarchy, f"sluice-up-{os.getpid()}-{policy.name}",
                         directory / "logs")

    def invocation_for(stage: str, variant: str, port: int, metrics_port: int,
                       batching: Batching) -> RuntimeInvocation:
        if spec.fused_stages:
            return fused_replica_invocation(
                spec.pipeline, _fused_manifest(spec, files, batching),
                tuple((name, spec.model_sources[(name, variant)])
                      for name in spec.fused_stages), port, metrics_port, files)
        return replica_invocation(spec.pipeline, stage, spec.model_sources[(stage, variant)],
                                  port, metrics_port, batching, files)

    models = {spec.pipeline.name: spec.fused_stages} if spec.fused_stages else {}
    fleet = Fleet(group, invocation_for, token, models)
    timeline = RunTimeline(spec.pipeline.name, policy.name, float(spec.pipeline.latency_ms),
                           spec.pipeline.percentile,
                           tuple(s.name for s in spec.pipeline.stages),
                           quota=spec.hierarchy is not None, fused_stages=spec.fused_stages)
    controller = Controller(spec.pipeline, policy, fleet, spec.rows_per_request, timeline,
                            quota=spec.hierarchy is not None)
    load: subprocess.Popen[str] | None = None
    interrupted = False
    started = time.monotonic()
    try:
        _bring_up(spec, policy, fleet, controller, files, stop)
        if spec.counts is None:
            print(f"serving {spec.pipeline.name} at {fleet.router.target} (Open Inference "
                  "Protocol over gRPC); Ctrl-C stops", file=stream, flush=True)
        else:
            load = _start_load(spec, fleet.router, directory)
        started = time.monotonic()
        controller.begin(started)
        duration_s = None if spec.counts is None else float(len(spec.counts))
        with LiveView(timeline, duration_s, stream=stream) as view:
            interrupted = _loop(controller, load, stop, view, started)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if load is not None:
            _stop_load(load)
        group.close(order=[fleet.router] if fleet.router is not None else [])
    requests = _requests(directory)
    return RunOutcome(timeline, requests, time.monotonic() - started, directory, interrupted)


def _bring_up(spec: RunSpec, policy: Policy, fleet: Fleet, controller: Controller,
              files: RunFiles, stop: StopFlag) -> None:
    """The policy's initial allocation serving, then the router in front of it."""
    now = time.monotonic()
    for name, allocation in policy.initial_allocation().items():
        controller.targets[name] = target_of(allocation, spec.rows_per_request)
        for _ in range(allocation.replicas):
            fleet.start_replica(name, controller.targets[name], now)
    _wait_until(lambda: _all_serving(fleet), "every first replica answering SERVING",
                STARTUP_TIMEOUT_S, stop)
    for replica in fleet.replicas:
        replica.phase = SERVING
        replica.joined_s = time.monotonic()
    routed = {stage.name: tuple(r.process.target for r in fleet.of(stage.name))
              for stage in spec.pipeline.stages}
    invocation = router_invocation(spec.pipeline, routed, free_port(), free_port(), files,
                                   fused=bool(spec.fused_stages))
    # The router's own cores are not the scaler's to change (0.5 on Kubernetes): here it
    # runs unlimited, and its CPU shows in the report beside the stages'. A fused
    # pipeline's balancer stands where Knative's activator would, also unlimited.
    router = fleet.group.start("router", invocation, None, time.monotonic())
    fleet.set_router(router, routed)
    _wait_until(router.serving, "the router answering SERVING", STARTUP_TIMEOUT_S, stop)


def _all_serving(fleet: Fleet) -> bool:
    for replica in fleet.replicas:
        if replica.process.exited:
            raise RunError(f"replica {replica.process.name} exited while starting: see "
                           f"{replica.process.log_path}")
    return all(r.process.serving() for r in fleet.replicas)


def _loop(controller: Controller, load: subprocess.Popen[str] | None, stop: StopFlag,
          view: LiveView, started: float) -> bool:
    """Tick every second until the load ends (False) or a stop is asked (True)."""
    next_tick = started + TICK_S
    while True:
        while time.monotonic() < next_tick:
            if stop.set:
                return True
            if load is not None and load.poll() is not None:
                if load.returncode != 0:
                    raise RunError(f"the load generator failed (exit {load.returncode}): "
                                   "see logs/load.log")
                controller.tick()  # the last part of a second, to the last answer
                view.update(time.monotonic() - started)
                return False
            controller.check_pending()
            time.sleep(CHECK_INTERVAL_S)
        controller.tick()
        view.update(time.monotonic() - started)
        next_tick += TICK_S


def _stop_load(load: subprocess.Popen[str]) -> None:
    """Stop sending; what is in flight finishes and the records are written."""
    if load.poll() is None:
        load.send_signal(signal.SIGTERM)
    try:
        load.wait(timeout=LOAD_DRAIN_S)
    except subprocess.TimeoutExpired:
        load.kill()
        load.wait()


def _requests(directory: Path) -> Records:
    path = directory / "requests.csv"
    return read_records(path) if path.exists() else Records()

