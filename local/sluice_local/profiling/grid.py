"""Which (cores, batch, threads) settings to measure, for how long: pure choices.

A profile must take minutes, not hours, so the grid is sparse and the profile's reader
interpolates (:class:`sluice_core.profiles.ModelProfile`): a few CPU allocations, batch
sizes in powers of two up to the stage's ``maxBatchSize``, each timed back to back for a
fraction of a second. At each allocation the thread counts the runtime may give a lone
batch are measured (it takes the fastest, :mod:`sluice_runtime.parallelism`), and one
worker process per (model, allocation) keeps the start-up cost to one per quota.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sluice_core.cores import executors_for

DEFAULT_CORES: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
DEFAULT_BATCHES: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
DEFAULT_SECONDS_PER_BATCH = 0.4
DEFAULT_MIN_SAMPLES = 10
#: The CFS period the quota is enforced over (sluice_local.cgroupfs.PERIOD_US).
CFS_PERIOD_S = 0.1
#: A fractional quota stalls a busy process once per period: a window of fewer periods
#: would let p99 miss the stalls, or catch one by luck.
MIN_PERIODS_PER_WINDOW = 4
#: What a worker costs besides its measurement windows, at one core (interpreter and
#: runtime imports, model load, warm-up): only for the progress estimate.
STARTUP_GUESS_S = 1.5
#: Smallest quota the kernel accepts is 1 ms per 100 ms period; below 0.1 core nothing
#: useful can be measured in minutes.
MIN_CORES = 0.1


class GridError(ValueError):
    """A grid that cannot be measured here (one line for the user)."""


@dataclass(frozen=True)
class Target:
    """One model to profile: a stage's variant, where the runtime loads it from."""

    stage: str
    variant: str
    source: str  # a local path or an http(s) URL, as `sluice-runtime --model` takes it
    sha256: str | None  # expected digest from the manifest, checked by the worker
    accuracy: float
    batches: tuple[int, ...]


@dataclass(frozen=True)
class Job:
    """One worker process: a target measured under one CPU quota."""

    target: Target
    cores: float
    threads: tuple[int, ...]
    seconds_per_batch: float


def parse_cores(text: str) -> tuple[float, ...]:
    """``0.5,1,1.5`` -> ascending distinct allocations in cores (``500m`` accepted)."""
    values: set[float] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(part[:-1]) / 1000 if part.endswith("m") else float(part)
        except ValueError:
            raise GridError(f"--cores expects numbers such as 0.5,1,2, got {part!r}") from None
        if not math.isfinite(value) or value < MIN_CORES:
            raise GridError(f"--cores values must be at least {MIN_CORES}, got {part!r}")
        values.add(round(value, 3))
    if not values:
        raise GridError("--cores names no allocation")
    return tuple(sorted(values))


def parse_batches(text: str) -> tuple[int, ...]:
    """``1,4,16`` -> ascending distinct batch sizes."""
    values: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise GridError(f"--batches expects integers such as 1,4,16, got {part!r}") from None
        if value < 1:
            raise GridError(f"--batches values must be >= 1, got {value}")
        values.add(value)
    if not values:
        raise GridError("--batches names no batch size")
    return tuple(sorted(values))


def default_cores(cpus: int) -> tuple[float, ...]:
    """The default allocations this machine can give (a quota above its CPUs gives no more)."""
    return tuple(c for c in DEFAULT_CORES if c <= cpus) or (float(cpus),)


def check_cores(cores: Sequence[float], cpus: int) -> None:
    """GridError when an allocation exceeds the machine: it would measure fewer cores than
    it claims."""
    if too_many := [c for c in cores if c > cpus]:
        raise GridError(f"--cores {','.join(f'{c:g}' for c in too_many)} exceeds the {cpus} "
                        "CPUs of this machine: a quota cannot give more cores than exist")


def thread_counts(cores: float, cpus: int) -> tuple[int, ...]:
    """Intra-op thread counts the runtime may give a lone batch at ``cores``: 1 up to its
    executors (it has one session per count and picks the fastest), at most the CPUs."""
    return tuple(range(1, min(executors_for(cores), cpus) + 1))


def stage_batches(grid: Sequence[int], max_batch_size: int | None) -> tuple[int, ...]:
    """The batch sizes measured for a stage: the whole grid, since the planner may choose
    batches above the manifest's ``maxBatchSize`` (it retunes batching), and that size
    itself, the one the stage runs with until then."""
    sizes = set(grid)
    if max_batch_size is not None:
        sizes.add(max_batch_size)
    return tuple(sorted(sizes))


def window_s(cores: float, requested_s: float) -> float:
    """Seconds to run one setting back to back: the request, stretched under a fractional
    quota to cover :data:`MIN_PERIODS_PER_WINDOW` CFS periods."""
    if cores != math.floor(cores):
        return max(requested_s, MIN_PERIODS_PER_WINDOW * CFS_PERIOD_S)
    return requested_s


def plan_jobs(targets: Iterable[Target], cores: Sequence[float], seconds_per_batch: float,
              cpus: int) -> list[Job]:
    """One job per (target, allocation), in the order they run."""
    if seconds_per_batch <= 0:
        raise GridError(f"--seconds-per-point must be > 0, got {seconds_per_batch:g}")
    return [Job(target, c, thread_counts(c, cpus), window_s(c, seconds_per_batch))
            for target in targets for c in cores]


def estimate_job_s(job: Job) -> float:
    """Rough seconds a job takes (for the progress bar's ETA; calibrated as jobs finish)."""
    settings = len(job.threads) * len(job.target.batches)
    return STARTUP_GUESS_S / min(1.0, job.cores) + settings * job.seconds_per_batch * 1.1
