"""Runtime processes in their own CPU cgroups: start, probe, resize, drain, reap.

Each process is ``python -m sluice_runtime`` with a :class:`RuntimeInvocation`, started
inside a fresh cgroup below the run's own (so one removal at the end takes them all), its
output in a log file. Resizing writes the cgroup's quota live, exactly what the kubelet
does for an in-place resize; the runtime re-reads it and follows. Stopping sends SIGTERM
(the runtime drains what it holds), then SIGKILL past a grace period.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sluice_core.invocation import RuntimeInvocation

from sluice_local.cgroupfs import (
    CpuHierarchy,
    in_cgroup,
    make_cpu_cgroup,
    remove_cgroup,
    set_cpu_limit,
)

#: A probe that takes longer than this counts as not ready (it is retried next tick).
PROBE_TIMEOUT_S = 0.5
#: How long a stopping process may drain before it is killed.
STOP_GRACE_S = 10.0


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RuntimeProcess:
    """One running ``sluice-runtime``: its process, cgroup, addresses and log."""

    name: str
    invocation: RuntimeInvocation
    popen: subprocess.Popen[bytes]
    cgroup: Path | None
    log_path: Path
    started_s: float
    #: Cores its cgroup is limited to now (None: unlimited).
    cores: float | None
    stop_sent_s: float | None = None
    _channel: grpc.Channel | None = field(default=None, repr=False)

    @property
    def target(self) -> str:
        """Its gRPC address."""
        return f"{self.invocation.host}:{self.invocation.port}"

    @property
    def admin_url(self) -> str:
        """Its metrics and admin HTTP address."""
        return f"http://{self.invocation.host}:{self.invocation.metrics_port}"

    @property
    def exited(self) -> bool:
        """The process has ended."""
        return self.popen.poll() is not None

    def serving(self) -> bool:
        """Its gRPC health check answers SERVING (models loaded and warm)."""
        if self.exited:
            return False
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.target)
        try:
            answer = health_pb2_grpc.HealthStub(self._channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=PROBE_TIMEOUT_S)
        except grpc.RpcError:
            return False
        return answer.status == health_pb2.HealthCheckResponse.SERVING

    def metrics_text(self) -> str | None:
        """Its Prometheus metrics, or None when it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.admin_url}/metrics",
                                        timeout=PROBE_TIMEOUT_S) as response:
                return response.read().decode()
        except (urllib.error.URLError, OSError):
            return None

    def admin(self, method: str, path: str, token: str, body: object = None) -> object:
        """Call its admin API; the JSON answer. OSError when it fails."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.admin_url}{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=2.0) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise OSError(f"{self.name}: {method} {path}: HTTP {exc.code}: "
                          f"{exc.read().decode(errors='replace')}") from None

    def stop(self, now_s: float) -> None:
        """Ask it to drain and exit (SIGTERM), once."""
        if self.stop_sent_s is None and not self.exited:
            self.popen.send_signal(signal.SIGTERM)
        if self.stop_sent_s is None:
            self.stop_sent_s = now_s
        if self._channel is not None:
            self._channel.close()
            self._channel = None


class ProcessGroup:
    """The run's processes and its parent cgroup; everything is removed by :meth:`close`."""

    def __init__(self, hierarchy: CpuHierarchy | None, run_name: str, log_dir: Path) -> None:
        self.hierarchy = hierarchy
        self._log_dir = log_dir
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self.processes: list[RuntimeProcess] = []
        self.parent: Path | None = None
        if hierarchy is not None:
            self.parent = make_cpu_cgroup(hierarchy.root, run_name, hierarchy.version)

    def start(self, name: str, invocation: RuntimeInvocation, cores: float | None,
              now_s: float) -> RuntimeProcess:
        """Start a runtime in a new cgroup limited to ``cores`` (unlimited: None)."""
        cgroup = None
        argv = [sys.executable, "-m", "sluice_runtime", *invocation.argv()]
        if self.hierarchy is not None and self.parent is not None:
            cgroup = make_cpu_cgroup(self.parent, name, self.hierarchy.version)
            set_cpu_limit(cgroup, self.hierarchy.version, cores)
            argv = in_cgroup(cgroup, argv)
        log_path = self._log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            # Its own session: Ctrl-C in the terminal reaches local mode, which stops the
            # processes in order (router first) rather than all at once.
            popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        process = RuntimeProcess(name, invocation, popen, cgroup, log_path, now_s,
                                 cores if cgroup is not None else None)
        self.processes.append(process)
        return process

    def resize(self, process: RuntimeProcess, cores: float) -> None:
        """Set ``process``'s quota to ``cores``, live."""
        if self.hierarchy is None or process.cgroup is None:
            raise RuntimeError("resizing needs CPU cgroups (this run has --no-quota)")
        set_cpu_limit(process.cgroup, self.hierarchy.version, cores)
        process.cores = cores

    def reap(self, now_s: float) -> list[RuntimeProcess]:
        """Forget stopped processes that have exited (killing those past their grace
        period) and remove their cgroups; the ones reaped."""
        reaped = []
        for process in list(self.processes):
            if process.stop_sent_s is None:
                continue
            if not process.exited and now_s - process.stop_sent_s > STOP_GRACE_S:
                process.popen.kill()
            if process.exited:
                process.popen.wait()
                self._remove_cgroup(process)
                self.processes.remove(process)
                reaped.append(process)
        return reaped

    def close(self, order: list[RuntimeProcess] | None = None) -> None:
        """Stop every process (``order`` first, each drained before the next), wait for
        them, kill what outlives the grace period, and remove every cgroup."""
        for process in order or []:
            process.stop(time.monotonic())
            _wait(process, STOP_GRACE_S)
        for process in self.processes:
            process.stop(time.monotonic())
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self.processes:
            _wait(process, max(0.0, deadline - time.monotonic()))
        for process in self.processes:
            self._remove_cgroup(process)
        self.processes.clear()
        if self.hierarchy is not None and self.parent is not None:
            remove_cgroup(self.hierarchy.root, self.parent)
            self.parent = None

    def _remove_cgroup(self, process: RuntimeProcess) -> None:
        if self.hierarchy is not None and process.cgroup is not None:
            remove_cgroup(self.hierarchy.root, process.cgroup)


def _wait(process: RuntimeProcess, timeout_s: float) -> None:
    try:
        process.popen.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.popen.kill()
        process.popen.wait()

