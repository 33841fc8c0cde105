"""One probe of a container, as the kubelet runs it: gRPC health, HTTP GET, TCP connect or
a command in the pod's network namespace. True when it succeeded within its timeout."""

from __future__ import annotations

import socket
import subprocess
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.nodeagent.podspec import Probe


def run_probe(probe: Probe, pod_ip: str, netns: str) -> bool:
    """Whether ``probe`` of a container at ``pod_ip`` succeeds now."""
    if probe.kind == "grpc":
        with grpc.insecure_channel(f"{pod_ip}:{probe.port}") as channel:
            try:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=probe.service),
                    timeout=probe.timeout_s)
            except grpc.RpcError:
                return False
        return answer.status == health_pb2.HealthCheckResponse.SERVING
    if probe.kind == "httpGet":
        try:
            with urllib.request.urlopen(f"http://{pod_ip}:{probe.port}{probe.path}",
                                        timeout=probe.timeout_s) as response:
                return 200 <= response.status < 400
        except (urllib.error.URLError, OSError):
            return False
    if probe.kind == "tcpSocket":
        try:
            with socket.create_connection((pod_ip, probe.port or 0), timeout=probe.timeout_s):
                return True
        except OSError:
            return False
    try:
        done = subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "--", *probe.command],
                              capture_output=True, timeout=probe.timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0
