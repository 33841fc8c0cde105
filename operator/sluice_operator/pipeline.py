"""A typed, validated view of an InferencePipeline object.

The API server already enforces the CRD's schema and CEL rules (and fills defaults); this
module checks what only the operator knows: which model sources it can serve, the names it
derives, and the runtime's own constraints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice_operator import names
from sluice_operator.modelsource import (
    MalformedSource,
    ModelSource,
    UnsupportedSource,
    resolve_source,
)

ISOLATED = "isolated"
FUSED = "fused"
AUTO = "auto"


class InvalidPipeline(ValueError):
    """The spec passed API validation but cannot be served; ``reason`` is a condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Bounds:
    """A resource's initial value and the range the scaler may move it in (quantities)."""

    initial: str
    min: str
    max: str


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline."""

    name: str
    uri: str
    sha256: str | None
    source: ModelSource
    max_batch_size: int
    max_delay_ms: float
    cpu: Bounds
    memory: Bounds
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True)
class Pipeline:
    """The parts of an InferencePipeline the operator acts on."""

    name: str
    namespace: str
    uid: str
    generation: int
    latency_ms: int
    percentile: float
    composition: str
    scaling_mode: str
    image: str | None
    image_pull_policy: str | None
    stages: tuple[Stage, ...]

    @property
    def effective_composition(self) -> str:
        """The composition actually rendered: ``auto`` is served as isolated until the planner."""
        return FUSED if self.composition == FUSED else ISOLATED


def parse_pipeline(body: Mapping[str, Any]) -> Pipeline:
    """The pipeline in ``body``; raises InvalidPipeline with what the user must fix."""
    meta = body.get("metadata", {})
    spec = body.get("spec") or {}
    try:
        stages = tuple(_parse_stage(s) for s in spec["stages"])
        pipeline = Pipeline(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=int(meta.get("generation", 0)),
            latency_ms=int(spec["slo"]["latencyMs"]),
            percentile=float(spec["slo"]["percentile"]),
            composition=spec["composition"],
            scaling_mode=spec["scaling"]["mode"],
            image=(spec.get("runtime") or {}).get("image"),
            image_pull_policy=(spec.get("runtime") or {}).get("imagePullPolicy"),
            stages=stages,
        )
    except KeyError as exc:
        # Only reachable when the CRD in the cluster is older than this operator.
        raise InvalidPipeline("InvalidSpec", f"spec field {exc.args[0]!r} is missing") from exc
    _check_names(pipeline)
    return pipeline


def _parse_stage(raw: Mapping[str, Any]) -> Stage:
    name = raw["name"]
    model = raw["model"]
    try:
        source = resolve_source(model["uri"])
    except UnsupportedSource as exc:
        raise InvalidPipeline("UnsupportedModelURI", f"stage {name!r}: {exc}") from exc
    except MalformedSource as exc:
        raise InvalidPipeline("InvalidModelURI", f"stage {name!r}: {exc}") from exc
    resources = raw["resources"]
    return Stage(
        name=name,
        uri=model["uri"],
        sha256=model.get("sha256"),
        source=source,
        max_batch_size=int(raw["batching"]["maxBatchSize"]),
        max_delay_ms=float(raw["batching"]["maxDelayMs"]),
        cpu=_bounds(resources["cpu"]),
        memory=_bounds(resources["memory"]),
        min_replicas=int(raw["replicas"]["min"]),
        max_replicas=int(raw["replicas"]["max"]),
    )


def _bounds(raw: Mapping[str, Any]) -> Bounds:
    return Bounds(initial=str(raw["initial"]), min=str(raw["min"]), max=str(raw["max"]))


def _check_names(pipeline: Pipeline) -> None:
    service_names = [names.router_service_name(pipeline.name),
                     names.fused_service_name(pipeline.name)]
    service_names += [names.stage_service_name(pipeline.name, s.name) for s in pipeline.stages]
    for service in service_names:
        if problem := names.dns_label_problem(service):
            raise InvalidPipeline(
                "InvalidName",
                f"Knative Service name {problem}: shorten metadata.name or the stage name",
            )
    for stage in pipeline.stages:
        if stage.name == pipeline.name:
            # The runtime serves every stage as a model named after it and the whole
            # pipeline as a model named after the pipeline: the two would collide.
            raise InvalidPipeline(
                "ModelNameClash",
                f"stage {stage.name!r} has the pipeline's own name, which the runtime uses "
                "for the whole-pipeline model: rename the stage",
            )
