"""A pod's volumes as folders on the host, which its containers see at their mount paths.

Written once when the pod starts (ConfigMap and Secret contents are not refreshed), in the
pod's own folder, removed with it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.nodeagent.podspec import PodContext, SpecError, field_value

#: Mints a ServiceAccount token for the pod: (audience or None, seconds) -> token.
TokenFor = Callable[[str | None, int], str]


def _write(folder: Path, files: Mapping[str, str], mode: int) -> None:
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)


def _keyed(values: Mapping[str, str], items: list[dict[str, Any]] | None, what: str,
           optional: bool) -> dict[str, str]:
    if not items:
        return dict(values)
    chosen = {}
    for item in items:
        if item["key"] not in values:
            if optional:
                continue
            raise SpecError(f"{what} has no key {item['key']}")
        chosen[item["path"]] = values[item["key"]]
    return chosen


def _source(kind: str, spec: Mapping[str, Any], name: str, context: PodContext
            ) -> dict[str, str]:
    values = context.references.get((kind, name))
    if values is None:
        if spec.get("optional"):
            return {}
        raise SpecError(f"{kind} {name} does not exist")
    return _keyed(values, spec.get("items"), f"{kind} {name}", bool(spec.get("optional")))


def _downward(pod: Mapping[str, Any], items: list[dict[str, Any]], context: PodContext
              ) -> dict[str, str]:
    files = {}
    for item in items:
        if "fieldRef" not in item:
            raise SpecError(f"downwardAPI item {item['path']}: only fieldRef is supported")
        files[item["path"]] = field_value(pod, item["fieldRef"]["fieldPath"], context)
    return files


def _projected(pod: Mapping[str, Any], spec: Mapping[str, Any], context: PodContext,
               token_for: TokenFor) -> dict[str, str]:
    files: dict[str, str] = {}
    for source in spec.get("sources") or []:
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            files[token["path"]] = token_for(token.get("audience"),
                                             int(token.get("expirationSeconds", 3607)))
        elif "configMap" in source:
            files.update(_source("ConfigMap", source["configMap"], source["configMap"]["name"],
                                 context))
        elif "secret" in source:
            files.update(_source("Secret", source["secret"], source["secret"]["name"], context))
        elif "downwardAPI" in source:
            files.update(_downward(pod, source["downwardAPI"].get("items") or [], context))
        else:
            raise SpecError(f"projected source {sorted(source)} is not supported")
    return files


def prepare(pod: Mapping[str, Any], folder: Path, context: PodContext,
            token_for: TokenFor) -> dict[str, Path]:
    """Every volume of ``pod`` made under ``folder``: volume name -> host folder."""
    made: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        target = folder / "volumes" / name
        if "hostPath" in volume:
            made[name] = Path(volume["hostPath"]["path"])
            continue
        target.mkdir(parents=True, exist_ok=True)
        made[name] = target
        if "emptyDir" in volume:
            continue
        if "configMap" in volume:
            spec = volume["configMap"]
            files = _source("ConfigMap", spec, spec["name"], context)
        elif "secret" in volume:
            spec = volume["secret"]
            files = _source("Secret", spec, spec["secretName"], context)
        elif "projected" in volume:
            spec = volume["projected"]
            files = _projected(pod, spec, context, token_for)
        elif "downwardAPI" in volume:
            spec = volume["downwardAPI"]
            files = _downward(pod, spec.get("items") or [], context)
        else:
            raise SpecError(f"volume {name}: type {sorted(set(volume) - {'name'})} is not "
                            "supported by this node")
        _write(target, files, int(spec.get("defaultMode", 0o644)))
    return made


def remove(folder: Path) -> None:
    """The pod's folder and its volumes."""
    shutil.rmtree(folder, ignore_errors=True)
