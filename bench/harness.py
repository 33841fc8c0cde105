"""Process plumbing shared by the benchmark and the demo.

Start a server on loopback (optionally pinned to CPUs with ``taskset``), wait until it
is ready, drive it with the load generator in a subprocess, scrape its metrics, stop it
with SIGTERM. The load generator always runs as its own process so it can be pinned to
other CPUs than the server, and so the caller never loads two protobuf stacks.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import onnxruntime as ort
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from sluice_runtime.datatypes import from_onnx_type
from sluice_runtime.protocol import inference_pb2 as pb
from sluice_runtime.protocol import inference_pb2_grpc as pb_grpc

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
SLUICE_RUNTIME = Path(sys.executable).with_name("sluice-runtime")
# A /metrics scrape: sample name -> [(labels, value)].
Samples = dict[str, list[tuple[dict[str, str], float]]]


class HarnessError(Exception):
    """A server did not start, did not become ready, or a load run failed."""


def run_main(main: Callable[[], int]) -> None:
    """Run a benchmark's ``main`` and exit with its status; a harness failure is one line."""
    try:
        sys.exit(main())
    except HarnessError as error:
        print(f"bench: {error}", file=sys.stderr)
        sys.exit(1)


def results_dir(out: Path, bench: str) -> Path:
    """A new folder under ``out`` for one run of ``bench``, named after it and the time."""
    folder = out / f"{bench}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def pss_mib(pid: int) -> float:
    """Proportional set size of a process in MiB: a file page mapped by several sessions
    (or processes) counts once in total, as the page cache holds it once."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise HarnessError(f"no Pss for pid {pid}")


def vm_rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process in MiB: now (VmRSS) or its peak (``field="VmHWM"``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise HarnessError(f"no {field} for pid {pid}")


def onnx_tensors(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An ONNX file's inputs and outputs as OIP metadata (name, datatype, shape; -1 free)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def describe(nodes: list[ort.NodeArg]) -> list[dict[str, Any]]:
        return [
            {
                "name": node.name,
                "datatype": from_onnx_type(node.type).name,
                "shape": [d if isinstance(d, int) and d >= 0 else -1 for d in node.shape],
            }
            for node in nodes
        ]

    return describe(session.get_inputs()), describe(session.get_outputs())


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """``argv`` run under ``taskset -c cpus`` when ``cpus`` is given."""
    return ["taskset", "-c", cpus, *argv] if cpus else list(argv)


@dataclass
class Server:
    """A server process under test, its endpoints, and its log."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int | None
    log_path: Path

    @property
    def target(self) -> str:
        """HOST:PORT of its gRPC endpoint."""
        return f"{HOST}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        """The end of its log, for error messages."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def metrics(self) -> Samples:
        """Scrape ``/metrics``: sample name -> [(labels, value)]."""
        if self.metrics_port is None:
            raise HarnessError(f"{self.name} has no metrics port")
        url = f"http://{HOST}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        samples: Samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((sample.labels, sample.value))
        return samples

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait for the exit, and return the exit status (kill if it hangs)."""
        if self.process.poll() is None:
            # taskset execs the server, so the pid is the server itself.
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise HarnessError(
                    f"{self.name} did not exit {timeout_s:g} s after SIGTERM; killed"
                ) from None
        return int(self.process.returncode)


def launch(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    metrics_port: int | None,
    log_dir: Path,
    ready: Callable[[grpc.Channel], bool],
    cpus: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 120.0,
) -> Server:
    """Start a server process (output in ``log_dir/<name>.log``) and wait until ``ready``.

    A server that exits or is not ready in ``timeout_s`` is stopped, and the error
    carries the end of its log.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            pinned(argv, cpus),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
    server = Server(name, process, port, metrics_port, log_path)
    try:
        wait_until(server, ready, timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def start_sluice(
    name: str,
    models: dict[str, Path],
    *,
    log_dir: Path,
    cpus: str | None = None,
    pipeline: Path | None = None,
    extra: Sequence[str] = (),
    timeout_s: float = 120.0,
    wrap: Callable[[list[str]], list[str]] | None = None,
) -> Server:
    """Start ``sluice-runtime serve`` on free loopback ports and wait for SERVING.

    ``wrap`` turns the command into the one to run (e.g. joining a cgroup first).
    """
    port, metrics_port = free_port(), free_port()
    argv = [
        str(SLUICE_RUNTIME), "serve", "--host", HOST, "--port", str(port),
        "--metrics-port", str(metrics_port),
    ]
    for model, path in models.items():
        argv += ["--model", f"{model}={path.resolve()}"]
    if pipeline is not None:
        argv += ["--pipeline", str(pipeline)]
    argv = [*argv, *extra]
    return launch(
        name, wrap(argv) if wrap else argv, port=port, metrics_port=metrics_port,
        log_dir=log_dir,
        ready=health_serving, cpus=cpus, timeout_s=timeout_s,
    )


def models_ready(models: Sequence[str]) -> Callable[[grpc.Channel], bool]:
    """A readiness check: every model ready (Open Inference Protocol ModelReady)."""

    def ready(channel: grpc.Channel) -> bool:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return all(
            stub.ModelReady(pb.ModelReadyRequest(name=m), timeout=5).ready for m in models
        )

    return ready


def wait_until(
    server: Server, check: Callable[[grpc.Channel], bool], timeout_s: float
) -> None:
    """Poll ``check(channel)`` until it is true; fail early if the process exits."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(server.target) as channel:
        while True:
            if server.process.poll() is not None:
                raise HarnessError(
                    f"{server.name} exited with status {server.process.returncode} "
                    f"before it was ready:\n{server.log_tail()}"
                )
            try:
                if check(channel):
                    return
            except grpc.RpcError:
                pass  # not listening or not ready yet
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{server.name} not ready after {timeout_s:g} s:\n{server.log_tail()}"
                )
            time.sleep(0.2)


def health_serving(channel: grpc.Channel) -> bool:
    """A readiness check: grpc.health.v1 reports the server SERVING."""
    stub = health_pb2_grpc.HealthStub(channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def run_load(
    target: str,
    model: str,
    args: Sequence[str],
    *,
    cpus: str | None = None,
    timeout_s: float = 600.0,
) -> dict[str, object]:
    """Run the load generator against ``model`` and return its JSON report.

    ``timeout_s`` bounds the whole run, so a server that stops answering fails the
    caller instead of hanging it.
    """
    argv = [
        sys.executable, "-m", "sluice_local.loadgen", "--target", target, "--model", model,
        *args, "--json", "-",
    ]
    try:
        result = subprocess.run(
            pinned(argv, cpus), capture_output=True, text=True, check=False, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        raise HarnessError(
            f"load generator for {model} at {target} still running after {timeout_s:g} s"
        ) from None
    if result.returncode != 0:
        raise HarnessError(
            f"load generator failed for {model} at {target} (status {result.returncode}):\n"
            f"{result.stderr.strip()}"
        )
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def histogram_mean(
    samples: Samples, name: str, *, since: Samples | None = None, **labels: str
) -> float:
    """Mean of a Prometheus histogram (``_sum / _count``) for the matching labels.

    With ``since`` (an earlier scrape), only the observations made in between count.
    """

    def total(scrape: Samples | None, suffix: str) -> float:
        return sum(
            value
            for sample_labels, value in (scrape or {}).get(name + suffix, [])
            if all(sample_labels.get(k) == v for k, v in labels.items())
        )

    count = total(samples, "_count") - total(since, "_count")
    return (total(samples, "_sum") - total(since, "_sum")) / count if count else float("nan")
