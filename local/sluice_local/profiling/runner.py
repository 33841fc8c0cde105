"""Run the measurement worker under a real CPU quota, one fresh cgroup per job.

The worker is the runtime's own ``python -m sluice_runtime.measure``, started as a
program (the local edge does not import the runtime): it loads and runs the model exactly
as a runtime process would. Each job gets a new cgroup with its quota and an empty
weights cache (so the load it reports includes preparing the shared weights, as in a new
pod); both are removed afterwards, on errors and Ctrl-C too, and a worker still running
then is killed first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sluice_local.cgroupfs import CpuHierarchy, in_cgroup
from sluice_local.profiling.assemble import Measured, check_document
from sluice_local.profiling.grid import DEFAULT_MIN_SAMPLES, Job, estimate_job_s
from sluice_local.profiling.progress import Progress
from sluice_local.profiling.quota import quota_cgroup

WORKER_MODULE = "sluice_runtime.measure"
#: How often a waiting runner wakes to redraw the progress bar.
POLL_S = 0.25
#: A worker that runs far past its estimate is stuck (a model that never returns).
TIMEOUT_FACTOR = 20
MIN_TIMEOUT_S = 120.0


class WorkerError(RuntimeError):
    """A worker failed (one line: which job, and the worker's own last error line)."""


@dataclass(frozen=True)
class WorkerSettings:
    """How workers are started."""

    python: str = sys.executable
    min_samples: int = DEFAULT_MIN_SAMPLES
    free_dim: int = 1
    download_dir: Path | None = None  # shared by all jobs: a URL is fetched once


def worker_argv(job: Job, settings: WorkerSettings, cache_dir: Path) -> list[str]:
    """The worker's command line for ``job`` (before it is put in a cgroup)."""
    argv = [
        settings.python, "-m", WORKER_MODULE, job.target.source,
        "--batches", ",".join(str(b) for b in job.target.batches),
        "--threads", ",".join(str(t) for t in job.threads),
        "--seconds-per-batch", f"{job.seconds_per_batch:g}",
        "--min-samples", str(settings.min_samples),
        "--free-dim", str(settings.free_dim),
        "--cache-dir", str(cache_dir),
    ]
    if job.target.sha256:
        argv += ["--sha256", job.target.sha256]
    if settings.download_dir is not None:
        argv += ["--download-dir", str(settings.download_dir)]
    return argv


def job_label(job: Job) -> str:
    """``intent/default @ 0.5 cores``."""
    return f"{job.target.stage}/{job.target.variant} @ {job.cores:g} cores"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


def run_job(job: Job, hierarchy: CpuHierarchy, settings: WorkerSettings, cpus: int,
            on_wait: Callable[[], None] = lambda: None) -> Measured:
    """Measure ``job`` in a new cgroup limited to its cores; WorkerError on failure."""
    name = f"sluice-profile-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    timeout_s = max(MIN_TIMEOUT_S, TIMEOUT_FACTOR * estimate_job_s(job))
    with tempfile.TemporaryDirectory(prefix="sluice-profile-") as cache, \
            quota_cgroup(hierarchy, name, job.cores) as cgroup:
        argv = in_cgroup(cgroup, worker_argv(job, settings, Path(cache)))
        stdout, stderr, status = _run(argv, timeout_s, on_wait)
    if status != 0:
        raise WorkerError(f"{job_label(job)}: {_last_line(stderr)}")
    try:
        document = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise WorkerError(f"{job_label(job)}: the worker's output is not JSON ({exc})") from None
    check_document(job, document, cpus)
    return Measured(job, document)


def _run(argv: list[str], timeout_s: float,
         on_wait: Callable[[], None]) -> tuple[str, str, int]:
    """Run ``argv`` to the end (calling ``on_wait`` while it runs); never leaves it running."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    waited_s = 0.0
    try:
        while True:
            try:
                stdout, stderr = process.communicate(timeout=POLL_S)
                return stdout, stderr, process.returncode
            except subprocess.TimeoutExpired:
                waited_s += POLL_S
                if waited_s > timeout_s:
                    raise WorkerError(f"the worker ran for more than {timeout_s:.0f} s: "
                                      "stopped") from None
                on_wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def run_jobs(jobs: Sequence[Job], hierarchy: CpuHierarchy, settings: WorkerSettings,
             cpus: int, progress: Progress | None = None) -> list[Measured]:
    """Every job in order, each in its own cgroup; stops at the first failure."""
    results = []
    try:
        for job in jobs:
            if progress is not None:
                progress.start(job_label(job), estimate_job_s(job))
            measured = run_job(job, hierarchy, settings, cpus,
                               progress.tick if progress is not None else lambda: None)
            if progress is not None:
                load = measured.document.get("load_s", 0.0)
                progress.finish(f"(load {load:.2f} s)")
            results.append(measured)
    finally:
        if progress is not None:
            progress.close()
    return results
