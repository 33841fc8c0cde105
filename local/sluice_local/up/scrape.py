"""The runtimes' Prometheus metrics as numbers: parsed, differenced, read as quantiles.

Pure: the text comes from the caller. Counters and histogram buckets are cumulative, so a
tick's figures are the difference between two scrapes of the same process; a process
started between them counts from zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Scrape:
    """One process's metrics at one instant: value by (sample name, sorted labels)."""

    values: Mapping[tuple[str, Labels], float]

    def get(self, name: str, **labels: str) -> float:
        """The sample ``name`` with exactly ``labels`` (0 when absent)."""
        return self.values.get((name, tuple(sorted(labels.items()))), 0.0)

    def matching(self, name: str, **labels: str) -> dict[Labels, float]:
        """Every sample ``name`` whose labels include ``labels``, by its full labels."""
        wanted = set(labels.items())
        return {key: value for (sample, key), value in self.values.items()
                if sample == name and wanted <= set(key)}


EMPTY = Scrape({})


def parse(text: str) -> Scrape:
    """A scrape of the Prometheus text exposition ``text``."""
    values: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return Scrape(values)


def counter_delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    """How much counter ``name`` (summed over samples including ``labels``) grew; a reset
    (a new process) counts from zero."""
    now = sum(after.matching(name, **labels).values())
    then = sum(before.matching(name, **labels).values())
    return now - then if now >= then else now


def bucket_deltas(before: Scrape, after: Scrape, histogram: str,
                  **labels: str) -> dict[float, float]:
    """Cumulative counts per upper bound ``le`` of ``histogram`` gained between scrapes."""
    deltas: dict[float, float] = {}
    for key, value in after.matching(f"{histogram}_bucket", **labels).items():
        then = before.values.get((f"{histogram}_bucket", key), 0.0)
        le = float(dict(key)["le"])
        deltas[le] = deltas.get(le, 0.0) + (value - then if value >= then else value)
    return deltas


def merge_buckets(parts: Iterable[Mapping[float, float]]) -> dict[float, float]:
    """Cumulative bucket counts of several processes added up (same bounds)."""
    merged: dict[float, float] = {}
    for part in parts:
        for le, count in part.items():
            merged[le] = merged.get(le, 0.0) + count
    return merged


def quantile_ms(buckets: Mapping[float, float], q: float) -> float | None:
    """The ``q`` quantile (0-1) of cumulative ``buckets`` in ms, interpolated linearly in
    its bucket as Prometheus does; None with no observations. An observation above the
    last finite bound is reported at that bound."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower * 1000.0
            within = count - below
            fraction = (rank - below) / within if within > 0 else 1.0
            return (lower + (le - lower) * fraction) * 1000.0
        lower, below = le, count
    return lower * 1000.0
