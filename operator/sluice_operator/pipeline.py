"""The operator's view of an InferencePipeline: the core's spec, and what only it checks.

The API server enforces the CRD's schema and CEL rules (and fills defaults); the core's
parser applies the same rules again (:mod:`sluice_core.spec`). On top the operator checks
what it alone knows: which model sources it can mount and the names it derives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluice_core.spec import Pipeline, SpecError, Stage
from sluice_core.spec import parse_pipeline as parse_spec

from sluice_operator import names
from sluice_operator.modelsource import (
    MalformedSource,
    ModelSource,
    UnsupportedSource,
    resolve_source,
)


class InvalidPipeline(ValueError):
    """The spec passed API validation but cannot be served; ``reason`` is a condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse_pipeline(body: Mapping[str, Any]) -> Pipeline:
    """The pipeline in ``body``; raises InvalidPipeline with what the user must fix."""
    try:
        pipeline = parse_spec(body)
    except SpecError as exc:
        raise InvalidPipeline(exc.reason, exc.message) from None
    for stage in pipeline.stages:
        stage_source(stage)
    _check_names(pipeline)
    return pipeline


def stage_source(stage: Stage) -> ModelSource:
    """Where the stage's container finds its model; InvalidPipeline when it cannot."""
    try:
        return resolve_source(stage.uri)
    except UnsupportedSource as exc:
        raise InvalidPipeline("UnsupportedModelURI", f"stage {stage.name!r}: {exc}") from None
    except MalformedSource as exc:
        raise InvalidPipeline("InvalidModelURI", f"stage {stage.name!r}: {exc}") from None


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
