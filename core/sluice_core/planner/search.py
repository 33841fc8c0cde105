"""Choosing one option per stage: a dynamic programme over a discretised latency budget.

Each stage offers, per variant, a Pareto frontier of options: ``(steps, cost)`` where
``steps`` is its predicted latency rounded up to whole budget steps and ``cost`` its cores.
The pipeline's options add up in both (stages run one after the other), and a choice is
feasible when its steps fit the budget. The objective is lexicographic:

- without an accuracy floor: the highest end-to-end accuracy (product of the variants'),
  then the lowest cost, then the lowest latency;
- with a floor: the lowest cost among choices at or above the floor, then the highest
  accuracy, then the lowest latency.

For a fixed variant per stage the cheapest split of the budget is a min-plus convolution
of the stages' frontiers (FA2's DP): ``g_s[j] = min_p g_{s-1}[j - steps_p] + cost_p``.
Variants multiply the choices, so the convolutions run in a depth-first search over
variant assignments that shares prefixes and prunes, exactly, by bounds: the accuracy the
remaining stages could add at best, the steps they need at least and the cores they cost
at least. The answer is optimal for the discretised problem (tested against brute force);
rounding each stage up to a step makes it feasible for the real budget and at least as
good as the real optimum of the budget less one step per stage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_INF = math.inf
#: Accuracy (log) and cost are compared at this resolution, so float noise in sums of
#: equal values does not pick a winner.
_LOG_DIGITS = 9
_COST_DIGITS = 6


@dataclass(frozen=True)
class Point:
    """One option of a stage: its latency in budget steps, its cost, and what it is."""

    steps: int
    cost: float
    option: Any = None


@dataclass(frozen=True)
class VariantChoices:
    """A stage's options with one variant: its accuracy and Pareto frontier (steps
    ascending, cost strictly descending)."""

    variant: Any
    accuracy: float
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Solution:
    """The chosen variant and point per stage, and what they add up to."""

    picks: tuple[tuple[VariantChoices, Point], ...]
    accuracy: float
    cost: float
    steps: int


def pareto(points: Sequence[Point]) -> tuple[Point, ...]:
    """The points no other beats in both steps and cost (for equal steps, the cheapest;
    among equal points, the first)."""
    ordered = sorted(points, key=lambda p: (p.steps, p.cost))
    frontier: list[Point] = []
    for point in ordered:
        if not frontier or point.cost < frontier[-1].cost - 10 ** -_COST_DIGITS:
            frontier.append(point)
    return tuple(frontier)


def objective(log_accuracy: float, cost: float, steps: int,
              floor: float | None) -> tuple[float, float, int]:
    """The key a solution is ranked by (smaller is better)."""
    acc = round(log_accuracy, _LOG_DIGITS)
    cost = round(cost, _COST_DIGITS)
    return (cost, -acc, steps) if floor is not None else (-acc, cost, steps)


def best_assignment(stages: Sequence[Sequence[VariantChoices]], budget_steps: int,
                    min_accuracy: float | None = None) -> Solution | None:
    """The best option per stage within ``budget_steps`` (see the module's objective);
    None when no choice fits the budget (and the floor)."""
    entries = [[_Entry(v) for v in variants if v.points and v.accuracy > 0]
               for variants in stages]
    if any(not e for e in entries):
        return None
    count = len(entries)
    need_steps = [0] * (count + 1)
    need_cost = [0.0] * (count + 1)
    best_log = [0.0] * (count + 1)
    for s in range(count - 1, -1, -1):
        need_steps[s] = need_steps[s + 1] + min(e.min_steps for e in entries[s])
        need_cost[s] = need_cost[s + 1] + min(e.min_cost for e in entries[s])
        best_log[s] = best_log[s + 1] + max(e.log_accuracy for e in entries[s])
    if need_steps[0] > budget_steps:
        return None
    floor_log = None
    if min_accuracy is not None:
        floor_log = math.log(min_accuracy) if min_accuracy > 0 else -_INF
    for options in entries:
        if floor_log is None:
            options.sort(key=lambda e: (-e.log_accuracy, e.min_cost))
        else:
            options.sort(key=lambda e: (e.min_cost, -e.log_accuracy))
    search = _Search(entries, budget_steps, need_steps, need_cost, best_log, floor_log,
                     min_accuracy)
    search.visit(0, [0.0] * (budget_steps + 1), 0.0, [])
    return search.solution


class _Entry:
    """A variant's frontier with the figures the bounds need."""

    __slots__ = ("choices", "log_accuracy", "min_cost", "min_steps", "points")

    def __init__(self, choices: VariantChoices) -> None:
        self.choices = choices
        self.points = choices.points
        self.log_accuracy = math.log(choices.accuracy)
        self.min_steps = min(p.steps for p in choices.points)
        self.min_cost = min(p.cost for p in choices.points)


class _Search:
    """The depth-first search over variant assignments (state shared by the recursion)."""

    def __init__(self, entries: list[list[_Entry]], budget: int, need_steps: list[int],
                 need_cost: list[float], best_log: list[float], floor_log: float | None,
                 floor: float | None) -> None:
        self.entries = entries
        self.budget = budget
        self.need_steps = need_steps
        self.need_cost = need_cost
        self.best_log = best_log
        self.floor_log = floor_log
        self.floor = floor
        self.key: tuple[float, float, int] | None = None
        self.solution: Solution | None = None

    def visit(self, s: int, costs: list[float], log_accuracy: float,
              path: list[tuple[_Entry, list[int]]]) -> None:
        if s == len(self.entries):
            self._leaf(costs, log_accuracy, path)
            return
        limit = self.budget - self.need_steps[s + 1]
        for entry in self.entries[s]:
            reach = log_accuracy + entry.log_accuracy + self.best_log[s + 1]
            if self.floor_log is not None and reach < self.floor_log - 1e-12:
                continue
            if self.key is not None:
                lower = costs[limit - entry.min_steps] if limit >= entry.min_steps else _INF
                bound = objective(reach, lower + entry.min_cost + self.need_cost[s + 1], 0,
                                  self.floor)
                if bound >= self.key:
                    continue
            merged, chosen = _convolve(costs, entry.points, limit, self.budget)
            if merged[limit] == _INF:
                continue
            if self.key is not None:
                bound = objective(reach, merged[limit] + self.need_cost[s + 1], 0,
                                  self.floor)
                if bound >= self.key:
                    continue
            path.append((entry, chosen))
            self.visit(s + 1, merged, log_accuracy + entry.log_accuracy, path)
            path.pop()

    def _leaf(self, costs: list[float], log_accuracy: float,
              path: list[tuple[_Entry, list[int]]]) -> None:
        cost = costs[self.budget]
        if cost == _INF:
            return
        # The fewest steps at that cost: the lowest latency among the cheapest.
        steps = next(j for j, c in enumerate(costs) if c <= cost)
        key = objective(log_accuracy, cost, steps, self.floor)
        if self.key is not None and key >= self.key:
            return
        picks: list[tuple[VariantChoices, Point]] = []
        j = steps
        for entry, chosen in reversed(path):
            point = entry.points[chosen[j]]
            picks.append((entry.choices, point))
            j -= point.steps
        picks.reverse()
        self.key = key
        self.solution = Solution(tuple(picks), math.exp(log_accuracy), cost, steps)


def _convolve(costs: list[float], points: tuple[Point, ...], limit: int,
              budget: int) -> tuple[list[float], list[int]]:
    """``merged[j] = min_p costs[j - steps_p] + cost_p`` for ``j <= limit`` (the rest
    infinite), and which point gave each."""
    merged = [_INF] * (budget + 1)
    chosen = [-1] * (budget + 1)
    for index, point in enumerate(points):
        first = point.steps
        if first > limit:
            break
        cost = point.cost
        for j in range(first, limit + 1):
            value = costs[j - first] + cost
            if value < merged[j]:
                merged[j] = value
                chosen[j] = index
    return merged, chosen
