"""What the gRPC servicer can serve: a local batched model, a remote stage, a pipeline."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from sluice_runtime.signature import InferenceRequest, ModelSignature


class Servable(Protocol):
    """A named model with a signature that answers inference requests."""

    name: str
    platform: str
    signature: ModelSignature

    @property
    def default_slo_ms(self) -> float:
        """Deadline given to requests that carry none."""
        ...

    def predicted_latency_s(self, now: float, rows: int) -> float:
        """Seconds a request of ``rows`` arriving ``now`` is expected to take here.

        A pipeline reserves this much of a request's budget for each later stage, so an
        early stage never spends time that the stages after it need.
        """
        ...

    async def infer(self, request: InferenceRequest) -> dict[str, np.ndarray]:
        """Answer one validated request, or raise :class:`InferenceError`."""
        ...


def select_outputs(
    outputs: dict[str, np.ndarray], requested: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """The outputs a request asked for (all of them when it named none)."""
    return {name: outputs[name] for name in requested} if requested else outputs
