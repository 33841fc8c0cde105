"""The profiling grid: which (cores, batch, threads) settings are measured, for how long."""

from __future__ import annotations

import pytest
from sluice_local.profiling import grid
from sluice_local.profiling.grid import GridError, Job, Target


def target(batches=(1, 4), stage="intent", variant="default") -> Target:
    return Target(stage, variant, "/m/intent.onnx", None, 1.0, batches)


@pytest.mark.parametrize(("text", "expected"), [
    ("0.5,1,1.5,2", (0.5, 1.0, 1.5, 2.0)),
    ("2, 1,0.5", (0.5, 1.0, 2.0)),
    ("500m,1", (0.5, 1.0)),
    ("1,1.0,1000m", (1.0,)),
    ("0.25,", (0.25,)),
])
def test_parse_cores(text, expected):
    assert grid.parse_cores(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "names no allocation"),
    ("one", "expects numbers"),
    ("0", "at least 0.1"),
    ("0.05", "at least 0.1"),
    ("-1", "at least 0.1"),
    ("nan", "at least 0.1"),
    ("inf", "at least 0.1"),
])
def test_parse_cores_refuses(text, message):
    with pytest.raises(GridError, match=message):
        grid.parse_cores(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("1,2,4,8,16,32", (1, 2, 4, 8, 16, 32)),
    ("16, 1, 4, 4", (1, 4, 16)),
])
def test_parse_batches(text, expected):
    assert grid.parse_batches(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "names no batch size"),
    ("1,x", "expects integers"),
    ("1.5", "expects integers"),
    ("0,1", ">= 1"),
])
def test_parse_batches_refuses(text, message):
    with pytest.raises(GridError, match=message):
        grid.parse_batches(text)


@pytest.mark.parametrize(("cpus", "expected"), [
    (1, (0.5, 1.0)),
    (2, (0.5, 1.0, 1.5, 2.0)),
    (8, (0.5, 1.0, 1.5, 2.0)),
])
def test_default_cores_fit_the_machine(cpus, expected):
    assert grid.default_cores(cpus) == expected


def test_cores_beyond_the_machine_are_refused():
    grid.check_cores((0.5, 2.0), cpus=2)
    with pytest.raises(GridError, match=r"--cores 3,4 exceeds the 2 CPUs"):
        grid.check_cores((1.0, 3.0, 4.0), cpus=2)


@pytest.mark.parametrize(("cores", "cpus", "expected"), [
    (0.5, 2, (1,)),
    (1.0, 2, (1,)),
    (1.4, 2, (1,)),
    (1.5, 2, (1, 2)),
    (2.0, 2, (1, 2)),
    (3.0, 2, (1, 2)),
    (2.6, 8, (1, 2, 3)),
])
def test_thread_counts_are_those_the_runtime_may_choose(cores, cpus, expected):
    assert grid.thread_counts(cores, cpus) == expected


@pytest.mark.parametrize(("batches", "max_batch_size", "expected"), [
    ((1, 2, 4, 8, 16, 32), 32, (1, 2, 4, 8, 16, 32)),
    ((1, 2, 4, 8, 16, 32), 12, (1, 2, 4, 8, 12, 16, 32)),
    ((1, 4, 16), 64, (1, 4, 16, 64)),
    ((4, 1), None, (1, 4)),
])
def test_stage_batches_are_the_grid_and_the_stages_own_maximum(batches, max_batch_size,
                                                              expected):
    assert grid.stage_batches(batches, max_batch_size) == expected


@pytest.mark.parametrize(("cores", "requested_s", "expected_s"), [
    (1.0, 0.3, 0.3),
    (2.0, 0.1, 0.1),
    (0.5, 0.1, 0.4),  # a fractional quota: at least four CFS periods
    (1.5, 0.2, 0.4),
    (0.5, 0.6, 0.6),
])
def test_window_covers_cfs_periods_under_fractional_quotas(cores, requested_s, expected_s):
    assert grid.window_s(cores, requested_s) == pytest.approx(expected_s)


def test_plan_jobs_one_per_target_and_allocation():
    a, b = target(stage="intent"), target(stage="policy", batches=(1,))
    jobs = grid.plan_jobs([a, b], (0.5, 2.0), 0.2, cpus=2)
    assert jobs == [
        Job(a, 0.5, (1,), 0.4), Job(a, 2.0, (1, 2), 0.2),
        Job(b, 0.5, (1,), 0.4), Job(b, 2.0, (1, 2), 0.2),
    ]


@pytest.mark.parametrize("seconds", [0.0, -1.0])
def test_plan_jobs_refuses_no_time(seconds):
    with pytest.raises(GridError, match="--seconds-per-point"):
        grid.plan_jobs([target()], (1.0,), seconds, cpus=2)


def test_estimate_grows_with_settings_and_with_a_smaller_quota():
    small = grid.estimate_job_s(Job(target(batches=(1,)), 1.0, (1,), 0.4))
    more_batches = grid.estimate_job_s(Job(target(batches=(1, 4, 16)), 1.0, (1,), 0.4))
    more_threads = grid.estimate_job_s(Job(target(batches=(1,)), 2.0, (1, 2), 0.4))
    throttled = grid.estimate_job_s(Job(target(batches=(1,)), 0.5, (1,), 0.4))
    assert small < more_batches
    assert small < more_threads
    assert small < throttled


def test_default_grid_fits_in_minutes_for_the_example():
    # The example pipeline: three stages, max batch 32, 32 and 16, on two CPUs.
    targets = [target(grid.stage_batches(grid.DEFAULT_BATCHES, m), stage=s)
               for s, m in (("intent", 32), ("policy", 32), ("response", 16))]
    jobs = grid.plan_jobs(targets, grid.default_cores(2), grid.DEFAULT_SECONDS_PER_BATCH, 2)
    total_s = sum(grid.estimate_job_s(j) for j in jobs)
    assert len(jobs) == 12
    assert 30 < total_s < 240
