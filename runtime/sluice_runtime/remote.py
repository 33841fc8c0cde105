"""A pipeline stage served by another runtime, called over the Open Inference Protocol."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import grpc
import numpy as np

from sluice_runtime.codec import decode_response, encode_request
from sluice_runtime.datatypes import BY_NAME
from sluice_runtime.errors import DeadlineUnmeetable, InferenceError, Status
from sluice_runtime.grpcstatus import data_plane_status
from sluice_runtime.latency import EWMA_WEIGHT
from sluice_runtime.protocol import GRPC_MESSAGE_OPTIONS
from sluice_runtime.protocol import inference_pb2 as pb
from sluice_runtime.protocol.inference_pb2_grpc import GRPCInferenceServiceStub
from sluice_runtime.servable import NO_BACKLOG, Backlog
from sluice_runtime.signature import InferenceRequest, ModelSignature, TensorSpec

log = logging.getLogger(__name__)

def signature_from_metadata(metadata: pb.ModelMetadataResponse) -> ModelSignature:
    """A model signature from an OIP ModelMetadata response."""

    def specs(tensors: list[pb.ModelMetadataResponse.TensorMetadata]) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(t.name, BY_NAME[t.datatype], tuple(t.shape)) for t in tensors)

    return ModelSignature(specs(metadata.inputs), specs(metadata.outputs))


# How often replicas that are not ready are asked again.
PROBE_INTERVAL_S = 0.5


class Replica:
    """One runtime serving a stage, and what the router knows of it."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.channel = grpc.aio.insecure_channel(target, options=GRPC_MESSAGE_OPTIONS)
        self.stub = GRPCInferenceServiceStub(self.channel)
        self.outstanding = 0
        self.ready = False
        self.removed = False  # draining: no new requests, closed once outstanding is 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def probe(self, model: str) -> tuple[pb.ModelMetadataResponse | None, str]:
        """The model's metadata if the replica serves it and is ready, and why not if not."""
        try:
            metadata = await self.stub.ModelMetadata(
                pb.ModelMetadataRequest(name=model), timeout=5)
            ready = await self.stub.ModelReady(pb.ModelReadyRequest(name=model), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return None, f"unreachable: {exc.details()}"
        return (metadata, "") if ready.ready else (None, "answers but is not ready")

    def status(self) -> dict[str, object]:
        """JSON-ready state, as ``GET /v1/stages`` shows it."""
        return {"address": self.target, "ready": self.ready, "outstanding": self.outstanding,
                "draining": self.removed}


class RemoteModel:
    """A stage served by one or more other runtimes (its replicas), called over the Open
    Inference Protocol with the remaining budget as both the gRPC deadline and the
    ``sluice-budget-ms`` parameter, so each replica's queue orders by the true deadline.

    Each request goes to the ready replica with the fewest outstanding requests. Replicas
    can be added and removed while serving (:meth:`set_replicas`): a new one takes requests
    once it answers ready with the stage's signature; a removed one takes no new requests
    and is closed once those it has are answered, so none is lost. A replica that answers
    UNAVAILABLE (draining, restarting) is skipped until it answers ready again, and the
    request is tried once on another replica, since UNAVAILABLE comes before any compute.
    """

    platform = "sluice_remote"

    def __init__(self, name: str, targets: Sequence[str], default_slo_ms: float) -> None:
        if not targets:
            raise ValueError(f"stage '{name}' needs at least one address")
        self.name = name
        self._default_slo_ms = default_slo_ms
        self._replicas: dict[str, Replica] = {t: Replica(t) for t in targets}
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.signature = ModelSignature((), ())
        # Seconds per answered call (queueing at the stage included) and per row, EWMA.
        self._seconds_per_row = 0.0

    @property
    def default_slo_ms(self) -> float:
        """Deadline given to requests that carry none."""
        return self._default_slo_ms

    async def connect(self, timeout_s: float) -> None:
        """Wait until every replica answers ready with the same signature, then adopt it;
        give up after ``timeout_s`` whether one is unreachable or never ready."""
        for replica in self._replicas.values():
            metadata = await self._wait_ready(replica, timeout_s)
            signature = signature_from_metadata(metadata)
            if self.signature.inputs or self.signature.outputs:
                self._check_same(replica, signature)
            self.signature = signature
            replica.ready = True
        self._watcher = asyncio.create_task(self._watch(), name=f"replicas-{self.name}")

    async def _wait_ready(self, replica: Replica, timeout_s: float) -> pb.ModelMetadataResponse:
        give_up = time.monotonic() + timeout_s
        delay = 0.1
        while True:
            metadata, problem = await replica.probe(self.name)
            if metadata is not None:
                return metadata
            log.info("waiting for stage %s at %s: %s", self.name, replica.target, problem)
            if time.monotonic() > give_up:
                raise InferenceError(
                    f"stage '{self.name}' at {replica.target} {problem} "
                    f"(gave up after {timeout_s:g} s)",
                    Status.UNAVAILABLE,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _check_same(self, replica: Replica, signature: ModelSignature) -> None:
        if signature != self.signature:
            raise InferenceError(
                f"stage '{self.name}' at {replica.target} serves a different signature than "
                f"its other replicas", Status.FAILED_PRECONDITION,
            )

    async def _watch(self) -> None:
        """Bring replicas that are not ready (new, or back from UNAVAILABLE) into service."""
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            for replica in list(self._replicas.values()):
                if replica.ready or replica.removed:
                    continue
                metadata, _ = await replica.probe(self.name)
                if metadata is None:
                    continue
                try:
                    self._check_same(replica, signature_from_metadata(metadata))
                except InferenceError as exc:
                    log.error("%s; not sending it requests", exc.message)
                    continue
                replica.ready = True
                log.info("stage %s: replica %s is ready", self.name, replica.target)

    def set_replicas(self, targets: Sequence[str]) -> None:
        """Serve the stage from ``targets`` from now on: new replicas join once ready,
        removed ones drain and close."""
        for target in targets:
            if target not in self._replicas:
                self._replicas[target] = Replica(target)  # the watcher brings it in
        for target, replica in list(self._replicas.items()):
            if target not in targets and not replica.removed:
                replica.removed = True
                task = asyncio.create_task(self._retire(replica))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _retire(self, replica: Replica) -> None:
        await replica.idle.wait()
        del self._replicas[replica.target]
        await replica.channel.close()
        log.info("stage %s: replica %s drained and removed", self.name, replica.target)

    def replicas(self) -> list[dict[str, object]]:
        """Every replica's state."""
        return [r.status() for r in self._replicas.values()]

    def _pick(self, avoid: Replica | None = None) -> Replica:
        candidates = [r for r in self._replicas.values()
                      if r.ready and not r.removed and r is not avoid]
        if not candidates:
            raise InferenceError(f"stage '{self.name}': no replica is ready",
                                 Status.UNAVAILABLE)
        return min(candidates, key=lambda r: r.outstanding)

    def predicted_latency_s(self, now: float, rows: int, upstream: Backlog = NO_BACKLOG
                            ) -> float:
        """Recent answered calls' latency scaled to ``rows``.

        It includes the stage's own queueing, so a stage that falls behind makes the
        router refuse at the start of the pipeline instead of after the work before it.
        With no call in flight it is 0: the estimate only learns from calls, so a stale
        high one must not stop every call for ever. ``upstream`` is not added: the
        replicas' queues cannot be seen from here, so what the router's own traffic adds
        is already in the measured latency, and the pipeline's concurrency limit covers
        the rest.
        """
        in_flight = any(r.outstanding for r in self._replicas.values())
        return self._seconds_per_row * rows if in_flight else 0.0

    def local_compute_s(self, rows: int) -> None:
        """None: a remote stage computes on its replicas."""
        return None

    async def infer(self, request: InferenceRequest) -> dict[str, np.ndarray]:
        """Run the request on a replica within the request's deadline."""
        started = time.monotonic()
        replica = self._pick()
        try:
            try:
                response = await self._call(replica, request)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                replica.ready = False  # draining or gone: the watcher asks again
                replica = self._pick(avoid=replica)
                response = await self._call(replica, request)
        except grpc.aio.AioRpcError as exc:
            raise InferenceError(
                f"stage '{self.name}' at {replica.target}: {exc.details()}",
                data_plane_status(exc.code())
            ) from None
        per_row_s = (time.monotonic() - started) / max(request.rows, 1)
        self._seconds_per_row += EWMA_WEIGHT * (per_row_s - self._seconds_per_row)
        return decode_response(response)

    async def _call(self, replica: Replica, request: InferenceRequest) -> pb.ModelInferResponse:
        remaining_s = request.deadline - time.monotonic()
        if remaining_s <= 0:
            raise DeadlineUnmeetable(f"stage '{self.name}': no budget left to call it")
        message = encode_request(
            self.name, request.inputs, request.requested_outputs,
            budget_ms=remaining_s * 1000, request_id=request.id,
        )
        replica.outstanding += 1
        replica.idle.clear()
        try:
            return await replica.stub.ModelInfer(message, timeout=remaining_s)
        finally:
            replica.outstanding -= 1
            if not replica.outstanding:
                replica.idle.set()

    async def close(self) -> None:
        """Stop watching and close every channel."""
        tasks = [*self._tasks, *([self._watcher] if self._watcher else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(r.channel.close() for r in self._replicas.values()))
