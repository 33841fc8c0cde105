"""Knative Serving's own webhook, registered with the test control plane, so that every
Knative object written to it goes through Knative's real defaulting and validation.

The webhook is the binary built from ``knative.dev/serving`` (versions.py), run as a
process on this machine with the module's own namespace, config maps and webhook
registrations. The API server reaches it as Knative's manifests say, through the Service
``webhook`` in ``knative-serving``, whose endpoint is this machine's address on the process
nodes' bridge (endpoints may not be loopback addresses); the webhook makes its own serving
certificate and fills in the registrations' CA bundle, as in a cluster. Needs root (the
bridge).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.controlplane.process import free_port
from tests.nodeagent import network

NAMESPACE = "knative-serving"
WEBHOOK_REGISTRATIONS = (
    "mutatingwebhookconfiguration/webhook.serving.knative.dev",
    "validatingwebhookconfiguration/validation.webhook.serving.knative.dev",
    "validatingwebhookconfiguration/config.webhook.serving.knative.dev",
)


def webhook_environment(port: int) -> dict[str, str]:
    """What Knative's webhook Deployment gives its container, serving on ``port``."""
    return {"SYSTEM_NAMESPACE": NAMESPACE, "POD_NAME": "webhook-0",
            "CONFIG_LOGGING_NAME": "config-logging",
            "CONFIG_OBSERVABILITY_NAME": "config-observability",
            "WEBHOOK_NAME": "webhook", "WEBHOOK_PORT": str(port),
            # Its own profiling port, so that two control planes' webhooks do not collide.
            "PROFILING_PORT": str(free_port())}


def webhook_service(port: int) -> list[dict]:
    """The Service the registrations name, and its one endpoint: this machine's ``port``
    (each control plane's webhook has its own)."""
    ports = [{"name": "https-webhook", "port": port, "protocol": "TCP"}]
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "webhook", "namespace": NAMESPACE},
         "spec": {"ports": [{"name": "https-webhook", "port": 443,
                             "targetPort": port, "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "webhook-host", "namespace": NAMESPACE,
                      "labels": {"kubernetes.io/service-name": "webhook"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [str(network.GATEWAY)],
                        "conditions": {"ready": True}}],
         "ports": ports},
    ]


def start_webhook(kubectl: Callable[..., subprocess.CompletedProcess[str]],
                  launch: Callable[[str, list[str], dict[str, str]], None],
                  knative: Path, kubeconfig: Path) -> None:
    """Install what the webhook needs, start it, and register it (the caller waits)."""
    network.ensure_bridge()
    port = free_port()
    config = knative / "config" / "core"
    kubectl("apply", "--server-side", "-f", str(config / "100-namespace.yaml"))
    kubectl("apply", "--server-side", "-f", str(config / "configmaps"))
    kubectl("apply", "--server-side", "-f", "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List",
                              "items": webhook_service(port)}))
    launch("knative-webhook", [str(knative / "webhook"), f"--kubeconfig={kubeconfig}"],
           {**os.environ, **webhook_environment(port)})
    kubectl("apply", "--server-side", "-f", str(config / "webhooks"))


def registered(kubectl: Callable[..., subprocess.CompletedProcess[str]]) -> bool:
    """Every registration carries the webhook's CA bundle (it has taken them over)."""
    for name in WEBHOOK_REGISTRATIONS:
        found = json.loads(kubectl("get", name, "-o", "json").stdout)
        if not all(hook.get("clientConfig", {}).get("caBundle")
                   for hook in found.get("webhooks", [])):
            return False
    return True
