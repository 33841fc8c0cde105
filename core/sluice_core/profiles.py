"""Measured profiles: how long a model takes per batch at a CPU allocation, and what it costs.

A profile file holds, per stage and per variant, batch latency quantiles measured on a grid
of (cores, batch) under real CPU quotas, plus the cold start (load + warm-up) and resident
memory. The planner, the simulator, the policies and the operator all read it through
:class:`ModelProfile`, which interpolates between measured points.

Format (JSON, ``format: sluice.profile/v1``)::

    {"format": "sluice.profile/v1",
     "pipeline": "dialogue",
     "host": {"cpu": "...", "cores": 2, "onnxruntime": "1.23.2"},
     "hop_ms": {"1": {"p50": 5.8, "p99": 9.1}, "256": {"p50": 14.7, "p99": 22.0}},
     "stages": {
       "intent": {
         "variants": {
           "default": {
             "model": "intent.onnx", "sha256": "…", "accuracy": 1.0,
             "load_s": 0.21, "warmup_s": 0.04, "rss_mib": 71.5,
             "points": [{"cores": 1.0, "threads": 1, "batch": 8, "samples": 200,
                         "min_ms": 0.9, "p50_ms": 1.1, "p95_ms": 1.6, "p99_ms": 2.3,
                         "max_ms": 4.0, "mean_ms": 1.3}, …]}}}}}

``mean_ms`` matters under a fractional quota: a batch throttled at the end of a CFS period
waits out the period, so a few very slow batches raise the mean (what capacity depends on)
well above the median. Files without it (older ones) take the median.

``hop_ms`` (optional) is the extra latency of one isolated hop (a gRPC call between two
runtimes) by request rows; without it the planner uses :data:`DEFAULT_HOP_MS`.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "sluice.profile/v1"
DEFAULT_VARIANT = "default"
#: Latency quantiles a point records, with the cumulative probability each stands for.
QUANTILES: tuple[tuple[str, float], ...] = (
    ("min_ms", 0.0), ("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99), ("max_ms", 1.0),
)
#: One isolated hop (rows -> p50, p99 in ms) when a profile measured none: the figures
#: measured on the example dialogue pipeline on 2 cores (about 5-7 ms p50 at 1 row,
#: about 15 ms at 256 rows; docs/bench.md).
DEFAULT_HOP_MS: Mapping[int, tuple[float, float]] = {1: (6.0, 10.0), 256: (15.0, 24.0)}


class ProfileError(ValueError):
    """A profile file is missing, malformed, or lacks what a caller needs."""


@dataclass(frozen=True)
class LatencyPoint:
    """Latency quantiles of one batch size at one CPU allocation, in milliseconds."""

    cores: float
    batch: int
    threads: int
    samples: int
    min_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    #: The mean latency (throughput follows it, not the median).
    mean_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.mean_ms <= 0:
            object.__setattr__(self, "mean_ms", self.p50_ms)

    def quantile_ms(self, q: float) -> float:
        """Latency at cumulative probability ``q`` in [0, 1], linear between recorded ones."""
        return _piecewise(q, [(p, getattr(self, key)) for key, p in QUANTILES])


@dataclass(frozen=True)
class ModelProfile:
    """One model (a stage's variant) as measured: latency by (cores, batch), cold start, memory.

    Latency between measured points is interpolated linearly in batch size and linearly in
    1/cores (compute time under a quota scales with the inverse of the cores, up to the
    point where more cores stop paying). Outside the grid: beyond the largest batch,
    extrapolated with the slope of the two largest; below the fewest cores, scaled by
    their ratio (a quota slows work in proportion); above the most cores, no faster.
    """

    model: str
    sha256: str | None
    accuracy: float
    load_s: float
    warmup_s: float
    rss_mib: float
    points: tuple[LatencyPoint, ...]
    _grid: dict[float, dict[int, LatencyPoint]] = field(
        init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not self.points:
            raise ProfileError(f"profile of {self.model} has no latency points")
        for point in self.points:
            self._grid.setdefault(point.cores, {})[point.batch] = point
        for cores, by_batch in self._grid.items():
            if len(by_batch) < 1:
                raise ProfileError(f"profile of {self.model}: no batch at {cores} cores")

    @property
    def cold_start_s(self) -> float:
        """Seconds from process start to ready: model load plus warm-up."""
        return self.load_s + self.warmup_s

    @property
    def cores_measured(self) -> tuple[float, ...]:
        """The CPU allocations measured, ascending."""
        return tuple(sorted(self._grid))

    @property
    def batches_measured(self) -> tuple[int, ...]:
        """Every batch size measured at some allocation, ascending."""
        return tuple(sorted({p.batch for p in self.points}))

    def latency_ms(self, batch: int, cores: float, q: float = 0.5) -> float:
        """Predicted latency of one batch of ``batch`` rows at ``cores``, at quantile ``q``."""
        return self._interpolate(batch, cores, lambda point: point.quantile_ms(q))

    def _interpolate(self, batch: int, cores: float,
                     value: Callable[[LatencyPoint], float]) -> float:
        if batch < 1 or cores <= 0:
            raise ValueError(f"batch must be >= 1 and cores > 0, got {batch}, {cores}")
        measured = self.cores_measured
        if cores <= measured[0]:
            return self._at_cores(measured[0], batch, value) * measured[0] / cores
        if cores >= measured[-1]:
            return self._at_cores(measured[-1], batch, value)
        hi_at = bisect.bisect_left(measured, cores)
        lo, hi = measured[hi_at - 1], measured[hi_at]
        # Linear in 1/cores between the neighbours.
        frac = (1 / lo - 1 / cores) / (1 / lo - 1 / hi)
        low, high = self._at_cores(lo, batch, value), self._at_cores(hi, batch, value)
        return low + frac * (high - low)

    def per_request(self, rows_per_request: int) -> ModelProfile:
        """The same model with batches counted in requests of ``rows_per_request`` rows
        each (a batch of ``b`` requests computes ``b * rows_per_request`` rows), for
        workloads whose requests carry several rows (re-ranking candidates, a client's own
        micro-batch). Batch sizes run to the most rows measured, on powers of two."""
        if rows_per_request < 1:
            raise ValueError(f"rows_per_request must be >= 1, got {rows_per_request}")
        if rows_per_request == 1:
            return self
        most = max(1, self.batches_measured[-1] // rows_per_request)
        sizes = sorted({1, most, *(2**k for k in range(most.bit_length()) if 2**k <= most)})
        threads = {p.cores: p.threads for p in self.points}
        points = tuple(
            LatencyPoint(cores, size, threads[cores], 0,
                         *(self.latency_ms(size * rows_per_request, cores, q)
                           for _, q in QUANTILES),
                         self.mean_latency_ms(size * rows_per_request, cores))
            for cores in self.cores_measured for size in sizes)
        return ModelProfile(self.model, self.sha256, self.accuracy, self.load_s,
                            self.warmup_s, self.rss_mib, points)

    def mean_latency_ms(self, batch: int, cores: float) -> float:
        """Predicted mean latency of one batch, interpolated as :meth:`latency_ms` is."""
        return self._interpolate(batch, cores, lambda point: point.mean_ms)

    def throughput_rps(self, batch: int, cores: float) -> float:
        """Rows per second one batch at a time sustains back to back at ``batch`` (mean
        latency: the slow throttled batches count)."""
        return batch * 1000.0 / self.mean_latency_ms(batch, cores)

    def _at_cores(self, cores: float, batch: int,
                  value: Callable[[LatencyPoint], float]) -> float:
        by_batch = self._grid[cores]
        sizes = sorted(by_batch)
        values = [(float(b), value(by_batch[b])) for b in sizes]
        if len(values) == 1:
            size, ms = values[0]
            return ms * max(1.0, batch / size)
        if batch <= sizes[0]:
            return values[0][1]
        if batch >= sizes[-1]:
            (b0, m0), (b1, m1) = values[-2], values[-1]
            return m1 + max(0.0, (m1 - m0) / (b1 - b0)) * (batch - b1)
        return _piecewise(float(batch), values)


@dataclass(frozen=True)
class StageProfile:
    """Every measured variant of one stage, by variant name."""

    name: str
    variants: Mapping[str, ModelProfile]

    def variant(self, name: str = DEFAULT_VARIANT) -> ModelProfile:
        """The profile of one variant; ProfileError naming what exists when absent."""
        try:
            return self.variants[name]
        except KeyError:
            raise ProfileError(
                f"stage {self.name!r} has no profile for variant {name!r} "
                f"(profiled: {sorted(self.variants)})"
            ) from None


@dataclass(frozen=True)
class PipelineProfile:
    """A pipeline's profile file."""

    pipeline: str
    host: Mapping[str, Any]
    stages: Mapping[str, StageProfile]
    hop_ms: Mapping[int, tuple[float, float]] = field(default_factory=lambda: DEFAULT_HOP_MS)

    def stage(self, name: str) -> StageProfile:
        """The profile of one stage; ProfileError when the file has none."""
        try:
            return self.stages[name]
        except KeyError:
            raise ProfileError(
                f"profile of pipeline {self.pipeline!r} has no stage {name!r} "
                f"(profiled: {sorted(self.stages)}): run `sluice profile` again"
            ) from None

    def hop_latency_ms(self, rows: int, q: float = 0.5) -> float:
        """Extra latency of one isolated hop for a request of ``rows`` rows at quantile ``q``
        (p50 below the median, linear to p99 above it)."""
        sizes = sorted(self.hop_ms)
        at_q = [(float(r), _hop_quantile(self.hop_ms[r], q)) for r in sizes]
        if len(at_q) == 1 or rows <= sizes[0]:
            return at_q[0][1]
        if rows >= sizes[-1]:
            return at_q[-1][1]
        return _piecewise(float(rows), at_q)

    def per_request(self, rows_per_request: int) -> PipelineProfile:
        """Every model re-expressed for requests of ``rows_per_request`` rows
        (:meth:`ModelProfile.per_request`), hops at that request size."""
        if rows_per_request == 1:
            return self
        hop = {1: (self.hop_latency_ms(rows_per_request, 0.5),
                   self.hop_latency_ms(rows_per_request, 0.99))}
        return PipelineProfile(
            self.pipeline, {**self.host, "rows_per_request": rows_per_request},
            {name: StageProfile(name, {v: m.per_request(rows_per_request)
                                       for v, m in stage.variants.items()})
             for name, stage in self.stages.items()},
            hop)

    def to_json(self) -> dict[str, Any]:
        """The profile as the versioned JSON document."""
        return {
            "format": FORMAT,
            "pipeline": self.pipeline,
            "host": dict(self.host),
            "hop_ms": {str(r): {"p50": p50, "p99": p99}
                       for r, (p50, p99) in sorted(self.hop_ms.items())},
            "stages": {
                name: {"variants": {v: _model_json(m) for v, m in stage.variants.items()}}
                for name, stage in self.stages.items()
            },
        }


def _hop_quantile(pair: tuple[float, float], q: float) -> float:
    p50, p99 = pair
    if q <= 0.5:
        return p50
    return p50 + (min(q, 0.99) - 0.5) / 0.49 * (p99 - p50)


def _piecewise(x: float, points: Sequence[tuple[float, float]]) -> float:
    """Linear interpolation through ascending ``points``, clamped at both ends."""
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x <= x1:
            return y0 if x1 == x0 else y0 + (x - x0) / (x1 - x0) * (y1 - y0)
    return points[-1][1]


def _model_json(model: ModelProfile) -> dict[str, Any]:
    return {
        "model": model.model, "sha256": model.sha256, "accuracy": model.accuracy,
        "load_s": model.load_s, "warmup_s": model.warmup_s, "rss_mib": model.rss_mib,
        "points": [
            {"cores": p.cores, "threads": p.threads, "batch": p.batch, "samples": p.samples,
             **{key: getattr(p, key) for key, _ in QUANTILES}, "mean_ms": p.mean_ms}
            for p in sorted(model.points, key=lambda p: (p.cores, p.batch))
        ],
    }


def parse_profile(document: Mapping[str, Any]) -> PipelineProfile:
    """A profile from its JSON document; ProfileError saying what is wrong."""
    if not isinstance(document, Mapping) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, Mapping) else type(document)
        raise ProfileError(f"not a Sluice profile: format is {found!r}, expected {FORMAT!r}")
    try:
        stages = {
            name: StageProfile(name, {
                variant: _parse_model(raw_model)
                for variant, raw_model in raw["variants"].items()
            })
            for name, raw in document["stages"].items()
        }
        hop = {int(rows): (float(v["p50"]), float(v["p99"]))
               for rows, v in (document.get("hop_ms") or {}).items()}
        return PipelineProfile(
            pipeline=str(document["pipeline"]),
            host=dict(document.get("host") or {}),
            stages=stages,
            hop_ms=hop or DEFAULT_HOP_MS,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ProfileError):
            raise
        raise ProfileError(f"malformed profile: {type(exc).__name__}: {exc}") from None


def _parse_model(raw: Mapping[str, Any]) -> ModelProfile:
    points = tuple(_parse_point(p) for p in raw["points"])
    return ModelProfile(
        model=str(raw["model"]),
        sha256=raw.get("sha256"),
        accuracy=float(raw.get("accuracy", 1.0)),
        load_s=float(raw["load_s"]),
        warmup_s=float(raw["warmup_s"]),
        rss_mib=float(raw["rss_mib"]),
        points=points,
    )


def _parse_point(raw: Mapping[str, Any]) -> LatencyPoint:
    values = [float(raw[key]) for key, _ in QUANTILES]
    if any(b < a for a, b in itertools.pairwise(values)):
        raise ProfileError(f"latency quantiles must not decrease: {dict(raw)}")
    cores, batch = float(raw["cores"]), int(raw["batch"])
    if cores <= 0 or batch < 1:
        raise ProfileError(f"a point needs cores > 0 and batch >= 1: {dict(raw)}")
    mean = float(raw.get("mean_ms", values[1]))
    if not values[0] <= mean <= values[-1]:
        raise ProfileError(f"mean_ms must lie between min_ms and max_ms: {dict(raw)}")
    return LatencyPoint(cores, batch, int(raw.get("threads", 1)), int(raw.get("samples", 0)),
                        *values, mean)


def load_profile(path: Path) -> PipelineProfile:
    """Read a profile file."""
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ProfileError(f"profile {path} is not JSON: {exc}") from None
    return parse_profile(document)


def save_profile(profile: PipelineProfile, path: Path) -> None:
    """Write a profile file (sorted keys, so regenerated files diff cleanly)."""
    path.write_text(json.dumps(profile.to_json(), indent=1, sort_keys=True) + "\n")


def point_from_samples(cores: float, batch: int, threads: int,
                       samples_ms: Iterable[float]) -> LatencyPoint:
    """A point from raw measured latencies (milliseconds)."""
    ordered = sorted(samples_ms)
    if not ordered:
        raise ValueError("no samples")

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return LatencyPoint(cores, batch, threads, len(ordered), ordered[0], at(0.50), at(0.95),
                        at(0.99), ordered[-1], sum(ordered) / len(ordered))
