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
from sluice_runtime.latency import EWMA_WEIGHT
from sluice_runtime.protocol import inference_pb2 as pb
from sluice_runtime.protocol.inference_pb2_grpc import GRPCInferenceServiceStub
from sluice_runtime.signature import InferenceRequest, ModelSignature, TensorSpec

log = logging.getLogger(__name__)

# Batched tensors easily exceed gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
GRPC_MESSAGE_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Image-sized tensors (600 KB for 224x224 FP32) arrive in many small reads and window
    # updates by default; larger reads and a deeper window cut the receive cost by ~10%
    # (bench/overload.py), and under overload every request must be received to be refused.
    ("grpc.experimental.tcp_min_read_chunk_size", 1 << 20),
    ("grpc.experimental.tcp_max_read_chunk_size", 8 << 20),
    ("grpc.http2.lookahead_bytes", 4 << 20),
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
        # Seconds per answered call (queueing at the stage included) and per row, EWMA.
        self._seconds_per_row = 0.0
        self._in_flight = 0

    @property
    def default_slo_ms(self) -> float:
        """Deadline given to requests that carry none."""
        return self._default_slo_ms

    async def connect(self, timeout_s: float) -> None:
        """Wait until the remote model answers its metadata and is ready, then adopt its
        signature; give up after ``timeout_s`` whether it is unreachable or never ready.
        """
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
                problem = "answers but is not ready"
            except grpc.aio.AioRpcError as exc:
                problem = f"unreachable: {exc.details()}"
                log.info("waiting for stage %s at %s: %s", self.name, self.target, exc.code())
            if time.monotonic() > give_up:
                raise InferenceError(
                    f"stage '{self.name}' at {self.target} {problem} "
                    f"(gave up after {timeout_s:g} s)",
                    grpc.StatusCode.UNAVAILABLE,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def predicted_latency_s(self, now: float, rows: int) -> float:
        """Recent answered calls' latency scaled to ``rows``.

        It includes the stage's own queueing, so a stage that falls behind makes the
        router refuse at the start of the pipeline instead of after the work before it.
        With no call in flight it is 0: the estimate only learns from calls, so a stale
        high one must not stop every call for ever.
        """
        return self._seconds_per_row * rows if self._in_flight else 0.0

    async def infer(self, request: InferenceRequest) -> dict[str, np.ndarray]:
        """Run the request on the remote runtime within the request's deadline."""
        started = time.monotonic()
        remaining_s = request.deadline - started
        if remaining_s <= 0:
            raise DeadlineUnmeetable(f"stage '{self.name}': no budget left to call it")
        message = encode_request(
            self.name, request.inputs, request.requested_outputs,
            budget_ms=remaining_s * 1000, request_id=request.id,
        )
        self._in_flight += 1
        try:
            response = await self._stub.ModelInfer(message, timeout=remaining_s)
        except grpc.aio.AioRpcError as exc:
            raise InferenceError(
                f"stage '{self.name}' at {self.target}: {exc.details()}", exc.code()
            ) from None
        finally:
            self._in_flight -= 1
        per_row_s = (time.monotonic() - started) / max(request.rows, 1)
        self._seconds_per_row += EWMA_WEIGHT * (per_row_s - self._seconds_per_row)
        return decode_response(response)

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
