"""Choosing the cuts: balanced parts, costed with what crosses them, within the per-part
limits (pure)."""

import pytest
from sluice_local.split.choose import Candidates, balance, fewest_parts, thin


def candidates(costs, crossing, weights=None, cost_per_byte=0.0):
    """Segments of ``costs`` between positions 0, 10, 20, ...; ``weights`` per segment."""
    weights = weights or [0] * len(costs)
    return Candidates(
        positions=tuple(10 * i for i in range(len(costs) + 1)),
        segment_costs=tuple(costs),
        crossing_bytes=tuple(crossing),
        weights_bytes=lambda i, j: sum(weights[i:j]),
        cost_per_byte=cost_per_byte,
    )


@pytest.mark.parametrize(("costs", "crossing", "parts", "boundaries"), [
    ([1, 1, 1, 1], [5, 5, 5], 2, (0, 2, 4)),
    ([3, 1, 1, 1], [5, 5, 5], 2, (0, 1, 4)),
    ([1, 1, 1, 1], [5, 5, 5], 4, (0, 1, 2, 3, 4)),
    ([1, 1, 1, 1], [5, 5, 5], 1, (0, 4)),
    # An indivisible first segment sets the largest part; the rest are still balanced,
    # never left to a part that does next to nothing.
    ([5, 1, 1, 1, 1], [5, 5, 5, 5], 3, (0, 1, 3, 5)),
    ([5, 1, 1, 1, 0.01], [5, 5, 5, 5], 3, (0, 1, 3, 5)),
])
def test_balance(costs, crossing, parts, boundaries):
    choice = balance(candidates(costs, crossing), parts, slack=0.1)
    assert choice is not None
    assert choice.boundaries == boundaries


@pytest.mark.parametrize(("crossing", "boundaries"), [
    ([1, 1, 1], (0, 2, 4)),
    # Carrying a large tensor costs: the cut moves to where less crosses.
    ([1, 100, 1], (0, 1, 4)),
    ([1, 100, 0], (0, 3, 4)),
])
def test_what_crosses_a_cut_counts_in_both_parts_beside_it(crossing, boundaries):
    choice = balance(candidates([1, 1, 1, 1], crossing, cost_per_byte=0.02), 2)
    assert choice is not None
    assert choice.boundaries == boundaries
    assert choice.max_compute == max(boundaries[1], 4 - boundaries[1])


def test_balance_cannot_make_more_parts_than_segments():
    assert balance(candidates([1, 1], [5]), 3) is None


def test_the_weights_limit_is_kept_in_every_part():
    c = candidates([1, 1, 1, 1], [5, 5, 5], weights=[10, 10, 30, 0])
    choice = balance(c, 2, max_weights_bytes=30)
    assert choice is not None
    assert choice.boundaries == (0, 2, 4)
    assert balance(c, 2, max_weights_bytes=29) is None  # one segment alone is over


def test_fewest_parts_meeting_a_compute_limit():
    c = candidates([2, 2, 2, 2], [5, 5, 5])
    assert fewest_parts(c, max_compute=100).boundaries == (0, 4)
    assert fewest_parts(c, max_compute=4).boundaries == (0, 2, 4)
    assert fewest_parts(c, max_compute=3).boundaries == (0, 1, 2, 3, 4)
    assert fewest_parts(c, max_compute=1.9) is None


def test_fewest_parts_meeting_a_weights_limit():
    c = candidates([1, 1, 1, 1], [5, 5, 5], weights=[10, 10, 10, 10])
    assert len(fewest_parts(c, max_weights_bytes=20).boundaries) - 1 == 2
    assert len(fewest_parts(c, max_weights_bytes=15).boundaries) - 1 == 4


def test_fewest_parts_stops_at_the_most_allowed():
    c = candidates([1] * 6, [5] * 5)
    assert fewest_parts(c, max_compute=1, most=5) is None


def test_thin_keeps_the_cuts_that_make_the_most_even_segments():
    before = [0.1, 0.2, 0.3, 0.6, 0.7, 0.95]
    crossing = [50, 10, 50, 40, 30, 5]
    assert thin(before, 1.0, crossing, keep=2) == [2, 4]  # segments 0.3, 0.4, 0.3
    assert thin(before, 1.0, crossing, keep=10) == [0, 1, 2, 3, 4, 5]


def test_thin_keeps_the_cuts_around_a_node_that_dominates():
    # Ten cheap nodes, one costing 100, ten cheap ones: a cut after every node.
    costs = [1] * 10 + [100] + [1] * 10
    before = [sum(costs[:p]) for p in range(1, len(costs))]
    kept = thin(before, sum(costs), [1] * len(before), keep=4)
    assert {9, 10} <= set(kept)  # right before and right after the big one
    assert len(kept) == 4
