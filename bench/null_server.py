"""The transport floor: an Open Inference Protocol server that computes nothing.

Same stack as the Sluice runtime (grpc.aio, the project's stubs), one process: it parses
each ModelInfer request and answers with an empty response. Whatever latency and
throughput it shows is what Python gRPC and the kernel cost on this machine, before any
server does real work.

Usage: python bench/null_server.py --port P --model NAME=PATH.onnx …
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import grpc
from harness import HOST, onnx_tensors
from sluice_runtime.protocol import GRPC_MESSAGE_OPTIONS
from sluice_runtime.protocol import inference_pb2 as pb
from sluice_runtime.protocol import inference_pb2_grpc as pb_grpc


class NullServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Answers metadata from the ONNX files and every inference with nothing."""

    def __init__(self, models: dict[str, Path]) -> None:
        self._metadata = {}
        for name, path in models.items():
            inputs, outputs = (
                [pb.ModelMetadataResponse.TensorMetadata(**t) for t in tensors]
                for tensors in onnx_tensors(path)
            )
            self._metadata[name] = pb.ModelMetadataResponse(
                name=name, platform="null", inputs=inputs, outputs=outputs
            )

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        """Every known model is ready."""
        return pb.ModelReadyResponse(ready=request.name in self._metadata)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        """The inputs and outputs of the ONNX file."""
        if request.name not in self._metadata:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.name!r}")
        return self._metadata[request.name]

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        """An empty answer."""
        return pb.ModelInferResponse(model_name=request.model_name, id=request.id)


async def serve(port: int, models: dict[str, Path]) -> None:
    """Serve until SIGTERM, then exit 0 like the servers it stands beside."""
    server = grpc.aio.server(options=GRPC_MESSAGE_OPTIONS)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(NullServicer(models), server)
    if server.add_insecure_port(f"{HOST}:{port}") == 0:
        raise OSError(f"cannot listen on {HOST}:{port}")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await server.start()
    await stop.wait()
    await server.stop(grace=1.0)


def main() -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args()
    models = {}
    for item in args.model:
        name, _, path = item.partition("=")
        models[name] = Path(path)
    asyncio.run(serve(args.port, models))


if __name__ == "__main__":
    main()
