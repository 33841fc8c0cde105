"""Prometheus metrics of one runtime process, in a registry of its own."""

from __future__ import annotations

import math
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)
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


class RuntimeMetrics:
    """Every metric the runtime exports; the scaler reads these from ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sluice_requests", "Inference requests by model and gRPC status code",
            ["model", "code"], registry=r,
        )
        self.request_duration = Histogram(
            "sluice_request_duration_seconds", "Time from arrival to response",
            ["model"], buckets=_LATENCY_BUCKETS_S, registry=r,
        )
        self.queue_wait = Histogram(
            "sluice_queue_wait_seconds", "Time a request waited in the batching queue",
            ["model"], buckets=_LATENCY_BUCKETS_S, registry=r,
        )
        self.compute = Histogram(
            "sluice_compute_seconds", "Compute time of one batch",
            ["model"], buckets=_LATENCY_BUCKETS_S, registry=r,
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
            "sluice_executors", "Batches allowed to run at once (follows the CPU)", registry=r
        )
        self.executors_busy = Gauge(
            "sluice_executors_busy", "Batches running now", registry=r
        )
        self.cpu_allocation = Gauge(
            "sluice_cpu_allocation_cores", "CPU cores this process may use", registry=r
        )
        self.batching = Gauge(
            "sluice_batching_config", "Batching configuration in force",
            ["model", "setting"], registry=r,
        )
