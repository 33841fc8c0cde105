"""The InferencePipeline whose stages chain the parts: names, URIs and the manifest (pure)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

API_VERSION = "sluice.dev/v1alpha1"
DEFAULT_URI_PREFIX = "file:///models/"
#: A pipeline's name, plus "-" and its longest stage name ("part16"), must fit the 63
#: characters of a Knative Service name (sluice_core.spec holds the same rule).
MAX_NAME = 56


def pipeline_name(stem: str) -> str:
    """A DNS-1035 label made from a file's stem ("" when nothing of it fits)."""
    name = re.sub(r"[^a-z0-9-]+", "-", stem.lower())
    name = re.sub(r"^[^a-z]+", "", name)[:MAX_NAME]
    return name.rstrip("-")


def stage_name(index: int) -> str:
    """Stage ``index`` (from 1)."""
    return f"part{index}"


def part_file_name(name: str, index: int) -> str:
    """The file part ``index`` of pipeline ``name`` is written to."""
    return f"{name}-{stage_name(index)}.onnx"


def model_uri(prefix: str, file_name: str) -> str:
    """Where the manifest says the part is: ``prefix`` (a directory URI) and the file."""
    return f"{prefix.rstrip('/')}/{file_name}"


def pipeline_manifest(name: str, models: Sequence[tuple[str, str | None]], slo_ms: int,
                      composition: str) -> dict[str, Any]:
    """An InferencePipeline running ``models`` (uri, sha256 if known) in order, one stage
    each; every other field takes the CRD's default."""
    return {
        "apiVersion": API_VERSION,
        "kind": "InferencePipeline",
        "metadata": {"name": name},
        "spec": {
            "slo": {"latencyMs": slo_ms, "percentile": 99},
            "composition": composition,
            "stages": [
                {"name": stage_name(k),
                 "model": {"uri": uri, **({"sha256": sha256} if sha256 else {})}}
                for k, (uri, sha256) in enumerate(models, start=1)
            ],
        },
    }
