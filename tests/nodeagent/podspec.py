"""What a pod asks of the node, read from its spec. Pure: referenced ConfigMaps and
Secrets, the pod's address and the node's name are given."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sluice_core import quantities

from tests.nodeagent.images import UnknownImage, container_argv, resolve


class SpecError(ValueError):
    """The pod asks for something this node cannot give (the container cannot start)."""


@dataclass(frozen=True)
class Probe:
    """A probe as Kubernetes defines it, with its defaults."""

    kind: str  # grpc | httpGet | tcpSocket | exec
    port: int | None
    path: str
    service: str
    command: tuple[str, ...]
    initial_delay_s: float
    period_s: float
    timeout_s: float
    success_threshold: int
    failure_threshold: int


@dataclass(frozen=True)
class Mount:
    """A volume's folder on the host, where the container sees it."""

    volume: str
    mount_path: str
    read_only: bool


@dataclass(frozen=True)
class ContainerPlan:
    """One container as the node runs it."""

    name: str
    image: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    working_dir: str | None
    cpu_request_cores: float
    cpu_limit_cores: float | None
    memory_limit_bytes: int | None
    readiness: Probe | None
    liveness: Probe | None
    startup: Probe | None
    mounts: tuple[Mount, ...] = ()
    #: Why the container cannot start (its image, a reference), or None.
    error: str | None = None
    error_reason: str = ""


@dataclass(frozen=True)
class PodContext:
    """What the node knows of the pod beyond its spec, for the downward API."""

    pod_ip: str
    host_ip: str
    node: str
    #: ConfigMaps and Secrets the pod references, by (kind, name): key -> text.
    references: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """``$(NAME)`` replaced by the container's variable NAME where defined; ``$$`` is ``$``."""
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR.sub(one, text)


def cpu_cores(resources: Mapping[str, Any], kind: str) -> float | None:
    """``requests`` or ``limits`` CPU in cores (None: not set)."""
    value = (resources.get(kind) or {}).get("cpu")
    return None if value is None else float(quantities.parse(value))


def memory_bytes(resources: Mapping[str, Any], kind: str) -> int | None:
    """``requests`` or ``limits`` memory in bytes (None: not set)."""
    value = (resources.get(kind) or {}).get("memory")
    return None if value is None else int(quantities.parse(value))


def field_value(pod: Mapping[str, Any], path: str, context: PodContext) -> str:
    meta = pod["metadata"]
    fields = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": context.node,
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": context.pod_ip,
        "status.hostIP": context.host_ip,
    }
    if path in fields:
        return str(fields[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise SpecError(f"fieldRef {path} is not supported by this node")


def _resource_field(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    kind, _, name = ref["resource"].partition(".")
    value = (container.get("resources") or {}).get(kind, {}).get(name)
    if value is None:
        raise SpecError(f"resourceFieldRef {ref['resource']} is not set")
    divisor = quantities.parse(ref.get("divisor", "1"))
    return str(int(-(-quantities.parse(value) // divisor)))  # rounded up, as the kubelet


def _reference(kind: str, ref: Mapping[str, Any], context: PodContext) -> str:
    values = context.references.get((kind, ref["name"]))
    if values is None or ref["key"] not in values:
        if ref.get("optional"):
            return ""
        raise SpecError(f"{kind} {ref['name']} has no key {ref['key']}")
    return values[ref["key"]]


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any],
                  context: PodContext) -> dict[str, str]:
    """The container's environment, in order, later ones expanding earlier ones."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in source:
                values = context.references.get((kind, source[key]["name"]), {})
                env.update({source.get("prefix", "") + k: v for k, v in values.items()})
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
            continue
        source = var.get("valueFrom") or {}
        if "fieldRef" in source:
            env[var["name"]] = field_value(pod, source["fieldRef"]["fieldPath"], context)
        elif "resourceFieldRef" in source:
            env[var["name"]] = _resource_field(container, source["resourceFieldRef"])
        elif "configMapKeyRef" in source:
            env[var["name"]] = _reference("ConfigMap", source["configMapKeyRef"], context)
        elif "secretKeyRef" in source:
            env[var["name"]] = _reference("Secret", source["secretKeyRef"], context)
        else:
            env[var["name"]] = ""
    return env


def _probe(raw: Mapping[str, Any] | None, ports: Mapping[str, int]) -> Probe | None:
    if not raw:
        return None
    for kind in ("grpc", "httpGet", "tcpSocket", "exec"):
        if kind in raw:
            action = raw[kind]
            break
    else:
        raise SpecError(f"probe without a known action: {sorted(raw)}")
    port = action.get("port")
    if isinstance(port, str):
        if port not in ports:
            raise SpecError(f"probe names port {port!r}, which the container does not")
        port = ports[port]
    return Probe(kind, port, action.get("path", "/"), action.get("service", ""),
                 tuple(action.get("command", ())),
                 float(raw.get("initialDelaySeconds", 0)), float(raw.get("periodSeconds", 10)),
                 float(raw.get("timeoutSeconds", 1)), int(raw.get("successThreshold", 1)),
                 int(raw.get("failureThreshold", 3)))


def container_plan(pod: Mapping[str, Any], container: Mapping[str, Any],
                   context: PodContext) -> ContainerPlan:
    """How the node runs ``container`` of ``pod``; a plan with ``error`` set when it cannot."""
    resources = container.get("resources") or {}
    ports = {p["name"]: p["containerPort"] for p in container.get("ports") or [] if "name" in p}
    base = dict(name=container["name"], image=container.get("image", ""),
                cpu_request_cores=cpu_cores(resources, "requests")
                or cpu_cores(resources, "limits") or 0.0,
                cpu_limit_cores=cpu_cores(resources, "limits"),
                memory_limit_bytes=memory_bytes(resources, "limits"),
                working_dir=container.get("workingDir"))
    try:
        image = resolve(container.get("image", ""))
    except UnknownImage as exc:
        return ContainerPlan(**base, argv=(), env={}, readiness=None, liveness=None,
                             startup=None, error=str(exc), error_reason="ErrImagePull")
    try:
        env = container_env(pod, container, context)
        argv = container_argv(image, [expand(a, env) for a in container.get("command") or []],
                              None if container.get("args") is None
                              else [expand(a, env) for a in container["args"]])
        probes = [_probe(container.get(key), ports)
                  for key in ("readinessProbe", "livenessProbe", "startupProbe")]
    except SpecError as exc:
        return ContainerPlan(**base, argv=(), env={}, readiness=None, liveness=None,
                             startup=None, error=str(exc),
                             error_reason="CreateContainerConfigError")
    mounts = tuple(Mount(m["name"], m["mountPath"], bool(m.get("readOnly")))
                   for m in container.get("volumeMounts") or [])
    return ContainerPlan(**base, argv=tuple(argv), env=env, readiness=probes[0],
                         liveness=probes[1], startup=probes[2], mounts=mounts)


def referenced_objects(pod: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Every (ConfigMap|Secret, name) the pod's env and volumes read."""
    found: set[tuple[str, str]] = set()
    for container in pod["spec"]["containers"]:
        for source in container.get("envFrom") or []:
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if key in source:
                    found.add((kind, source[key]["name"]))
        for var in container.get("env") or []:
            source = var.get("valueFrom") or {}
            if "configMapKeyRef" in source:
                found.add(("ConfigMap", source["configMapKeyRef"]["name"]))
            if "secretKeyRef" in source:
                found.add(("Secret", source["secretKeyRef"]["name"]))
    for volume in pod["spec"].get("volumes") or []:
        if "configMap" in volume:
            found.add(("ConfigMap", volume["configMap"]["name"]))
        if "secret" in volume:
            found.add(("Secret", volume["secret"]["secretName"]))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "configMap" in source:
                found.add(("ConfigMap", source["configMap"]["name"]))
            if "secret" in source:
                found.add(("Secret", source["secret"]["name"]))
    return found


def object_values(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """A ConfigMap's or Secret's keys as text."""
    if kind == "Secret":
        return {k: base64.b64decode(v).decode(errors="replace")
                for k, v in (obj.get("data") or {}).items()}
    return dict(obj.get("data") or {})
