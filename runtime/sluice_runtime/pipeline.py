"""Pipelines: stages chained under one deadline (the manifest is parsed by sluice_core.spec)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import numpy as np

from sluice_runtime.concurrency import ConcurrencyLimit
from sluice_runtime.errors import (
    DeadlineUnmeetable,
    InferenceError,
    InvalidInput,
    ModelFailure,
    Overloaded,
    refused_for_load,
)
from sluice_runtime.servable import NO_BACKLOG, Backlog, Servable, select_outputs
from sluice_runtime.signature import DYNAMIC, InferenceRequest, ModelSignature, validate_request


class PipelineError(ValueError):
    """A manifest or a stage wiring the runtime cannot serve."""


def shapes_compatible(produced: tuple[int, ...], accepted: tuple[int, ...]) -> bool:
    """Same rank, and every dimension fixed on both sides agrees."""
    return len(produced) == len(accepted) and all(
        a == b or DYNAMIC in (a, b) for a, b in zip(produced, accepted, strict=True)
    )


def wire(upstream: ModelSignature, downstream: ModelSignature, label: str) -> dict[str, str]:
    """Map each downstream input to the upstream output that feeds it.

    One output into one input connects whatever their names; otherwise inputs take the
    outputs of the same name. Datatypes must agree.
    """
    if len(upstream.outputs) == 1 and len(downstream.inputs) == 1:
        mapping = {downstream.inputs[0].name: upstream.outputs[0].name}
    else:
        mapping = {}
        for spec in downstream.inputs:
            if upstream.output(spec.name) is None:
                produced = ", ".join(t.name for t in upstream.outputs)
                raise PipelineError(
                    f"{label}: input '{spec.name}' has no output of that name upstream "
                    f"(upstream produces: {produced})"
                )
            mapping[spec.name] = spec.name
    for target, source in mapping.items():
        have, want = upstream.output(source), downstream.input(target)
        if have is None or want is None:
            continue
        if have.datatype != want.datatype:
            raise PipelineError(
                f"{label}: output '{source}' is {have.datatype.name}, "
                f"input '{target}' needs {want.datatype.name}"
            )
        if not shapes_compatible(have.shape, want.shape):
            raise PipelineError(
                f"{label}: output '{source}' has shape {list(have.shape)}, "
                f"input '{target}' needs {list(want.shape)}"
            )
    return mapping


def reserved_s(later: Servable, predicted_s: float, rows: int, shares_cores: bool) -> float:
    """What a request entering a stage must leave of its budget for stage ``later``.

    The later stage's whole predicted latency, queue included, unless both compute on
    this process's executors (``shares_cores``, and ``later`` is local too): then the work
    queued for the later stage runs on the same cores before this request's turn (the
    queues serve requests in their own order), so it delays this stage already, and only
    the later stage's own compute is left to reserve. Reserving the queue twice would
    refuse what finishes in time.
    """
    compute_s = later.local_compute_s(rows) if shares_cores else None
    return predicted_s if compute_s is None else compute_s


class PipelineModel:
    """Runs stages in order under the request's single deadline.

    Each stage is any servable: a local batched model (the fused composition: tensors
    stay in memory, each stage batches on its own queue) or a remote one (isolated).
    Each stage gets the request's deadline less what the stages after it are predicted
    to take, so a stage refuses at once what the rest of the pipeline could not finish in
    time, instead of spending its compute on an answer that would come too late. Those
    predictions count the requests already at earlier stages: they reach the later
    stages' queues first, and a burst admitted at the entrance against the later stages'
    queues as they were would be refused there after the first stage's work. And the
    pipeline learns how many requests it can hold in flight and still answer (a stage
    refusing one after earlier stages worked on it narrows the limit): past it, requests
    are refused at the entrance, before any stage spends anything on them.
    """

    platform = "sluice_pipeline"

    def __init__(self, name: str, stages: Sequence[Servable], default_slo_ms: float) -> None:
        if not stages:
            raise PipelineError(f"pipeline '{name}' has no stages")
        self.name = name
        self._stages = list(stages)
        self._default_slo_ms = default_slo_ms
        self._wiring = [
            wire(a.signature, b.signature, f"pipeline '{name}', stage '{a.name}' -> '{b.name}'")
            for a, b in itertools.pairwise(self._stages)
        ]
        self.signature = ModelSignature(
            self._stages[0].signature.inputs, self._stages[-1].signature.outputs
        )
        self.concurrency = ConcurrencyLimit()
        # What is at each stage now (queued or computing): a backlog for the later ones.
        self._at_stage = [NO_BACKLOG] * len(self._stages)

    @property
    def default_slo_ms(self) -> float:
        """The pipeline's end-to-end SLO, for requests that carry no deadline."""
        return self._default_slo_ms

    def predicted_latency_s(self, now: float, rows: int, upstream: Backlog = NO_BACKLOG
                            ) -> float:
        """The stages' predictions added up."""
        return sum(seconds for _, seconds in self._predicted_from(0, now, rows, upstream))

    def _predicted_from(self, index: int, now: float, rows: int,
                        upstream: Backlog = NO_BACKLOG) -> list[tuple[str, float]]:
        """Each stage's prediction from ``index`` on, behind what is at the stages between."""
        predicted = []
        for stage, here in zip(self._stages[index:], self._at_stage[index:], strict=True):
            predicted.append((stage.name, stage.predicted_latency_s(now, rows, upstream)))
            upstream = upstream.plus(*here)
        return predicted

    def local_compute_s(self, rows: int) -> None:
        """None: a pipeline's compute is its stages'."""
        return None

    def _stage_deadline(self, request: InferenceRequest, index: int) -> float:
        """The request's deadline less what the stages after ``index`` are predicted to need.

        Refuses at once when stage ``index`` and those after it cannot finish in time, so
        a request the pipeline cannot serve is refused before any stage works on it.
        """
        now = time.monotonic()
        predicted = self._predicted_from(index, now, request.rows)
        total_s = sum(seconds for _, seconds in predicted)
        if now + total_s > request.deadline:
            slowest, seconds = max(predicted, key=lambda pair: pair[1])
            raise DeadlineUnmeetable(
                f"pipeline '{self.name}': {max(request.deadline - now, 0) * 1000:.1f} ms left "
                f"before stage '{predicted[0][0]}', the stages from there are predicted to "
                f"take {total_s * 1000:.1f} ms ('{slowest}': {seconds * 1000:.1f} ms)"
            )
        shares_cores = self._stages[index].local_compute_s(request.rows) is not None
        return request.deadline - sum(
            reserved_s(later, seconds, request.rows, shares_cores)
            for later, (_, seconds) in zip(self._stages[index + 1:], predicted[1:], strict=True))

    async def infer(self, request: InferenceRequest) -> dict[str, np.ndarray]:
        """Run every stage, handing each one's outputs to the next."""
        limit = self.concurrency
        if limit.full:
            raise Overloaded(
                f"pipeline '{self.name}': {limit.in_flight} requests in flight, as many as it "
                "has recently been able to answer in time; retry later or scale out"
            )
        started = time.monotonic()
        reached = 0
        limit.in_flight += 1
        try:
            inputs = request.inputs
            outputs: dict[str, np.ndarray] = {}
            for reached, stage in enumerate(self._stages):
                deadline = self._stage_deadline(request, reached)
                stage_request = InferenceRequest(stage.name, inputs, (), deadline, request.id,
                                                 request.order)
                if reached:
                    try:
                        validate_request(stage.signature, stage_request)
                    except InvalidInput as exc:
                        raise ModelFailure(
                            f"pipeline '{self.name}': stage '{stage.name}' cannot take the "
                            f"previous stage's output: {exc.message}"
                        ) from None
                self._at_stage[reached] = self._at_stage[reached].plus(1, request.rows)
                try:
                    outputs = await stage.infer(stage_request)
                finally:
                    self._at_stage[reached] = self._at_stage[reached].plus(-1, -request.rows)
                if reached < len(self._wiring):
                    inputs = {dst: outputs[src] for dst, src in self._wiring[reached].items()}
        except InferenceError as exc:
            # Refused after earlier stages worked on it: the pipeline held too many.
            if reached and refused_for_load(exc):
                limit.refused(time.monotonic())
            raise
        finally:
            limit.in_flight -= 1
        limit.answered(time.monotonic() - started)
        return select_outputs(outputs, request.requested_outputs)
