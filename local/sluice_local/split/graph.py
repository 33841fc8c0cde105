"""An ONNX graph as plain data: what the cut analysis and the balancing read, nothing more."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property


class SplitError(ValueError):
    """A model that cannot be split as asked; the message is one line saying why."""


@dataclass(frozen=True)
class Node:
    """One node in the graph's (topological) order.

    ``inputs`` includes the outer-scope names its subgraphs (If, Loop, Scan) read: a part
    that runs the node must have them too.
    """

    index: int
    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    int_attributes: Mapping[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How a report names the node: its name, or its op and position when unnamed."""
        return f"{self.name} ({self.op_type})" if self.name else f"#{self.index} {self.op_type}"


@dataclass(frozen=True)
class Value:
    """What running the model showed of one value (or an initializer's declared shape).

    ``shape`` is as seen with ``Graph.probe_rows`` rows; ``static`` says, per axis, whether
    it stayed the same when the rows and the inputs' other free dimensions changed.
    ``batch``: a tensor whose first axis is the request's rows, the only kind the runtime
    can carry from stage to stage (it batches and splits requests on that axis).
    """

    name: str
    dtype: str  # numpy's name for the element type; "" for a value that is not a tensor
    shape: tuple[int, ...]
    static: tuple[bool, ...]
    batch: bool
    nbytes: int

    @property
    def is_tensor(self) -> bool:
        """False for sequences, maps and optionals: nothing a stage can hand on."""
        return bool(self.dtype)


@dataclass(frozen=True)
class Graph:
    """The model as the split sees it: nodes in order, its inputs and outputs, the
    initializers (name -> bytes) and what the probes saw of every value."""

    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    initializers: Mapping[str, int]
    values: Mapping[str, Value]
    probe_rows: int

    @cached_property
    def producers(self) -> dict[str, int]:
        """Each node output's name -> the index of the node that makes it."""
        return {name: node.index for node in self.nodes for name in node.outputs if name}

    def bytes_per_row(self, name: str) -> int:
        """Bytes of one row of batch tensor ``name``."""
        return self.values[name].nbytes // self.probe_rows
