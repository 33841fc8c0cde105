"""Arrival processes: what the load generator sends and the simulator replays."""

import itertools
import random
import statistics

import pytest
from sluice_core import arrivals


def rng(seed: int = 7) -> random.Random:
    return random.Random(seed)


def test_poisson_is_sorted_within_the_window_and_near_its_rate():
    offsets = arrivals.poisson(200.0, 50.0, rng())
    assert offsets == sorted(offsets)
    assert min(offsets) >= 0
    assert max(offsets) < 50.0
    # 10,000 expected arrivals: the count's standard deviation is 100.
    assert abs(len(offsets) - 10_000) < 500
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    # Exponential gaps: the coefficient of variation is 1.
    assert statistics.pstdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, abs=0.05)


def test_poisson_is_reproducible_from_its_seed():
    first, second = (arrivals.poisson(50.0, 10.0, rng(1)) for _ in range(2))
    assert first == second


@pytest.mark.parametrize(("rate", "duration"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0)])
def test_poisson_rejects_non_positive_arguments(rate, duration):
    with pytest.raises(ValueError, match="must be > 0"):
        arrivals.poisson(rate, duration, rng())


def test_mmpp_keeps_the_mean_of_its_rates_and_is_burstier_than_poisson():
    duration = 2_000.0
    offsets = arrivals.mmpp([50.0, 350.0], 5.0, duration, rng())
    assert offsets == sorted(offsets)
    assert len(offsets) / duration == pytest.approx(200.0, rel=0.1)
    counts = arrivals.counts_per_second(offsets, duration)
    poisson_counts = arrivals.counts_per_second(arrivals.poisson(200.0, duration, rng()),
                                                duration)
    assert statistics.pstdev(counts) > 5 * statistics.pstdev(poisson_counts)


@pytest.mark.parametrize(
    ("rates", "message"), [([100.0], "at least two"), ([10.0, -1.0], ">= 0")]
)
def test_mmpp_rejects_bad_rates(rates, message):
    with pytest.raises(ValueError, match=message):
        arrivals.mmpp(rates, 1.0, 10.0, rng())


def test_bursty_fallback_has_the_requested_mean():
    offsets = arrivals.bursty(100.0, 2_000.0, rng())
    assert len(offsets) / 2_000.0 == pytest.approx(100.0, rel=0.1)


def test_from_counts_puts_each_count_in_its_second():
    counts = [3, 0, 5, 1]
    offsets = arrivals.from_counts(counts, rng())
    assert offsets == sorted(offsets)
    assert arrivals.counts_per_second(offsets, 4) == counts


def test_from_counts_rejects_negative_counts():
    with pytest.raises(ValueError, match="second 1 is negative"):
        arrivals.from_counts([1, -2], rng())


def test_read_trace_skips_blank_lines(tmp_path):
    path = tmp_path / "trace.txt"
    path.write_text("41\n28\n\n 42 \n")
    assert arrivals.read_trace(path) == [41, 28, 42]


@pytest.mark.parametrize(
    ("text", "message"),
    [("4\nfour\n", r"trace.txt:2: expected an integer, got 'four'"),
     ("4\n-1\n", r"trace.txt:2: request count must be >= 0"),
     ("\n\n", "no request counts")],
)
def test_read_trace_names_the_bad_line(tmp_path, text, message):
    path = tmp_path / "trace.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        arrivals.read_trace(path)


def test_scale_counts_keeps_the_mean_even_below_one_per_second():
    counts = [3] * 10_000
    scaled = arrivals.scale_counts(counts, 0.1, rng())
    assert set(scaled) <= {0, 1}
    assert statistics.mean(scaled) == pytest.approx(0.3, abs=0.02)


def test_scale_counts_by_an_integer_is_exact():
    assert arrivals.scale_counts([1, 2, 3], 2.0, rng()) == [2, 4, 6]


def test_scale_to_rate():
    assert arrivals.scale_to_rate([100, 300], 50.0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="no requests"):
        arrivals.scale_to_rate([0, 0], 50.0)


@pytest.mark.parametrize("mean", [0.5, 4.0, 25.0, 400.0])
def test_poisson_count_has_its_mean_and_variance(mean):
    generator = rng(11)
    draws = [arrivals.poisson_count(mean, generator) for _ in range(20_000)]
    assert statistics.mean(draws) == pytest.approx(mean, rel=0.03, abs=0.02)
    assert statistics.pvariance(draws) == pytest.approx(mean, rel=0.08, abs=0.05)
