"""A pipeline stage served by another runtime, called over the Open Inference Protocol."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import numpy as np

from sluice_runtime.codec import decode_response, encode_request
from sluice_runtime.datatypes import BY_NAME
from sluice_runtime.errors import DeadlineUnmeetable, InferenceError
from sluice_runtime.protocol import inference_pb2 as pb
from sluice_runtime.protocol.inference_pb2_grpc import GRPCInferenceServiceStub
from sluice_runtime.signature import InferenceRequest, ModelSignature, TensorSpec

log = logging.getLogger(__name__)

# Batched tensors easily exceed gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
GRPC_MESSAGE_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


def signature_from_metadata(metadata: pb.ModelMetadataResponse) -> ModelSignature:
    """A model signature from an OIP ModelMetadata response."""

    def specs(tensors: list[pb.ModelMetadataResponse.TensorMetadata]) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(t.name, BY_NAME[t.datatype], tuple(t.shape)) for t in tensors)

    return ModelSignature(specs(metadata.inputs), specs(metadata.outputs))


class RemoteModel:
    """Forwards requests to ``target`` with the remaining budget as both the gRPC deadline
    and the ``sluice-budget-ms`` parameter, so the remote queue orders by the true deadline.
    """

    platform = "sluice_remote"

    def __init__(self, name: str, target: str, default_slo_ms: float) -> None:
        self.name = name
        self.target = target
        self._default_slo_ms = default_slo_ms
        self._channel = grpc.aio.insecure_channel(target, options=GRPC_MESSAGE_OPTIONS)
        self._stub = GRPCInferenceServiceStub(self._channel)
        self.signature = ModelSignature((), ())

    @property
    def default_slo_ms(self) -> float:
        """Deadline given to requests that carry none."""
        return self._default_slo_ms

    async def connect(self, timeout_s: float) -> None:
        """Wait until the remote model answers its metadata, then adopt its signature."""
        give_up = time.monotonic() + timeout_s
        delay = 0.1
        while True:
            try:
                metadata = await self._stub.ModelMetadata(
                    pb.ModelMetadataRequest(name=self.name), timeout=5
                )
                ready = await self._stub.ModelReady(
                    pb.ModelReadyRequest(name=self.name), timeout=5
                )
                if ready.ready:
                    self.signature = signature_from_metadata(metadata)
                    return
            except grpc.aio.AioRpcError as exc:
                if time.monotonic() > give_up:
                    raise InferenceError(
                        f"stage '{self.name}' at {self.target} unreachable: {exc.details()}",
                        grpc.StatusCode.UNAVAILABLE,
                    ) from exc
                log.info("waiting for stage %s at %s: %s", self.name, self.target, exc.code())
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def infer(self, request: InferenceRequest) -> dict[str, np.ndarray]:
        """Run the request on the remote runtime within the request's deadline."""
        remaining_s = request.deadline - time.monotonic()
        if remaining_s <= 0:
            raise DeadlineUnmeetable(f"stage '{self.name}': no budget left to call it")
        message = encode_request(
            self.name, request.inputs, request.requested_outputs,
            budget_ms=remaining_s * 1000, request_id=request.id,
        )
        try:
            response = await self._stub.ModelInfer(message, timeout=remaining_s)
        except grpc.aio.AioRpcError as exc:
            raise InferenceError(
                f"stage '{self.name}' at {self.target}: {exc.details()}", exc.code()
            ) from None
        return decode_response(response)

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
