"""What the gRPC servicer can serve: a local batched model, a remote stage, a pipeline."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from sluice_runtime.signature import InferenceRequest, ModelSignature


class Backlog(NamedTuple):
    """Requests on their way to a stage: admitted by the pipeline to the stages before it."""

    requests: int = 0
    rows: int = 0

    def plus(self, requests: int, rows: int) -> Backlog:
        """This backlog with more requests and rows in it."""
        return Backlog(self.requests + requests, self.rows + rows)


NO_BACKLOG = Backlog()


class Servable(Protocol):
    """A named model with a signature that answers inference requests."""

    name: str
    platform: str
    signature: ModelSignature

    @property
    def default_slo_ms(self) -> float:
        """Deadline given to requests that carry none."""
        ...

    def predicted_latency_s(self, now: float, rows: int, upstream: Backlog = NO_BACKLOG
                            ) -> float:
        """Seconds a request of ``rows`` arriving ``now`` is expected to take here, behind
        ``upstream`` (what the pipeline has admitted to earlier stages, arriving first).

        A pipeline reserves this much of a request's budget for each later stage, so an
        early stage never spends time that the stages after it need.
        """
        ...

    def local_compute_s(self, rows: int) -> float | None:
        """Pessimistic seconds a request of ``rows`` computes once started, when it
        computes on this process's executors (shared by its local models); None when it
        computes elsewhere."""
        ...

    async def infer(self, request: InferenceRequest) -> dict[str, np.ndarray]:
        """Answer one validated request, or raise :class:`InferenceError`."""
        ...


def select_outputs(
    outputs: dict[str, np.ndarray], requested: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """The outputs a request asked for (all of them when it named none)."""
    return {name: outputs[name] for name in requested} if requested else outputs
