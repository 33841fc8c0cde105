"""Workloads for the simulator: Poisson, the two-state MMPP and traces, per second."""

from __future__ import annotations

import random
import statistics

import pytest
from sluice_core.simulate import (
    SimulationError,
    mmpp_counts,
    poisson_counts,
    simulate,
    trace_counts,
)
from sluice_core.simulate.workload import place_in_second

from tests.core.test_simulate_support import constant_ms, fixed, make_pipeline, make_profile, model


def _cv(counts):
    return statistics.pstdev(counts) / statistics.fmean(counts)


def test_poisson_counts_have_the_rate_and_poisson_spread():
    counts = poisson_counts(200.0, 2000, random.Random(1))
    assert len(counts) == 2000
    assert statistics.fmean(counts) == pytest.approx(200, rel=0.02)
    # Poisson: variance equals the mean.
    assert statistics.pvariance(counts) == pytest.approx(200, rel=0.15)


def test_mmpp_counts_keep_the_mean_and_are_burstier():
    counts = mmpp_counts(200.0, 4000, random.Random(2))
    assert len(counts) == 4000
    assert statistics.fmean(counts) == pytest.approx(200, rel=0.1)
    # Rates of 0.4x and 1.6x the mean: a coefficient of variation near 0.5-0.6, where a
    # Poisson process at this rate has 0.07.
    assert 0.4 < _cv(counts) < 0.7


def test_mmpp_is_drawn_in_chunks_without_a_seam(monkeypatch):
    monkeypatch.setattr("sluice_core.simulate.workload.MMPP_CHUNK_S", 100.0)
    counts = mmpp_counts(50.0, 250.5, random.Random(3))
    assert len(counts) == 251
    assert statistics.fmean(counts[:250]) == pytest.approx(50, rel=0.3)


@pytest.mark.parametrize(("counts", "mean_rate", "duration_s", "expected_len", "expected_mean"), [
    ([10, 20, 30, 40], None, None, 4, 25.0),
    ([10, 20, 30, 40], None, 2, 2, 15.0),
    ([100, 300] * 500, 20.0, None, 1000, 20.0),
    ([100, 300] * 500, 20.0, 10, 10, 20.0),
])
def test_trace_counts_cut_and_scale(counts, mean_rate, duration_s, expected_len, expected_mean):
    series = trace_counts(counts, random.Random(4), mean_rate, duration_s)
    assert len(series) == expected_len
    assert statistics.fmean(series) == pytest.approx(expected_mean, rel=0.1)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"duration_s": 9}, "fewer than the 9 s"),
    ({"mean_rate": 5.0, "counts": [0, 0]}, "no requests"),
    ({"duration_s": 0}, "at least 1 s"),
])
def test_trace_counts_refuse_what_cannot_be_replayed(kwargs, message):
    counts = kwargs.pop("counts", [1, 2, 3])
    with pytest.raises(SimulationError, match=message):
        trace_counts(counts, random.Random(0), **kwargs)


def test_arrivals_are_uniform_inside_their_second():
    times = place_in_second(7, 5000, random.Random(5))
    assert times == sorted(times)
    assert all(7.0 <= t < 8.0 for t in times)
    assert statistics.fmean(times) == pytest.approx(7.5, abs=0.02)


@pytest.mark.parametrize("make", [
    lambda rng: mmpp_counts(300, 30, rng),
    lambda rng: trace_counts([0, 0, 900, 50, 0, 400] * 5, rng),
])
def test_the_simulator_replays_every_request_of_a_workload(make):
    pipeline = make_pipeline(("a", "b"), latency_ms=100)
    profile = make_profile(pipeline, model(constant_ms(1.0)))
    counts = make(random.Random(6))
    policy = fixed(pipeline)
    result = simulate(pipeline, profile, policy, counts)
    assert result.requests == sum(counts)
    assert result.duration_s == len(counts)
    # What the first stage saw, second by second, is the series replayed.
    seen = [round(o.stages["a"].arrival_rps) for o in policy.seen]
    # Arrivals reach the stage a hop later (0 here), so each interval holds its second.
    assert seen == list(counts[:len(seen)])
