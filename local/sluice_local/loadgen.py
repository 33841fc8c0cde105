"""Open Inference Protocol load generator: open-loop (Poisson, trace) and closed-loop runs.

One event loop drives every request through a generic ``unary_unary`` call on
pre-serialised request bytes, so the per-request cost is one gRPC call and a few list
appends; that is what lets a single process push thousands of requests per second.
Open-loop runs send each request at its absolute scheduled time and measure latency from
that time, so a slow server cannot slow the clock down (no coordinated omission).

Usage::

    python -m sluice_local.loadgen --target 127.0.0.1:8001 --model mlp --rate 500
    python -m sluice_local.loadgen --target … --model cnn --clients 8 --duration-s 10
    python -m sluice_local.loadgen --target … --model mlp --trace twitter.txt --mean-rate 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import signal
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from sluice_core import arrivals
from sluice_core.invocation import BUDGET_PARAMETER
from sluice_runtime.datatypes import BY_NAME
from sluice_runtime.protocol import GRPC_MESSAGE_OPTIONS
from sluice_runtime.protocol import inference_pb2 as pb
from sluice_runtime.protocol import inference_pb2_grpc as pb_grpc

from sluice_local import records as records_mod

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
# The event loop sleeps in whole milliseconds (epoll), so a plain sleep sends up to a
# millisecond late; the last stretch before a send is spent yielding to the loop instead.
SPIN_S = 0.0015


class LoadgenError(Exception):
    """The run cannot start: bad arguments, unknown model, or a failing probe request."""


@dataclass(frozen=True)
class InputSpec:
    """One input tensor of a request; ``-1`` in ``shape`` stands for the batch size."""

    name: str
    datatype: str
    shape: tuple[int, ...]


def parse_input(text: str) -> InputSpec:
    """Parse ``NAME:DATATYPE:D1,D2,…`` (e.g. ``features:FP32:-1,384``)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise LoadgenError(f"--input must be NAME:DATATYPE:D1,D2,…, got {text!r}")
    name, datatype, dims = parts
    if datatype not in BY_NAME:
        raise LoadgenError(f"--input {text!r}: datatype must be one of {sorted(BY_NAME)}")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise LoadgenError(f"--input {text!r}: dimensions must be integers") from None
    return InputSpec(name, datatype, shape)


def concrete_shape(spec: InputSpec, batch: int) -> tuple[int, ...]:
    """The request shape: a leading ``-1`` becomes ``batch``; any other ``-1`` is an error."""
    shape = list(spec.shape)
    if shape and shape[0] == -1:
        shape[0] = batch
    if any(d < 0 for d in shape):
        raise LoadgenError(
            f"input {spec.name!r} has dynamic dimensions {spec.shape} besides the batch; "
            "give its shape with --input NAME:DATATYPE:DIMS"
        )
    return tuple(shape)


def build_request(
    model: str, inputs: Sequence[InputSpec], batch: int, rng: np.random.Generator
) -> pb.ModelInferRequest:
    """A request with random data for every input, carried in ``raw_input_contents``."""
    request = pb.ModelInferRequest(model_name=model)
    for spec in inputs:
        shape = concrete_shape(spec, batch)
        dtype = BY_NAME[spec.datatype].dtype
        if dtype.kind == "f":
            data = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            data = rng.integers(0, 2, shape).astype(dtype)
        else:
            data = rng.integers(0, 10, shape).astype(dtype)
        request.inputs.add(name=spec.name, datatype=spec.datatype, shape=shape)
        request.raw_input_contents.append(data.tobytes())
    return request


def budget_encoder() -> Callable[[float], bytes]:
    """Return a function that serialises a ``sluice-budget-ms`` request parameter.

    Concatenated protobuf messages merge, so appending these bytes to a serialised
    request adds the parameter without re-serialising the (large) tensors.
    """
    value = 1.0
    template = pb.ModelInferRequest(
        parameters={BUDGET_PARAMETER: pb.InferParameter(double_param=value)}
    ).SerializeToString()
    tail = struct.pack("<d", value)
    if not template.endswith(tail):
        raise AssertionError("unexpected protobuf encoding of a double parameter")
    prefix = template[: -len(tail)]
    return lambda ms: prefix + struct.pack("<d", ms)


async def sleep_until(due: float) -> None:
    """Return at monotonic time ``due``, to within tens of microseconds.

    Sleeps until ``SPIN_S`` before, then yields to the event loop until the time comes
    (still handling responses meanwhile): a deliberate spin, no event to wait on.
    """
    delay = due - time.monotonic()
    if delay > SPIN_S:
        await asyncio.sleep(delay - SPIN_S)
    while time.monotonic() < due:  # noqa: ASYNC110
        await asyncio.sleep(0)


class Driver:
    """Sends pre-serialised ModelInfer requests on one channel and records the results."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        payload: bytes,
        *,
        budget_ms: float | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self._call = channel.unary_unary(INFER_METHOD)
        self._payload = payload
        self._budget_ms = budget_ms
        self._encode_budget = budget_encoder()
        self._timeout_s = timeout_s
        self.records = records_mod.Records()
        self._stopped = False

    def stop(self) -> None:
        """Send nothing more; the requests in flight still finish and are recorded."""
        self._stopped = True

    async def send(self, start: float, due: float) -> None:
        """Send one request due at monotonic time ``due``; record it relative to ``start``."""
        sent = time.monotonic()
        payload = self._payload
        if self._budget_ms is not None:
            # The client's own lateness already ate part of the end-to-end budget.
            remaining_ms = self._budget_ms - (sent - due) * 1e3
            payload += self._encode_budget(max(remaining_ms, 0.0))
        try:
            await self._call(payload, timeout=self._timeout_s)
            code = records_mod.OK
        except grpc.aio.AioRpcError as error:
            code = error.code().name
        self.records.add(due - start, sent - start, time.monotonic() - due, code)

    async def open_loop(self, offsets: Sequence[float]) -> records_mod.Records:
        """Send one request at each offset (seconds from now), whatever the server does."""
        pending: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        for offset in offsets:
            due = start + offset
            await sleep_until(due)
            if self._stopped:
                break
            task = asyncio.create_task(self.send(start, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending)
        return self.records

    async def closed_loop(self, clients: int, duration_s: float) -> records_mod.Records:
        """Run ``clients`` loops that each send the next request when the last returns."""
        if clients < 1:
            raise LoadgenError(f"clients must be >= 1, got {clients}")
        start = time.monotonic()
        end = start + duration_s

        async def client() -> None:
            while (now := time.monotonic()) < end and not self._stopped:
                await self.send(start, now)

        await asyncio.gather(*(client() for _ in range(clients)))
        return self.records


async def model_inputs(channel: grpc.aio.Channel, model: str) -> list[InputSpec]:
    """The model's inputs as the server describes them (ModelMetadata)."""
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    try:
        metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=10)
    except grpc.aio.AioRpcError as error:
        raise LoadgenError(
            f"ModelMetadata({model!r}) failed: {error.code().name}: {error.details()}"
        ) from None
    if not metadata.inputs:
        raise LoadgenError(f"model {model!r} declares no inputs; give them with --input")
    return [InputSpec(t.name, t.datatype, tuple(t.shape)) for t in metadata.inputs]


async def probe(channel: grpc.aio.Channel, request: pb.ModelInferRequest) -> dict[str, list[int]]:
    """Send one request and return its output shapes; fail loudly if it does not succeed."""
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    try:
        response = await stub.ModelInfer(request, timeout=30)
    except grpc.aio.AioRpcError as error:
        raise LoadgenError(
            f"probe request to {request.model_name!r} failed: "
            f"{error.code().name}: {error.details()}"
        ) from None
    return {out.name: list(out.shape) for out in response.outputs}


async def wait_ready(channel: grpc.aio.Channel, target: str, timeout_s: float) -> None:
    """Wait until the channel connects, or raise a clear error."""
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout_s)
    except TimeoutError:
        raise LoadgenError(f"no gRPC server answered at {target} within {timeout_s:g} s") from None


def schedule(args: argparse.Namespace, rng: random.Random) -> list[float]:
    """The send offsets an open-loop run asks for (Poisson rate or trace window)."""
    if args.trace is None:
        return arrivals.poisson(args.rate, args.duration_s, rng)
    if not args.trace.exists():
        if args.mean_rate is None:
            raise LoadgenError(f"trace {args.trace} is missing; give --mean-rate for a fallback")
        print(
            f"trace {args.trace} not found: using a synthetic bursty MMPP at "
            f"{args.mean_rate:g} req/s instead",
            file=sys.stderr,
        )
        return arrivals.bursty(args.mean_rate, args.duration_s, rng)
    counts = arrivals.read_trace(args.trace)
    window = counts[args.trace_start_s : args.trace_start_s + math.ceil(args.duration_s)]
    if not window:
        raise LoadgenError(f"trace {args.trace} has no seconds from {args.trace_start_s}")
    factor = args.scale if args.mean_rate is None else arrivals.scale_to_rate(
        window, args.mean_rate
    )
    return arrivals.from_counts(arrivals.scale_counts(window, factor, rng), rng)


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Prepare the request, drive the load, and return the report."""
    rng = np.random.default_rng(args.seed)
    offsets = schedule(args, random.Random(args.seed)) if args.clients is None else None
    async with grpc.aio.insecure_channel(args.target, options=GRPC_MESSAGE_OPTIONS) as channel:
        await wait_ready(channel, args.target, args.wait_s)
        specs = args.input or await model_inputs(channel, args.model)
        request = build_request(args.model, specs, args.batch, rng)
        outputs = await probe(channel, request)
        driver = Driver(
            channel,
            request.SerializeToString(),
            budget_ms=args.budget_ms,
            timeout_s=args.timeout_s,
        )
        # SIGTERM ends the run early with what was measured (local mode on Ctrl-C).
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, driver.stop)
        if offsets is None:
            records = await driver.closed_loop(args.clients, args.duration_s)
            mode = f"closed loop, {args.clients} clients"
        else:
            records = await driver.open_loop(offsets)
            mode = f"open loop, {len(offsets)} requests scheduled"
    summary = records_mod.summarize(records, slo_ms=args.slo_ms, warmup_s=args.warmup_s)
    if args.records is not None:
        write_records(args.records, records)
    return {
        "model": args.model,
        "target": args.target,
        "mode": mode,
        "batch": args.batch,
        "outputs": outputs,
        **summary.as_dict(),
    }


def write_records(path: Path, records: records_mod.Records) -> None:
    """Write one CSV line per request: scheduled, sent and latency (ms), status code."""
    with path.open("w") as out:
        out.write("scheduled_ms,sent_ms,latency_ms,code\n")
        for row in zip(
            records.scheduled_s, records.sent_s, records.latency_s, records.codes, strict=True
        ):
            out.write(f"{row[0] * 1e3:.3f},{row[1] * 1e3:.3f},{row[2] * 1e3:.3f},{row[3]}\n")


def format_report(report: dict[str, object]) -> str:
    """A short human-readable report."""
    errors = report["errors"] or "none"
    return (
        f"{report['model']} @ {report['target']} ({report['mode']}, batch {report['batch']})\n"
        f"  requests {report['requests']}, ok {report['ok']}, window {report['window_s']:.1f} s\n"
        f"  throughput {report['throughput']:.1f}/s, goodput {report['goodput']:.1f}/s"
        f" (SLO {report['slo_ms']} ms)\n"
        f"  latency ms: p50 {report['p50_ms']:.2f}  p90 {report['p90_ms']:.2f}"
        f"  p99 {report['p99_ms']:.2f}  max {report['max_ms']:.2f}"
        f"  (client send lag p99 {report['send_lag_p99_ms']:.2f})\n"
        f"  errors: {errors}"
    )


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m sluice_local.loadgen", description=__doc__.splitlines()[0]
    )
    p.add_argument("--target", default="127.0.0.1:8001", help="HOST:PORT of the gRPC server")
    p.add_argument("--model", required=True, help="model name to call")
    p.add_argument(
        "--input", action="append", type=_input_argument, metavar="NAME:DATATYPE:DIMS",
        help="input tensor (repeatable); default: ask the server (ModelMetadata)",
    )
    p.add_argument("--batch", type=_positive_int, default=1, help="rows per request")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--rate", type=_positive_float, default=100.0,
                      help="open loop: Poisson arrivals per second (default)")
    mode.add_argument("--trace", type=Path, help="open loop: per-second request counts file")
    mode.add_argument("--clients", type=_positive_int,
                      help="closed loop: this many clients back to back (saturation)")
    p.add_argument("--scale", type=float, default=1.0, help="trace: multiply counts by this")
    p.add_argument("--mean-rate", type=_positive_float,
                   help="trace: scale to this mean rate (and the synthetic fallback's rate)")
    p.add_argument("--trace-start-s", type=int, default=0, help="trace: first second to replay")
    p.add_argument("--duration-s", type=_positive_float, default=10.0)
    p.add_argument("--warmup-s", type=float, default=0.0,
                   help="leave requests scheduled before this out of the summary")
    p.add_argument("--slo-ms", type=_positive_float, help="latency SLO for goodput")
    p.add_argument("--budget-ms", type=_positive_float,
                   help=f"send the {BUDGET_PARAMETER} parameter (minus the client's lateness)")
    p.add_argument("--timeout-s", type=_positive_float,
                   help="gRPC deadline per request (default none: the server's default SLO)")
    p.add_argument("--wait-s", type=_positive_float, default=10.0,
                   help="how long to wait for the server to accept a connection")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH|-", help="also write the report as JSON")
    p.add_argument("--records", type=Path, help="write per-request records (CSV)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; exit status 2 when the run cannot start."""
    args = parser().parse_args(argv)
    try:
        report = asyncio.run(run(args))
    except (LoadgenError, ValueError, OSError) as error:
        print(f"loadgen: {error}", file=sys.stderr)
        return 2
    if args.json == "-":
        print(json.dumps(report))
    else:
        print(format_report(report))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _input_argument(text: str) -> InputSpec:
    try:
        return parse_input(text)
    except LoadgenError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
