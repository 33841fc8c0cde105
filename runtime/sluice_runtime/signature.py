"""What a servable model accepts and returns, independent of protocol and backend."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sluice_runtime.datatypes import Datatype, from_numpy
from sluice_runtime.errors import InvalidInput

DYNAMIC = -1


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor with a datatype and a shape where ``-1`` marks a free dimension."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]

    def check(self, array: np.ndarray) -> None:
        """Raise :class:`InvalidInput` naming this tensor if ``array`` does not fit it."""
        if array.dtype != self.datatype.dtype:
            try:
                found = from_numpy(array.dtype).name
            except ValueError:
                found = array.dtype.name
            raise InvalidInput(
                f"input '{self.name}': datatype {found} does not match the model's "
                f"{self.datatype.name}"
            )
        if len(array.shape) != len(self.shape):
            raise InvalidInput(
                f"input '{self.name}': shape {list(array.shape)} has rank {array.ndim}, "
                f"the model expects rank {len(self.shape)} {self.display_shape()}"
            )
        for got, want in zip(array.shape, self.shape, strict=True):
            if want != DYNAMIC and got != want:
                raise InvalidInput(
                    f"input '{self.name}': shape {list(array.shape)} does not match "
                    f"the model's {self.display_shape()}"
                )

    def display_shape(self) -> list[int]:
        """The shape as the protocol shows it, ``-1`` for free dimensions."""
        return list(self.shape)


@dataclass(frozen=True)
class ModelSignature:
    """Inputs and outputs of a model; ``batchable`` when every tensor has a free first axis."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batchable(self) -> bool:
        """True when requests can be concatenated on the first axis."""
        tensors = self.inputs + self.outputs
        return all(t.shape and t.shape[0] == DYNAMIC for t in tensors)

    def input(self, name: str) -> TensorSpec | None:
        """The input named ``name``, if any."""
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        """The output named ``name``, if any."""
        return next((t for t in self.outputs if t.name == name), None)


@dataclass
class InferenceRequest:
    """A decoded request: named input arrays, wanted outputs, and an absolute deadline.

    ``deadline`` is on the ``time.monotonic()`` clock so that it compares with batch
    timing measured the same way, whatever happens to the wall clock.
    """

    model: str
    inputs: dict[str, np.ndarray]
    requested_outputs: tuple[str, ...]  # empty: all outputs
    deadline: float
    id: str = ""
    # A pipeline stage's request: the deadline of the request it works for. Queues order
    # by it, so stages serve a pipeline's requests in their own order (None: ``deadline``).
    end_to_end_deadline: float | None = None

    @property
    def order(self) -> float:
        """What queues order by: the earliest end-to-end deadline first."""
        return self.deadline if self.end_to_end_deadline is None else self.end_to_end_deadline

    @property
    def rows(self) -> int:
        """Rows on the batch axis (1 for a model without one)."""
        first = next(iter(self.inputs.values()), None)
        return int(first.shape[0]) if first is not None and first.ndim else 1


def validate_request(signature: ModelSignature, request: InferenceRequest) -> None:
    """Check a request against a signature; raise :class:`InvalidInput` naming the tensor."""
    for name in request.inputs:
        if signature.input(name) is None:
            known = ", ".join(t.name for t in signature.inputs)
            raise InvalidInput(f"unknown input '{name}'; the model takes: {known}")
    for spec in signature.inputs:
        if spec.name not in request.inputs:
            raise InvalidInput(f"missing input '{spec.name}'")
        spec.check(request.inputs[spec.name])
    for name in request.requested_outputs:
        if signature.output(name) is None:
            known = ", ".join(t.name for t in signature.outputs)
            raise InvalidInput(f"unknown output '{name}'; the model returns: {known}")
    if len(set(request.requested_outputs)) != len(request.requested_outputs):
        raise InvalidInput("an output is requested more than once")
    if signature.batchable:
        rows = {a.shape[0] for a in request.inputs.values()}
        if len(rows) > 1:
            raise InvalidInput(f"inputs disagree on the batch dimension: {sorted(rows)}")
        if 0 in rows:
            raise InvalidInput("the batch dimension must be at least 1")
