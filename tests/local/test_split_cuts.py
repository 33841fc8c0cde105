"""Where a graph can be cut and what each part takes, runs and hands on (pure: plain data)."""

import pytest
from sluice_local.split.cuts import Cut, ShapeRebuild, find_cuts, plan_part
from sluice_local.split.graph import Graph, Node, Value

ROWS = 2


def batch(name, *dims, dtype="float32", itemsize=4):
    shape = (ROWS, *dims)
    count = ROWS
    for d in dims:
        count *= d
    return Value(name, dtype, shape, (False,) + (True,) * len(dims), True, count * itemsize)


def fixed(name, *dims):
    count = 1
    for d in dims:
        count *= d
    return Value(name, "int64", dims, (True,) * len(dims), False, count * 8)


def make(nodes, values, inputs=("x",), outputs=("y",), initializers=None, **attrs):
    """A graph of ``(op, inputs, outputs)`` triples; values not listed are [N, 4] floats."""
    built = tuple(Node(i, f"n{i}", op, "", tuple(ins), tuple(outs), attrs.get(f"n{i}", {}))
                  for i, (op, ins, outs) in enumerate(nodes))
    initializers = initializers or {}
    names = {n for node in built for n in (*node.inputs, *node.outputs)} | set(inputs)
    known = {v.name: v for v in values}
    table = {n: known.get(n) or batch(n, 4) for n in names - set(initializers)}
    table.update({n: fixed(n, size // 8) for n, size in initializers.items()})
    return Graph(built, tuple(inputs), tuple(outputs), initializers, table, ROWS)


def cut_at(graph, position):
    valid, blocked = find_cuts(graph)
    found = {c.position: c for c in [*valid, *blocked]}
    return found[position]


def test_a_chain_can_be_cut_anywhere_and_carries_one_tensor():
    g = make([("Relu", ["x"], ["a"]), ("Relu", ["a"], ["b"]), ("Relu", ["b"], ["y"])], [])
    valid, blocked = find_cuts(g)
    assert blocked == []
    assert [(c.position, c.tensors, c.bytes_per_row) for c in valid] == [
        (1, ("a",), 16), (2, ("b",), 16)]


def test_a_skip_connection_is_carried_across_every_cut_it_spans():
    g = make([("Relu", ["x"], ["h1"]), ("Relu", ["h1"], ["h2"]), ("Relu", ["h2"], ["h3"]),
              ("Add", ["h3", "h1"], ["y"])], [batch("h1", 8)])
    assert cut_at(g, 1).tensors == ("h1",)
    assert cut_at(g, 2).tensors == ("h1", "h2")
    assert cut_at(g, 3) == Cut(3, ("h1", "h3"), 32 + 16)


def test_a_part_passes_on_what_later_parts_need_and_it_does_not_make():
    g = make([("Relu", ["x"], ["h1"]), ("Relu", ["h1"], ["h2"]), ("Relu", ["h2"], ["h3"]),
              ("Add", ["h3", "h1"], ["y"])], [])
    middle = plan_part(g, 2, 3, cut_at(g, 2), cut_at(g, 3))
    assert (middle.inputs, middle.outputs, middle.nodes) == (("h1", "h2"), ("h1", "h3"), (2,))
    first = plan_part(g, 0, 2, None, cut_at(g, 2))
    assert (first.inputs, first.outputs, first.nodes) == (("x",), ("h1", "h2"), (0, 1))
    last = plan_part(g, 3, 4, cut_at(g, 3), None)
    assert (last.inputs, last.outputs) == (("h1", "h3"), ("y",))


def test_an_initializer_used_on_both_sides_goes_into_each_part():
    g = make([("MatMul", ["x", "w"], ["a"]), ("Relu", ["a"], ["b"]), ("MatMul", ["b", "w"], ["y"])],
             [], initializers={"w": 128})
    assert cut_at(g, 1).tensors == ("a",)  # the weight itself never crosses
    parts = [plan_part(g, 0, 1, None, cut_at(g, 1)), plan_part(g, 1, 3, cut_at(g, 1), None)]
    assert [(p.initializers, p.weights_bytes) for p in parts] == [(("w",), 128), (("w",), 128)]


def test_shape_arithmetic_is_rebuilt_from_the_rows_of_what_crosses_not_carried():
    g = make([("Shape", ["x"], ["s"]), ("Relu", ["x"], ["h"]), ("Relu", ["h"], ["h2"]),
              ("Reshape", ["h2", "s"], ["y"])], [fixed("s", 2)])
    assert cut_at(g, 2).tensors == ("h",)  # not x, whose shape alone is wanted
    part = plan_part(g, 2, 4, cut_at(g, 2), None)
    assert part.rebuilt == (ShapeRebuild("s", (None, 4), "h"),)
    assert part.nodes == (2, 3)


def test_a_shape_slice_keeps_only_the_asked_axes():
    g = make([("Shape", ["x"], ["s"]), ("Relu", ["x"], ["h"]), ("Reshape", ["h", "s"], ["y"])],
             [batch("x", 3, 5), fixed("s", 2)], n0={"start": 1})
    part = plan_part(g, 2, 3, cut_at(g, 2), None)
    assert part.rebuilt == (ShapeRebuild("s", (3, 5), "h"),)


def test_a_shape_of_a_tensor_with_free_axes_carries_the_tensor():
    x = Value("x", "float32", (ROWS, 7), (False, False), True, ROWS * 28)
    g = make([("Shape", ["x"], ["s"]), ("Relu", ["x"], ["h"]), ("Reshape", ["h", "s"], ["y"])],
             [x, fixed("s", 2)])
    assert cut_at(g, 2).tensors == ("x", "h")
    assert plan_part(g, 2, 3, cut_at(g, 2), None).nodes == (0, 2)  # Shape runs again


def test_constants_made_upstream_are_made_again_downstream():
    g = make([("Constant", [], ["c"]), ("Relu", ["x"], ["h"]), ("Add", ["h", "c"], ["y"])],
             [fixed("c", 4)])
    assert cut_at(g, 2).tensors == ("h",)
    assert plan_part(g, 2, 3, cut_at(g, 2), None).nodes == (0, 2)


@pytest.mark.parametrize(("nodes", "values", "inputs", "says"), [
    ([("Relu", ["x"], ["h"]), ("Mul", ["h", "scale"], ["y"])], [fixed("scale", 1)],
     ("x", "scale"), "the model's input 'scale' has no batch axis"),
    ([("ReduceSum", ["x"], ["t"]), ("Relu", ["x"], ["h"]), ("Add", ["h", "t"], ["y"])],
     [fixed("t", 4)], ("x",), "'t' has no batch axis and is computed from the values of 'x'"),
])
def test_what_cannot_be_carried_blocks_the_cut_and_says_why(nodes, values, inputs, says):
    g = make(nodes, values, inputs=inputs)
    valid, blocked = find_cuts(g)
    assert valid == []
    assert [b.position for b in blocked] == list(range(1, len(nodes)))
    assert says in blocked[-1].reason


def test_a_tensor_needed_only_for_the_model_outputs_is_carried_to_the_end():
    g = make([("Relu", ["x"], ["early"]), ("Relu", ["early"], ["h"]), ("Relu", ["h"], ["y"])],
             [], outputs=("y", "early"))
    assert cut_at(g, 2).tensors == ("early", "h")
    last = plan_part(g, 2, 3, cut_at(g, 2), None)
    assert last.outputs == ("y", "early")
