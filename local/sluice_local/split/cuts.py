"""Where a graph can be cut, and what the part between two cuts runs, takes and hands on.

A cut at position ``p`` runs ``nodes[:p]`` upstream and ``nodes[p:]`` downstream (the
graph's own order, which ONNX requires to be topological). The runtime hands a stage's
outputs to the next stage's inputs by name and batches every stage on the first axis, so
a cut is valid only where everything downstream needs from upstream is either

- a **batch tensor** (its first axis the request's rows): it crosses the cut, an output of
  the part before and an input of the part after, and is passed on by every part between
  its producer and its last consumer (a skip connection is carried, never dropped);
- or **made again downstream without reading a batch tensor's values**: initializers,
  constants and shape arithmetic are duplicated into every part that needs them, and the
  shape of a batch tensor whose other axes are fixed is rebuilt from the rows of any
  tensor that crosses (in a batch they are the same rows).

Anything else blocks the cut: a value without a batch axis computed from a batch tensor's
values (carried, it would be one request's where the stage runs a batch of several), a
model input without a batch axis needed past the first part, or a value that is not a
tensor (sequences, maps) computed from batch tensors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sluice_local.split.graph import Graph, Node, SplitError, Value

#: Shape's domains: the default ONNX domain goes by both names.
_ONNX_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Cut:
    """A valid cut: the batch tensors crossing it (in order of production) and their bytes
    per row of the batch."""

    position: int
    tensors: tuple[str, ...]
    bytes_per_row: int


@dataclass(frozen=True)
class Blocked:
    """A position where no cut can be made, and why."""

    position: int
    reason: str


@dataclass(frozen=True)
class ShapeRebuild:
    """A Shape node's output made again in a later part from the rows of ``source``:
    ``dims`` are its values, None where the batch size goes."""

    output: str
    dims: tuple[int | None, ...]
    source: str


@dataclass(frozen=True)
class PartPlan:
    """The part from ``start`` to ``end``: its inputs and outputs, the nodes it runs (its
    own and those it makes again, in graph order), the shapes it rebuilds and the
    initializers it holds."""

    start: int
    end: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: tuple[int, ...]
    rebuilt: tuple[ShapeRebuild, ...]
    initializers: tuple[str, ...]
    weights_bytes: int


class _Uncarriable(Exception):
    """What is needed downstream can neither cross nor be made again there."""


@dataclass
class _Needs:
    crossing: set[str] = field(default_factory=set)
    recomputed: set[int] = field(default_factory=set)
    rebuilt: dict[str, tuple[int | None, ...]] = field(default_factory=dict)
    initializers: set[str] = field(default_factory=set)


def _shape_values(source: Value, node: Node) -> tuple[int | None, ...]:
    """What Shape(source) yields, with its start/end attributes (clamped as ONNX does)."""
    rank = len(source.shape)

    def axis(key: str, default: int) -> int:
        value = node.int_attributes.get(key, default)
        return min(max(value + rank if value < 0 else value, 0), rank)

    dims: tuple[int | None, ...] = (None, *source.shape[1:])
    return dims[axis("start", 0):axis("end", rank)]


def _resolve(graph: Graph, start: int, demand: Iterable[str]) -> _Needs:
    """What a part beginning at ``start`` needs from before it to compute ``demand``.

    Raises _Uncarriable naming the first value that can neither cross nor be made again.
    """
    needs = _Needs()
    seen: set[str] = set()
    stack = [name for name in demand if name]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in graph.initializers:
            needs.initializers.add(name)
            continue
        producer = graph.producers.get(name)
        if producer is not None and producer >= start:
            continue  # made in the part itself
        value = graph.values.get(name)
        if start == 0 or (value is not None and value.batch):
            needs.crossing.add(name)
            continue
        if producer is None:
            raise _Uncarriable(f"the model's input '{name}' has no batch axis")
        node = graph.nodes[producer]
        if node.op_type == "Shape" and node.domain in _ONNX_DOMAINS:
            source = graph.values.get(node.inputs[0])
            if source is not None and source.batch and all(source.static[1:]):
                needs.rebuilt[name] = _shape_values(source, node)
                continue
        else:
            for used in node.inputs:
                used_value = graph.values.get(used)
                if used not in graph.initializers and used_value is not None and \
                        used_value.batch:
                    raise _Uncarriable(f"'{name}' has no batch axis and is computed from the "
                                       f"values of '{used}'")
        needs.recomputed.add(producer)
        stack.extend(u for u in node.inputs if u)
    return needs


def _in_order(graph: Graph, names: Iterable[str]) -> tuple[str, ...]:
    """Names in order of production (the model's inputs first), then by name."""
    return tuple(sorted(names, key=lambda n: (graph.producers.get(n, -1), n)))


def find_cuts(graph: Graph) -> tuple[list[Cut], list[Blocked]]:
    """Every position between two nodes, valid (what crosses it) or blocked (why)."""
    valid: list[Cut] = []
    blocked: list[Blocked] = []
    # Names the nodes from ``position`` on read and do not make themselves, built backwards.
    live = set(graph.outputs)
    for position in range(len(graph.nodes) - 1, 0, -1):
        node = graph.nodes[position]
        live = (live - set(node.outputs)) | {n for n in node.inputs if n}
        try:
            needs = _resolve(graph, position, live)
        except _Uncarriable as exc:
            blocked.append(Blocked(position, str(exc)))
            continue
        if not needs.crossing:
            blocked.append(Blocked(position, "no tensor with a batch axis crosses here"))
            continue
        tensors = _in_order(graph, needs.crossing)
        valid.append(Cut(position, tensors, sum(graph.bytes_per_row(t) for t in tensors)))
    return valid[::-1], blocked[::-1]


def plan_part(graph: Graph, start: int, end: int, entering: Cut | None,
              leaving: Cut | None) -> PartPlan:
    """The part between cut ``entering`` (None: the model's start) and cut ``leaving``
    (None: its end), which ``start`` and ``end`` locate."""
    produces = leaving.tensors if leaving is not None else graph.outputs
    demand = [name for node in graph.nodes[start:end] for name in node.inputs]
    try:
        needs = _resolve(graph, start, [*demand, *produces])
    except _Uncarriable as exc:  # find_cuts judged the cut valid: a bug if reached
        raise SplitError(f"part from node {start} to {end}: {exc}") from None
    inputs = entering.tensors if entering is not None else graph.inputs
    if missing := needs.crossing - set(inputs):
        raise SplitError(f"part from node {start} to {end} needs {sorted(missing)}, which "
                         "do not cross into it")
    rebuilt = tuple(ShapeRebuild(name, dims, inputs[0])
                    for name, dims in sorted(needs.rebuilt.items()))
    initializers = tuple(sorted(needs.initializers))
    return PartPlan(
        start=start,
        end=end,
        inputs=tuple(inputs),
        outputs=tuple(produces),
        nodes=tuple(sorted(set(range(start, end)) | needs.recomputed)),
        rebuilt=rebuilt,
        initializers=initializers,
        weights_bytes=sum(graph.initializers[name] for name in initializers),
    )
