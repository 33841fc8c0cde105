"""Choosing the cuts: parts of balanced cost within per-part limits.

A part's cost is its compute plus carrying the tensors across its cuts (``cost_per_byte``
of each byte per row in and out: a copy in a fused process, a gRPC hop between isolated
ones), so a cut through a large activation costs what carrying it costs. The parts run
in sequence on every request but each on its own cores, so the costliest part bounds the
throughput of replicas sized alike: the split first minimises the largest part's cost,
then, among the splits within ``slack`` of that, the sum of the parts' squared costs, so
that every part, not only the largest, carries its share (an indivisible node that
dominates the largest part leaves the others free otherwise, down to a part that does
nothing but add a hop).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: How much costlier than the least possible the largest part may be to balance the rest.
BALANCE_SLACK = 0.10
#: An InferencePipeline holds at most this many stages (the CRD's limit).
MAX_PARTS = 16


@dataclass(frozen=True)
class Candidates:
    """Where parts may begin and end: ``positions`` from 0 to the node count, the compute
    of each segment between neighbours, the bytes per row crossing each interior
    position and what carrying a byte costs, and the weights of the part between
    ``positions[i]`` and ``positions[j]``."""

    positions: tuple[int, ...]
    segment_costs: tuple[float, ...]
    crossing_bytes: tuple[int, ...]
    weights_bytes: Callable[[int, int], int]
    cost_per_byte: float = 0.0


@dataclass(frozen=True)
class Choice:
    """A split: indices into ``Candidates.positions`` from the first to the last, and the
    largest part's compute."""

    boundaries: tuple[int, ...]
    max_compute: float


class _Table:
    """Part costs and what fits, from the candidates (prefix sums: O(1) a part)."""

    def __init__(self, candidates: Candidates, max_compute: float | None,
                 max_weights_bytes: int | None) -> None:
        self.candidates = candidates
        self.segments = len(candidates.segment_costs)
        self._before = [0.0]
        for cost in candidates.segment_costs:
            self._before.append(self._before[-1] + cost)
        # Nothing is carried into the first part or out of the last: the model's own
        # inputs and outputs are the same whatever the split.
        self._carried = [0.0, *(b * candidates.cost_per_byte
                                for b in candidates.crossing_bytes), 0.0]
        self._max_compute = max_compute
        self._max_weights = max_weights_bytes

    def compute(self, i: int, j: int) -> float:
        return self._before[j] - self._before[i]

    def cost(self, i: int, j: int) -> float:
        return self.compute(i, j) + self._carried[i] + self._carried[j]

    def fits(self, i: int, j: int) -> bool:
        if self._max_compute is not None and self.compute(i, j) > self._max_compute:
            return False
        return self._max_weights is None or \
            self.candidates.weights_bytes(i, j) <= self._max_weights


def _bottleneck(table: _Table, parts: int) -> float:
    """The least possible cost of the largest of ``parts`` parts (inf: no such split)."""
    n = table.segments
    best = [math.inf] * (n + 1)
    best[0] = 0.0
    for k in range(1, parts + 1):
        step = [math.inf] * (n + 1)
        for j in range(k, n + 1):
            for i in range(k - 1, j):
                if best[i] < math.inf and table.fits(i, j):
                    step[j] = min(step[j], max(best[i], table.cost(i, j)))
        best = step
    return best[n]


def _most_even(table: _Table, parts: int, cap: float) -> Choice:
    """Of the splits into ``parts`` whose every part costs at most ``cap``, the one with
    the least sum of squared part costs (the earliest cuts on a tie)."""
    n = table.segments
    # best[j]: (sum of squares, boundaries) of the best split of segments [0, j).
    best: list[tuple[float, tuple[int, ...]] | None] = [None] * (n + 1)
    best[0] = (0.0, (0,))
    for k in range(1, parts + 1):
        step: list[tuple[float, tuple[int, ...]] | None] = [None] * (n + 1)
        for j in range(k, n + 1):
            for i in range(k - 1, j):
                before = best[i]
                cost = table.cost(i, j)
                if before is None or cost > cap or not table.fits(i, j):
                    continue
                current = step[j]
                if current is None or before[0] + cost * cost < current[0]:
                    step[j] = (before[0] + cost * cost, (*before[1], j))
        best = step
    found = best[n]
    assert found is not None, "the cap admits the bottleneck split"
    boundaries = found[1]
    return Choice(boundaries, max(table.compute(i, j)
                                  for i, j in itertools.pairwise(boundaries)))


def balance(candidates: Candidates, parts: int, *, max_weights_bytes: int | None = None,
            max_compute: float | None = None, slack: float = BALANCE_SLACK) -> Choice | None:
    """The split into ``parts`` parts: the least costly largest part, then (within
    ``slack`` of it) the most even; every part within the limits. None when none can be."""
    table = _Table(candidates, max_compute, max_weights_bytes)
    if not 1 <= parts <= table.segments:
        return None
    bottleneck = _bottleneck(table, parts)
    if bottleneck == math.inf:
        return None
    # The bottleneck itself must pass the cap whatever the float rounding of the sums.
    cap = max(bottleneck * (1 + slack), math.nextafter(bottleneck, math.inf))
    return _most_even(table, parts, cap)


def fewest_parts(candidates: Candidates, *, max_compute: float | None = None,
                 max_weights_bytes: int | None = None, most: int = MAX_PARTS
                 ) -> Choice | None:
    """The split into the fewest parts (at most ``most``) that keeps every part within
    the limits; None when no split does."""
    for parts in range(1, min(most, len(candidates.segment_costs)) + 1):
        choice = balance(candidates, parts, max_weights_bytes=max_weights_bytes,
                         max_compute=max_compute)
        if choice is not None:
            return choice
    return None


def thin(compute_before: Sequence[float], total: float, crossing_bytes: Sequence[int],
         keep: int) -> list[int]:
    """Which cuts to keep as candidates when there are too many to measure: ``keep`` of
    them, the segments between as even in compute as the cuts allow.

    ``compute_before``: the model's compute before each cut (ascending), ``total`` all of
    it. Cuts go one at a time, each time the one whose two neighbouring segments together
    cost least (on a tie the one carrying more bytes): runs of cheap nodes merge, and the
    cuts around an expensive node stay. Returns indices into the cuts, in order.
    """
    count = len(compute_before)
    before = [*compute_before, total]  # before[count]: the end of the model
    previous = list(range(-1, count - 1))
    following = list(range(1, count + 1))
    alive = [True] * count

    def merged(i: int) -> tuple[float, int, int]:
        start = before[previous[i]] if previous[i] >= 0 else 0.0
        return before[following[i]] - start, -crossing_bytes[i], i

    heap = [merged(i) for i in range(count)]
    heapq.heapify(heap)
    left = count
    while left > keep:
        cost, _, i = heapq.heappop(heap)
        if not alive[i] or merged(i)[0] != cost:
            continue  # gone, or its neighbours changed since this entry was pushed
        alive[i] = False
        left -= 1
        before_i, after_i = previous[i], following[i]
        if before_i >= 0:
            following[before_i] = after_i
            heapq.heappush(heap, merged(before_i))
        if after_i < count:
            previous[after_i] = before_i
            heapq.heappush(heap, merged(after_i))
    return [i for i in range(count) if alive[i]]
