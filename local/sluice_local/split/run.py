"""The whole split: probe the model, find its valid cuts, cost the candidates (measured or
estimated), choose, build the parts, then time them in chain against the whole model."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import onnx

from sluice_local.split import measure
from sluice_local.split.choose import MAX_PARTS, Candidates, Choice, balance, fewest_parts, thin
from sluice_local.split.cost import CARRY_FLOPS_PER_BYTE, CARRY_MS_PER_BYTE, node_flops_per_row
from sluice_local.split.cuts import Blocked, Cut, PartPlan, find_cuts, plan_part
from sluice_local.split.graph import Graph, SplitError
from sluice_local.split.onnxgraph import build_part, graph_of

#: Chained parts must equal the whole model within this (floats; other types exactly).
#: Without graph optimisation they are bit-identical; with it onnxruntime fuses nodes
#: (a convolution with the Add and Relu after it) that a cut leaves apart, and sums in
#: another order: float32 rounding, a few units in the last place of the largest outputs.
RTOL, ATOL = 1e-5, 1e-5
#: At most this many cut points are costed (measuring each segment takes a session).
MAX_CANDIDATE_CUTS = 64
MIB = 1 << 20


@dataclass(frozen=True)
class SplitOptions:
    """What to split into: ``parts`` (None: the fewest within the limits), the per-part
    limits, whether to estimate rather than measure, and the rows of a measured run."""

    parts: int | None
    max_part_ms: float | None = None
    max_part_mib: float | None = None
    estimate: bool = False
    rows: int = 8


@dataclass(frozen=True)
class Part:
    """One part: its plan, its model, its estimated compute and measured latency."""

    plan: PartPlan
    model: onnx.ModelProto
    flops_per_row: float
    latency_ms: float


@dataclass(frozen=True)
class Split:
    """A finished split, with what was measured and how its outputs compare."""

    graph: Graph
    valid_cuts: tuple[Cut, ...]
    candidate_cuts: int
    cuts: tuple[Cut, ...]
    parts: tuple[Part, ...]
    whole_latency_ms: float
    max_abs_diff: dict[str, float]
    max_abs_diff_unoptimised: dict[str, float]
    rows: int
    estimated: bool


def _refuse_impossible(label: str, parts: int | None, valid: list[Cut],
                       blocked: list[Blocked]) -> None:
    if parts is None or parts == 1 or parts - 1 <= len(valid):
        return
    if not valid:
        reasons = Counter(b.reason for b in blocked)
        why = reasons.most_common(1)[0][0] if reasons else "it has a single node"
        raise SplitError(f"{label} has no valid cut: {why}")
    raise SplitError(f"{label} cannot be cut into {parts} parts: it has {len(valid)} valid "
                     f"cut points (at most {len(valid) + 1} parts)")


def _candidate_cuts(valid: list[Cut], node_flops: list[float]) -> list[Cut]:
    """The valid cuts, thinned to MAX_CANDIDATE_CUTS by compute and bytes carried."""
    if len(valid) <= MAX_CANDIDATE_CUTS:
        return valid
    before = list(itertools.accumulate(node_flops, initial=0.0))
    kept = thin([before[cut.position] for cut in valid], before[-1],
                [c.bytes_per_row for c in valid], MAX_CANDIDATE_CUTS)
    return [valid[i] for i in kept]


def _plans(graph: Graph, boundaries: list[int], cuts: dict[int, Cut]) -> list[PartPlan]:
    """The parts between consecutive positions in ``boundaries``."""
    return [plan_part(graph, start, end, cuts.get(start), cuts.get(end))
            for start, end in itertools.pairwise(boundaries)]


def _limits(options: SplitOptions) -> str:
    said = []
    if options.max_part_ms is not None:
        said.append(f"{options.max_part_ms:g} ms")
    if options.max_part_mib is not None:
        said.append(f"{options.max_part_mib:g} MiB of weights")
    return " and ".join(said)


def _choose(candidates: Candidates, options: SplitOptions) -> Choice:
    max_weights = None if options.max_part_mib is None else int(options.max_part_mib * MIB)
    if options.parts is not None:
        choice = balance(candidates, options.parts)
    else:
        choice = fewest_parts(candidates, max_compute=options.max_part_ms,
                              max_weights_bytes=max_weights)
    if choice is None:
        segments = range(len(candidates.segment_costs))
        heaviest_mib = max(candidates.weights_bytes(i, i + 1) for i in segments) / MIB
        slowest = max(candidates.segment_costs)
        cost = f"{slowest:.3g} {'estimated FLOPs per row' if options.estimate else 'ms'}"
        raise SplitError(f"no split into at most {MAX_PARTS} parts keeps every part within "
                         f"{_limits(options)} (the heaviest piece between two valid cuts "
                         f"holds {heaviest_mib:.2f} MiB, the costliest takes {cost})")
    return choice


def _segment_costs(model: onnx.ModelProto, graph: Graph, positions: list[int],
                   cuts: dict[int, Cut], node_flops: list[float], feed: measure.Arrays,
                   options: SplitOptions) -> list[float]:
    """Each segment's compute between neighbouring positions: estimated FLOPs per row, or
    ms measured at ``options.rows`` rows, each segment run on the previous one's outputs."""
    if options.estimate:
        return [sum(node_flops[a:b]) for a, b in itertools.pairwise(positions)]
    plans = _plans(graph, positions, cuts)
    segments = [build_part(model, graph, plan, k, len(plans))
                for k, plan in enumerate(plans, start=1)]
    costs_ms, _ = measure.timed_chain(segments, feed, measure.SEGMENT_MIN_S)
    return costs_ms


def _weights(graph: Graph, positions: list[int], cuts: dict[int, Cut]
             ) -> Callable[[int, int], int]:
    """The weights of the part between ``positions[i]`` and ``positions[j]``, remembered:
    the balancing asks for the same parts many times."""
    known: dict[tuple[int, int], int] = {}

    def weights_bytes(i: int, j: int) -> int:
        if (i, j) not in known:
            start, end = positions[i], positions[j]
            known[i, j] = plan_part(graph, start, end, cuts.get(start), cuts.get(end)
                                    ).weights_bytes
        return known[i, j]

    return weights_bytes


def split_model(model: onnx.ModelProto, label: str, options: SplitOptions) -> Split:
    """Split ``model`` (called ``label`` in messages) as ``options`` ask; SplitError when
    it cannot be."""
    graph = graph_of(model, measure.probe_values(model), measure.PROBE_ROWS[0])
    valid, blocked = find_cuts(graph)
    _refuse_impossible(label, options.parts, valid, blocked)
    node_flops = [node_flops_per_row(graph, node) for node in graph.nodes]
    candidate_cuts = _candidate_cuts(valid, node_flops)
    cuts = {c.position: c for c in candidate_cuts}
    positions = [0, *cuts, len(graph.nodes)]
    feed = measure.sample_inputs(model, options.rows)
    per_byte = CARRY_FLOPS_PER_BYTE if options.estimate else CARRY_MS_PER_BYTE * options.rows
    candidates = Candidates(
        tuple(positions),
        tuple(_segment_costs(model, graph, positions, cuts, node_flops, feed, options)),
        tuple(cuts[p].bytes_per_row for p in positions[1:-1]),
        _weights(graph, positions, cuts), per_byte)
    boundaries = [positions[i] for i in _choose(candidates, options).boundaries]
    plans = _plans(graph, boundaries, cuts)
    models = [build_part(model, graph, plan, k, len(plans))
              for k, plan in enumerate(plans, start=1)]
    latencies_ms, chained = measure.timed_chain(models, feed, measure.PART_MIN_S)
    (whole_ms,), expected = measure.timed_chain([model], feed, measure.PART_MIN_S)
    if not measure.equal_within(chained, expected, RTOL, ATOL):
        name, diff = max(measure.max_abs_diff(chained, expected).items(), key=lambda kv: kv[1])
        raise SplitError(f"the parts' output '{name}' differs from the model's by up to "
                         f"{diff:.3g}, beyond rtol {RTOL:g} and atol {ATOL:g}: not written")
    unoptimised_diff = measure.max_abs_diff(
        measure.chained_outputs(models, feed, optimise=False),
        measure.chained_outputs([model], feed, optimise=False))
    parts = tuple(
        Part(plan, part, sum(node_flops[i] for i in plan.nodes), latency_ms)
        for plan, part, latency_ms in zip(plans, models, latencies_ms, strict=True))
    return Split(graph, tuple(valid), len(candidate_cuts),
                 tuple(cuts[b] for b in boundaries[1:-1]), parts, whole_ms,
                 measure.max_abs_diff(chained, expected), unoptimised_diff, options.rows,
                 options.estimate)
