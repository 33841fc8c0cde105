"""The Open Inference Protocol gRPC service: thin glue over the servables.

Protocol messages are decoded here and nowhere else; every failure arrives as an
:class:`InferenceError` and leaves as its gRPC status, in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from sluice_runtime import __version__
from sluice_runtime.codec import (
    budget_from_parameters,
    decode_inputs,
    encode_response,
    request_deadline,
    requested_outputs,
)
from sluice_runtime.errors import (
    InferenceError,
    InvalidInput,
    ModelNotFound,
    ShuttingDown,
    Status,
)
from sluice_runtime.grpcstatus import grpc_code
from sluice_runtime.metrics import RuntimeMetrics
from sluice_runtime.protocol import inference_pb2 as pb
from sluice_runtime.protocol.inference_pb2_grpc import GRPCInferenceServiceServicer
from sluice_runtime.servable import Servable
from sluice_runtime.signature import InferenceRequest, TensorSpec, validate_request

log = logging.getLogger(__name__)

_UNKNOWN_MODEL_LABEL = "_unknown"
_VERSIONS = ("", "1")
_SERVICE = "inference.GRPCInferenceService"


@dataclass
class ServerState:
    """Lifecycle flags shared by the servicer and the server."""

    ready: bool = False
    draining: bool = False
    in_flight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def enter(self) -> None:
        """An inference request arrived."""
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        """An inference request was answered."""
        self.in_flight -= 1
        if not self.in_flight:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no inference request is in flight."""
        if self.in_flight:
            await self._idle.wait()


class InferenceServicer(GRPCInferenceServiceServicer):
    """GRPCInferenceService over a name -> servable table."""

    def __init__(
        self, servables: Mapping[str, Servable], state: ServerState, metrics: RuntimeMetrics
    ) -> None:
        self._servables = servables
        self._state = state
        self._metrics = metrics

    def _lookup(self, name: str, version: str) -> Servable:
        if not name:
            raise InvalidInput("model name is required")
        servable = self._servables.get(name)
        if servable is None:
            raise ModelNotFound(f"model '{name}' is not served here")
        if version not in _VERSIONS:
            raise ModelNotFound(f"model '{name}' has no version '{version}' (only '1')")
        return servable

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        """Live as long as the process answers."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        """Ready once every model is loaded and warm, until draining starts."""
        return pb.ServerReadyResponse(ready=self._state.ready and not self._state.draining)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        """Whether a served model can take requests."""
        try:
            self._lookup(request.name, request.version)
        except InferenceError as exc:
            await context.abort(grpc_code(exc.code), exc.message)
        return pb.ModelReadyResponse(ready=self._state.ready and not self._state.draining)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        """Server name and version."""
        return pb.ServerMetadataResponse(name="sluice", version=__version__, extensions=[])

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        """A model's inputs and outputs; ``-1`` marks a free dimension."""
        try:
            servable = self._lookup(request.name, request.version)
        except InferenceError as exc:
            await context.abort(grpc_code(exc.code), exc.message)

        def tensors(specs: tuple[TensorSpec, ...]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
            return [
                pb.ModelMetadataResponse.TensorMetadata(
                    name=t.name, datatype=t.datatype.name, shape=t.display_shape()
                )
                for t in specs
            ]

        return pb.ModelMetadataResponse(
            name=servable.name, versions=["1"], platform=servable.platform,
            inputs=tensors(servable.signature.inputs),
            outputs=tensors(servable.signature.outputs),
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        """Decode, validate, queue, answer; errors become their gRPC status."""
        arrival = time.monotonic()
        label = _UNKNOWN_MODEL_LABEL
        code = Status.CANCELLED  # unless we get to say otherwise
        self._state.enter()
        try:
            if self._state.draining:
                raise ShuttingDown("the server is shutting down; retry on another replica")
            if not self._state.ready:
                raise InferenceError("the server is still loading models", Status.UNAVAILABLE)
            servable = self._lookup(request.model_name, request.model_version)
            label = servable.name
            deadline = request_deadline(
                arrival, context.time_remaining(), budget_from_parameters(request.parameters),
                servable.default_slo_ms,
            )
            inference = InferenceRequest(
                servable.name, decode_inputs(request), requested_outputs(request), deadline,
                request.id,
            )
            validate_request(servable.signature, inference)
            outputs = await servable.infer(inference)
            response = encode_response(servable.name, request.id, outputs)
            code = Status.OK
            if time.monotonic() > deadline:
                self._metrics.late.labels(label).inc()
            return response
        except InferenceError as exc:
            code = exc.code
            await context.abort(grpc_code(code), exc.message)
        except Exception as exc:  # a bug: the caller still gets a status that says so
            log.exception("ModelInfer failed unexpectedly")
            code = Status.INTERNAL
            await context.abort(grpc_code(code), f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._state.leave()
            self._metrics.requests.labels(label, code.name).inc()
            self._metrics.request_duration.labels(label).observe(time.monotonic() - arrival)


@dataclass(frozen=True)
class _Undecodable:
    """Stands in for a request whose bytes are not the message the method takes."""

    message_type: str
    error: str


def _lenient(message_class: type[Message]) -> Callable[[bytes], Message | _Undecodable]:
    """A deserializer that hands undecodable bytes to the method instead of raising.

    grpc answers an exception in a deserializer with UNKNOWN; a malformed request
    deserves INVALID_ARGUMENT and a message, like every other malformed request.
    """

    def deserialize(data: bytes) -> Message | _Undecodable:
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            return _Undecodable(message_class.DESCRIPTOR.full_name, str(exc))

    return deserialize


def _refusing_undecodable(
    method: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]],
    metrics: RuntimeMetrics | None,
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    """Wrap a method so that undecodable bytes are refused (and counted, if ``metrics``)."""

    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            if metrics is not None:
                metrics.requests.labels(_UNKNOWN_MODEL_LABEL,
                                        grpc.StatusCode.INVALID_ARGUMENT.name).inc()
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid {request.message_type}: {request.error}",
            )
        return await method(request, context)

    return handle


def add_inference_service(
    servicer: InferenceServicer, server: grpc.aio.Server, metrics: RuntimeMetrics
) -> None:
    """Register every GRPCInferenceService method, refusing undecodable requests cleanly."""
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        # Only inference requests are counted in the request metrics.
        counted = metrics if method.name == "ModelInfer" else None
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _refusing_undecodable(getattr(servicer, method.name), counted),
            request_deserializer=_lenient(request_class),
            response_serializer=response_class.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
