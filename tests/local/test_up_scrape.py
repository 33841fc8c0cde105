"""Metrics as local mode reads them: the exposition prometheus_client writes, differenced
between two scrapes and read as quantiles."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from sluice_local.up.scrape import (
    EMPTY,
    bucket_deltas,
    counter_delta,
    merge_buckets,
    parse,
    quantile_ms,
)


def exposition():
    registry = CollectorRegistry()
    requests = Counter("sluice_requests", "r", ["model", "code"], registry=registry)
    latency = Histogram("sluice_model_latency_seconds", "l", ["model"],
                        buckets=(0.01, 0.02, 0.05, 0.1), registry=registry)
    return registry, requests, latency


def test_counters_are_differenced_and_a_restarted_process_counts_from_zero():
    registry, requests, _ = exposition()
    requests.labels("dialogue", "OK").inc(5)
    requests.labels("dialogue", "DEADLINE_EXCEEDED").inc(2)
    before = parse(generate_latest(registry).decode())
    requests.labels("dialogue", "OK").inc(3)
    after = parse(generate_latest(registry).decode())
    assert counter_delta(before, after, "sluice_requests_total", model="dialogue") == 3
    assert counter_delta(before, after, "sluice_requests_total", model="dialogue",
                         code="OK") == 3
    # A replica restarted between scrapes: its counters start again below the old ones.
    assert counter_delta(after, before, "sluice_requests_total", model="dialogue") == 7
    assert counter_delta(EMPTY, after, "sluice_requests_total", model="dialogue") == 10


def test_quantiles_interpolate_within_the_bucket_over_the_interval_only():
    registry, _, latency = exposition()
    for _ in range(100):
        latency.labels("response").observe(0.5)  # before the interval: left out
    before = parse(generate_latest(registry).decode())
    for seconds in [0.005] * 50 + [0.015] * 40 + [0.04] * 10:
        latency.labels("response").observe(seconds)
    after = parse(generate_latest(registry).decode())
    buckets = bucket_deltas(before, after, "sluice_model_latency_seconds", model="response")
    assert buckets[float("inf")] == 100
    assert quantile_ms(buckets, 0.5) == pytest.approx(10.0)
    assert quantile_ms(buckets, 0.7) == pytest.approx(15.0)
    assert quantile_ms(buckets, 0.99) == pytest.approx(20 + 30 * 0.9)
    doubled = merge_buckets([buckets, buckets])
    assert quantile_ms(doubled, 0.7) == pytest.approx(15.0)
    assert quantile_ms({}, 0.99) is None
    assert quantile_ms(bucket_deltas(after, after, "sluice_model_latency_seconds"), 0.5) is None


def test_a_tail_beyond_the_last_bound_reads_as_that_bound():
    registry, _, latency = exposition()
    latency.labels("response").observe(3.0)
    buckets = bucket_deltas(EMPTY, parse(generate_latest(registry).decode()),
                            "sluice_model_latency_seconds", model="response")
    assert quantile_ms(buckets, 0.99) == pytest.approx(100.0)


def test_cpu_used_is_the_process_own_and_a_new_process_counts_from_its_next_read():
    from sluice_local.up.observe import _cores_used

    def cpu(seconds: float):
        return parse(f"# TYPE process_cpu_seconds counter\n"
                     f"process_cpu_seconds_total {seconds}\n")

    assert _cores_used(cpu(10.0), cpu(10.5), 2.0) == pytest.approx(0.25)
    assert _cores_used(EMPTY, cpu(3.0), 1.0) == 0.0
