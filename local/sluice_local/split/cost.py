"""A node's compute estimated from the shapes the probes saw (``--estimate``).

Rough on purpose: convolutions and matrix products count two operations per
multiply-accumulate, every other node one per output element. It ranks nodes well
enough to balance parts where measuring them would take too long; it knows nothing of
memory bandwidth or of how well onnxruntime fuses what.
"""

from __future__ import annotations

import math

from sluice_local.split.graph import Graph, Node

#: What carrying one byte across a cut is taken to cost, in the units parts are costed
#: in: about what a gRPC hop on loopback takes to copy, send and parse it (1 GB/s), and
#: the operations a core does meanwhile (~10 GFLOP/s).
CARRY_MS_PER_BYTE = 1e-6
CARRY_FLOPS_PER_BYTE = 10.0

#: Where the weight is among the inputs, for the ops that multiply-accumulate over it.
_CONV_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
_MATMUL_LEFT = {"MatMul": 0, "MatMulInteger": 0, "QLinearMatMul": 0, "Gemm": 0}


def _shape(graph: Graph, name: str) -> tuple[int, ...]:
    value = graph.values.get(name)
    return value.shape if value is not None and value.is_tensor else ()


def node_flops_per_row(graph: Graph, node: Node) -> float:
    """Estimated operations of ``node`` for one row of the batch."""
    out_elements = sum(math.prod(_shape(graph, o)) for o in node.outputs if o)
    inputs = [_shape(graph, name) for name in node.inputs]
    if node.op_type in _CONV_WEIGHT and len(inputs) > _CONV_WEIGHT[node.op_type]:
        weight = inputs[_CONV_WEIGHT[node.op_type]]
        flops = 2 * out_elements * math.prod(weight[1:])
    elif node.op_type == "ConvTranspose" and len(inputs) > 1 and inputs[0]:
        flops = 2 * math.prod(inputs[0]) * math.prod(inputs[1][1:])
    elif node.op_type in _MATMUL_LEFT and inputs and inputs[0]:
        left = inputs[0]
        transposed = node.op_type == "Gemm" and node.int_attributes.get("transA", 0)
        flops = 2 * out_elements * (left[0] if transposed else left[-1])
    else:
        flops = out_elements
    return flops / graph.probe_rows
