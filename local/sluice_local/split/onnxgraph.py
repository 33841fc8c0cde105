"""ONNX protos in and out: a model as the split's plain data, a part plan as a model."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import AttributeProto, helper, numpy_helper

from sluice_local.split.cuts import PartPlan, ShapeRebuild
from sluice_local.split.graph import Graph, Node, SplitError, Value

#: What a part's batch axis is called where the model names none.
DEFAULT_BATCH_DIM = "N"


def load_model(path: Path) -> onnx.ModelProto:
    """The model at ``path`` with its weights (external data included)."""
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError, OSError, onnx's own: no common base
        raise SplitError(f"cannot read {path} as an ONNX model: {exc}") from None


def _subgraphs(node: onnx.NodeProto) -> Iterable[onnx.GraphProto]:
    for attribute in node.attribute:
        if attribute.type == AttributeProto.GRAPH:
            yield attribute.g
        elif attribute.type == AttributeProto.GRAPHS:
            yield from attribute.graphs


def _outer_names(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads from the scopes around it."""
    defined = {v.name for v in graph.input} | {i.name for i in graph.initializer} | {
        s.values.name for s in graph.sparse_initializer}
    used: set[str] = set()
    for node in graph.node:
        used.update(n for n in node.input if n)
        for subgraph in _subgraphs(node):
            used |= _outer_names(subgraph)
        defined.update(node.output)
    return used - defined


def _node(index: int, node: onnx.NodeProto) -> Node:
    implicit: set[str] = set()
    for subgraph in _subgraphs(node):
        implicit |= _outer_names(subgraph)
    return Node(
        index=index,
        name=node.name,
        op_type=node.op_type,
        domain=node.domain,
        inputs=(*node.input, *sorted(implicit - set(node.input))),
        outputs=tuple(node.output),
        int_attributes={a.name: a.i for a in node.attribute if a.type == AttributeProto.INT},
    )


def _initializer_values(model: onnx.ModelProto) -> dict[str, Value]:
    """Every initializer as a fixed value of its declared shape."""
    values = {}
    tensors = [*model.graph.initializer, *(s.values for s in model.graph.sparse_initializer)]
    for tensor in tensors:
        dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
        dims = tuple(int(d) for d in tensor.dims)
        values[tensor.name] = Value(tensor.name, dtype.name, dims, (True,) * len(dims), False,
                                    dtype.itemsize * math.prod(dims))
    return values


def graph_of(model: onnx.ModelProto, observed: Mapping[str, Value], probe_rows: int) -> Graph:
    """The model as plain data, with what the probes ``observed`` of its values."""
    initializers = _initializer_values(model)
    return Graph(
        nodes=tuple(_node(i, node) for i, node in enumerate(model.graph.node)),
        inputs=tuple(v.name for v in model.graph.input if v.name not in initializers),
        outputs=tuple(v.name for v in model.graph.output),
        initializers={name: value.nbytes for name, value in initializers.items()},
        values={**observed, **initializers},
        probe_rows=probe_rows,
    )


def with_every_value_as_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` that returns every node's outputs too (for the probes)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    declared = {v.name for v in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in declared:
                probe.graph.output.add().name = name
                declared.add(name)
    return probe


def batch_dim_name(model: onnx.ModelProto) -> str:
    """The name the model gives its batch axis (its first input's first axis), if any."""
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            return dims[0].dim_param
    return DEFAULT_BATCH_DIM


class _Names:
    """Fresh tensor names that clash with none of the model's."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self._taken = {v.name for v in (*graph.input, *graph.output)} | {
            i.name for i in graph.initializer} | {
            n for node in graph.node for n in (*node.input, *node.output)}

    def fresh(self, base: str) -> str:
        name, count = base, 0
        while name in self._taken:
            count += 1
            name = f"{base}_{count}"
        self._taken.add(name)
        return name


def _int64s(name: str, values: list[int]) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name],
                            value=numpy_helper.from_array(np.array(values, dtype=np.int64)))


def _rebuild(rebuild: ShapeRebuild, names: _Names) -> list[onnx.NodeProto]:
    """Nodes that make ``rebuild.output`` from the rows of ``rebuild.source``: its first
    axis, joined with the fixed axes the model's own Shape node read."""
    if None not in rebuild.dims:
        return [_int64s(rebuild.output, [int(d) for d in rebuild.dims])]
    base = f"{rebuild.output}/sluice_split"
    shape, first, rows = names.fresh(f"{base}/shape"), names.fresh(f"{base}/first"), \
        names.fresh(f"{base}/rows")
    nodes = [helper.make_node("Shape", [rebuild.source], [shape]), _int64s(first, [0]),
             helper.make_node("Gather", [shape, first], [rows], axis=0)]
    pieces: list[str] = []
    fixed: list[int] = []
    for dim in rebuild.dims:
        if dim is None:
            if fixed:
                pieces.append(names.fresh(f"{base}/fixed"))
                nodes.append(_int64s(pieces[-1], fixed))
                fixed = []
            pieces.append(rows)
        else:
            fixed.append(dim)
    if fixed:
        pieces.append(names.fresh(f"{base}/fixed"))
        nodes.append(_int64s(pieces[-1], fixed))
    if pieces == [rows]:
        nodes[-1].output[0] = rebuild.output
    else:
        nodes.append(helper.make_node("Concat", pieces, [rebuild.output], axis=0))
    return nodes


def _declared(graph: Graph, name: str, batch_dim: str) -> onnx.ValueInfoProto:
    """A crossing tensor's type: the batch axis named, fixed axes sized, the rest free."""
    value = graph.values[name]
    dims: list[str | int | None] = [batch_dim]
    dims += [d if fixed else None for d, fixed in zip(value.shape[1:], value.static[1:],
                                                      strict=True)]
    element = helper.np_dtype_to_tensor_dtype(np.dtype(value.dtype))
    return helper.make_tensor_value_info(name, element, dims)


def build_part(model: onnx.ModelProto, graph: Graph, plan: PartPlan, index: int,
               total: int) -> onnx.ModelProto:
    """Part ``index`` (from 1) of ``total``: the model's nodes, weights and declarations
    that ``plan`` names, with what crosses its cuts as inputs and outputs."""
    source = model.graph
    names = _Names(model)
    batch_dim = batch_dim_name(model)
    nodes: list[onnx.NodeProto] = []
    for rebuild in plan.rebuilt:
        nodes += _rebuild(rebuild, names)
    taken = set(plan.inputs)
    for i in plan.nodes:
        node = onnx.NodeProto()
        node.CopyFrom(source.node[i])
        if i < plan.start:
            # Made again here: an output that crossed into this part already has its name.
            for k, name in enumerate(node.output):
                if name in taken:
                    node.output[k] = names.fresh(name)
        nodes.append(node)
    if plan.start == 0:
        inputs = [v for v in source.input if v.name in plan.inputs]
    else:
        inputs = [_declared(graph, name, batch_dim) for name in plan.inputs]
    if plan.end == len(source.node):
        outputs = list(source.output)
    else:
        outputs = [_declared(graph, name, batch_dim) for name in plan.outputs]
    wanted = set(plan.initializers)
    used = {n for node in nodes for n in (*node.input, *node.output)}
    io = set(plan.inputs) | set(plan.outputs)
    part_graph = helper.make_graph(
        nodes, f"{source.name or 'model'}-part{index}", inputs, outputs,
        initializer=[t for t in source.initializer if t.name in wanted],
        sparse_initializer=[s for s in source.sparse_initializer if s.values.name in wanted],
        value_info=[v for v in source.value_info if v.name in used and v.name not in io],
    )
    part = helper.make_model(part_graph, opset_imports=list(model.opset_import),
                             functions=list(model.functions), producer_name="sluice split")
    part.ir_version = model.ir_version
    part.doc_string = (f"Part {index} of {total} of {source.name or 'the model'}: its nodes "
                       f"{plan.start} to {plan.end - 1}, cut by `sluice split`.")
    part.metadata_props.extend(model.metadata_props)
    return part
