"""Deterministic names and labels of the objects a pipeline owns."""

from __future__ import annotations

import re

GROUP = "sluice.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferencePipeline"
PLURAL = "inferencepipelines"

FIELD_MANAGER = "sluice-operator"

LABEL_PIPELINE = "sluice.dev/pipeline"
LABEL_STAGE = "sluice.dev/stage"
LABEL_COMPONENT = "sluice.dev/component"
#: Set by Knative on every pod of a revision: groups pods by the service they serve.
LABEL_KNATIVE_SERVICE = "serving.knative.dev/service"
ANNOTATION_MANIFEST_SHA256 = "sluice.dev/manifest-sha256"

COMPONENT_STAGE = "stage"
COMPONENT_ROUTER = "router"
COMPONENT_FUSED = "fused"

#: Where the router and fused services read the pipeline manifest.
MANIFEST_DIR = "/etc/sluice"
MANIFEST_KEY = "pipeline.yaml"

DNS_LABEL_MAX = 63
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def stage_service_name(pipeline: str, stage: str) -> str:
    """Knative Service serving one stage (isolated composition)."""
    return f"{pipeline}-{stage}"


def router_service_name(pipeline: str) -> str:
    """Knative Service that drives requests through remote stages (isolated composition)."""
    return f"{pipeline}-{COMPONENT_ROUTER}"


def fused_service_name(pipeline: str) -> str:
    """Knative Service running every stage in one process (fused composition)."""
    return f"{pipeline}-{COMPONENT_FUSED}"


def manifest_configmap_name(pipeline: str) -> str:
    """ConfigMap holding the manifest the router or fused service reads."""
    return f"{pipeline}-manifest"


def dns_label_problem(name: str) -> str | None:
    """Why ``name`` cannot name a Knative Service, or None when it can."""
    if len(name) > DNS_LABEL_MAX:
        return (f"{name!r} is {len(name)} characters, over the "
                f"{DNS_LABEL_MAX}-character DNS label limit")
    if not _DNS_1035.match(name):
        return (f"{name!r} is not a DNS-1035 label "
                "(lowercase letters, digits, '-', starting with a letter)")
    return None


def pipeline_selector(pipeline: str) -> str:
    """Label selector matching every object owned by ``pipeline``."""
    return f"{LABEL_PIPELINE}={pipeline}"
