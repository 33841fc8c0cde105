"""Prometheus metrics of one runtime process, in a registry of its own."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from sluice_runtime.cpu import CpuUsage

# Compute and queue waits: fixed steps, from sub-millisecond batches up.
_LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)
# End-to-end latency buckets as fractions of the SLO: dense around it, so that a p99 near
# the SLO is read to within a few percent instead of between 100 and 200 ms.
_SLO_FRACTIONS = (
    0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1,
    1.2, 1.5, 2.0, 3.0, 5.0, 10.0,
)
# What happened to a request at a model, by the request log's status code.
OUTCOMES = {
    "OK": "ok", "DEADLINE_EXCEEDED": "refused_deadline",
    "RESOURCE_EXHAUSTED": "refused_queue_full", "UNAVAILABLE": "refused_draining",
    "INTERNAL": "failed", "CANCELLED": "cancelled",
}


def slo_buckets_s(slo_s: float) -> tuple[float, ...]:
    """Latency histogram bounds for an SLO: a few absolute ones below, fractions around it."""
    floor = tuple(b for b in (0.0005, 0.001, 0.002, 0.005) if b < 0.05 * slo_s)
    return floor + tuple(round(f * slo_s, 9) for f in _SLO_FRACTIONS)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class RateMeter:
    """Events per second, exponentially decayed over ``window_s`` (O(1) per event)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self._tau = window_s
        self._rate = 0.0
        self._last = time.monotonic()

    def _decayed(self, now: float) -> float:
        return self._rate * math.exp(-(now - self._last) / self._tau)

    def mark(self, count: int = 1) -> None:
        """Record ``count`` events now."""
        now = time.monotonic()
        self._rate = self._decayed(now) + count / self._tau
        self._last = now

    def rate(self) -> float:
        """Current events per second."""
        return self._decayed(time.monotonic())


class CgroupCpuCollector(Collector):
    """The process cgroup's CPU accounting, read at scrape time (nothing on the hot path).

    This is what the scaler compares with the allocation: CPU used, and how often and how
    long the kernel throttled the cgroup for exceeding its quota.
    """

    def __init__(self, read: Callable[[], CpuUsage]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        """One family per figure the cgroup reports."""
        usage = self._read()
        figures = (
            ("sluice_cgroup_cpu_usage_seconds", "CPU time used by the process's cgroup",
             usage.usage_s),
            ("sluice_cgroup_cpu_periods", "Enforcement periods of the cgroup's CPU quota",
             usage.periods),
            ("sluice_cgroup_cpu_throttled_periods",
             "Periods in which the cgroup was throttled for exhausting its quota",
             usage.throttled_periods),
            ("sluice_cgroup_cpu_throttled_seconds", "Time the cgroup spent throttled",
             usage.throttled_s),
        )
        for name, documentation, value in figures:
            if value is not None:
                yield CounterMetricFamily(name, documentation, value=value)


class RuntimeMetrics:
    """Every metric the runtime exports; the scaler reads these from ``/metrics``."""

    def __init__(self, slo_s: float = 1.0,
                 cpu_usage: Callable[[], CpuUsage] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, RSS, open files
        if cpu_usage is not None:
            r.register(CgroupCpuCollector(cpu_usage))
        slo_buckets = slo_buckets_s(slo_s)
        self.requests = Counter(
            "sluice_requests", "Inference requests by model and gRPC status code",
            ["model", "code"], registry=r,
        )
        self.late = Counter(
            "sluice_late_answers", "Successful answers sent after the request's deadline",
            ["model"], registry=r,
        )
        self.request_duration = Histogram(
            "sluice_request_duration_seconds", "Time from arrival to response",
            ["model"], buckets=slo_buckets, registry=r,
        )
        self.model_requests = Counter(
            "sluice_model_requests",
            "Requests at each served model, pipeline stages included, by outcome: ok, late "
            "(answered after the deadline), refused_deadline, refused_queue_full, "
            "refused_draining, failed, cancelled",
            ["model", "outcome"], registry=r,
        )
        self.model_latency = Histogram(
            "sluice_model_latency_seconds",
            "Time from a request's arrival at a model to its answer (ok and late only)",
            ["model"], buckets=slo_buckets, registry=r,
        )
        self.queue_wait = Histogram(
            "sluice_queue_wait_seconds", "Time a request waited in the batching queue",
            ["model"], buckets=_LATENCY_BUCKETS_S, registry=r,
        )
        self.compute = Histogram(
            "sluice_compute_seconds", "Compute time of one batch",
            ["model"], buckets=_LATENCY_BUCKETS_S, registry=r,
        )
        self.batches = Counter(
            "sluice_batches", "Batches computed, by the intra-op threads each ran with",
            ["model", "threads"], registry=r,
        )
        self.batch_size = Histogram(
            "sluice_batch_size", "Rows per executed batch", ["model"],
            buckets=_BATCH_BUCKETS, registry=r,
        )
        self.queue_depth = Gauge(
            "sluice_queue_depth", "Requests waiting in the batching queue", ["model"],
            registry=r,
        )
        self.arrival_rate = Gauge(
            "sluice_arrival_rate_per_second", "Recent request arrivals per second",
            ["model"], registry=r,
        )
        self.executors = Gauge(
            "sluice_executors", "Cores batches may compute on at once (follows the CPU)",
            registry=r
        )
        self.executors_busy = Gauge(
            "sluice_executors_busy", "Cores batches compute on now", registry=r
        )
        self.cpu_allocation = Gauge(
            "sluice_cpu_allocation_cores", "CPU cores this process may use", registry=r
        )
        self.batching = Gauge(
            "sluice_batching_config", "Batching configuration in force",
            ["model", "setting"], registry=r,
        )
