"""Start real runtime processes on loopback and talk to them like any OIP client would."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2, service_pb2_grpc

START_TIMEOUT_S = 120.0
_LISTENING = re.compile(r"gRPC on [^ ]+:(\d+), metrics on [^ ]+:(\d+)")


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Poll ``predicate`` until true; generous timeouts, never a timing assertion."""
    give_up = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


@dataclass
class Runtime:
    """A ``sluice-runtime serve`` process and clients for it."""

    args: list[str]
    log_dir: Path
    port: int = 0  # known once started: the runtime binds free ports and logs them
    metrics_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    # Turns the command into the one to run (e.g. joining a cgroup first).
    wrap: Callable[[list[str]], list[str]] | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    log_path: Path = field(init=False)

    def start(self) -> Runtime:
        command = [
            sys.executable, "-m", "sluice_runtime", "serve", "--host", "127.0.0.1",
            "--port", "0", "--metrics-port", "0", *self.args,
        ]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (the process writes it for its life)
            dir=self.log_dir, prefix="runtime-", suffix=".log", delete=False)
        self.log_path = Path(log.name)
        if self.wrap is not None:
            command = self.wrap(command)
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._bound, START_TIMEOUT_S, f"runtime to listen ({self.log_path})")
        wait_until(self._serving, START_TIMEOUT_S, f"runtime to serve ({self.log_path})")
        return self

    def _bound(self) -> bool:
        self._check_alive()
        found = _LISTENING.search(self.log_path.read_text(errors="replace"))
        if found:
            self.port, self.metrics_port = int(found[1]), int(found[2])
        return found is not None

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"runtime exited early:\n{self.log_path.read_text()}")

    def _serving(self) -> bool:
        self._check_alive()
        return self.health() == health_pb2.HealthCheckResponse.SERVING

    def health(self) -> int | None:
        with grpc.insecure_channel(self.url) as channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=2
                )
            except grpc.RpcError:
                return None
            return response.status

    def client(self) -> triton.InferenceServerClient:
        return triton.InferenceServerClient(self.url)

    def stub(self) -> service_pb2_grpc.GRPCInferenceServiceStub:
        """The raw generated stub of the tritonclient package, for hand-made requests."""
        channel = grpc.insecure_channel(self.url)
        return service_pb2_grpc.GRPCInferenceServiceStub(channel)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample on /metrics, keyed by (name, sorted labels)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def admin(self, method: str, path: str, body: object = None,
              token: str | None = None) -> tuple[int, object]:
        """Call the admin API (with a bearer token if given); status and JSON body.

        The response headers are kept in ``last_headers``.
        """
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.metrics_port}{path}", data=data, method=method,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                self.last_headers = dict(response.headers)
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            self.last_headers = dict(error.headers)
            return error.code, json.loads(error.read())

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def request_log(self, path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines() if line]


def infer(
    client: triton.InferenceServerClient,
    model: str,
    arrays: dict[str, np.ndarray],
    outputs: list[str] | None = None,
    **kwargs: object,
) -> triton.InferResult:
    """One inference through tritonclient with raw (binary) inputs."""
    inputs = []
    for name, array in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), triton_datatype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    requested = [triton.InferRequestedOutput(o) for o in outputs] if outputs else None
    return client.infer(model, inputs, outputs=requested, **kwargs)


def triton_datatype(dtype: np.dtype) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(np.dtype(dtype))


def budget(ms: float) -> dict[str, float]:
    """The request parameter that carries a remaining end-to-end budget."""
    return {"sluice-budget-ms": float(ms)}


def service_request(model: str, **fields: object) -> service_pb2.ModelInferRequest:
    return service_pb2.ModelInferRequest(model_name=model, **fields)

