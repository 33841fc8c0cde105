"""Test helpers around the CRD file: its schema, and pipelines defaulted the way the API
server defaults them (so unit tests see the same objects the operator gets)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "crds" / "inferencepipelines.yaml"
CHART_CRD_PATH = REPO / "charts" / "sluice" / "crds" / "inferencepipelines.yaml"
EXAMPLE_PATH = REPO / "examples" / "pipelines" / "dialogue.yaml"


def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


def schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE_PATH.read_text())


def with_defaults(obj: Any, node: dict[str, Any] | None = None) -> Any:
    """``obj`` with the schema's defaults filled in, top-down like the API server."""
    node = schema() if node is None else node
    if isinstance(obj, dict):
        for key, prop in (node.get("properties") or {}).items():
            if key not in obj and "default" in prop:
                obj[key] = copy.deepcopy(prop["default"])
            if key in obj:
                obj[key] = with_defaults(obj[key], prop)
    elif isinstance(obj, list) and "items" in node:
        return [with_defaults(item, node["items"]) for item in obj]
    return obj


def served(manifest: dict[str, Any], *, namespace: str = "ml", uid: str = "uid-1",
           generation: int = 1) -> dict[str, Any]:
    """A pipeline as the operator receives it: defaulted, with namespace, uid, generation."""
    body = with_defaults(copy.deepcopy(manifest))
    body["metadata"].update(namespace=namespace, uid=uid, generation=generation)
    return body


def setter(*path: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to a manifest: set the field at ``path`` to ``value``."""
    def change(manifest: dict[str, Any]) -> None:
        node: Any = manifest
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = copy.deepcopy(value)
    return change
