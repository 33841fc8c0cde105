"""Operator settings, read from ``SLUICE_*`` environment variables when the operator starts."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

PREFIX = "SLUICE_"
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")


class SettingsError(ValueError):
    """An environment variable holds a value the operator cannot use."""


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator is told by its environment; each field is ``SLUICE_<FIELD>``."""

    #: Runtime image for pipelines whose spec.runtime.image is unset.
    runtime_image: str = "sluice-runtime:dev"
    #: Pull policy for pipelines whose spec.runtime.imagePullPolicy is unset.
    runtime_image_pull_policy: str = "IfNotPresent"
    #: Comma-separated namespaces to watch; empty watches the whole cluster.
    namespaces: tuple[str, ...] = ()
    #: Python logging level name (DEBUG, INFO, WARNING, ERROR).
    log_level: str = "INFO"
    #: Address the liveness endpoint binds to.
    health_host: str = "0.0.0.0"
    #: TCP port of the liveness endpoint (GET /healthz); 0 disables it.
    health_port: int = 8080
    #: CPU of one router replica (isolated composition), a Kubernetes quantity.
    router_cpu: str = "500m"
    #: Memory of one router replica, a Kubernetes quantity.
    router_memory: str = "256Mi"

    @property
    def liveness_endpoint(self) -> str | None:
        """Kopf's ``--liveness`` URL, or None when the endpoint is disabled."""
        if self.health_port == 0:
            return None
        return f"http://{self.health_host}:{self.health_port}/healthz"

    @property
    def clusterwide(self) -> bool:
        """Whether the operator watches every namespace."""
        return not self.namespaces


def load_settings(environ: Mapping[str, str] | None = None) -> OperatorSettings:
    """Settings from ``environ`` (default: the process environment); unset keys keep defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field in fields(OperatorSettings):
        raw = env.get(PREFIX + field.name.upper())
        if raw is None or raw.strip() == "":
            continue
        values[field.name] = _parse(field.name, raw.strip())
    return OperatorSettings(**values)  # type: ignore[arg-type]


def _parse(name: str, raw: str) -> object:
    key = PREFIX + name.upper()
    if name == "namespaces":
        return tuple(sorted({ns.strip() for ns in raw.split(",") if ns.strip()}))
    if name == "health_port":
        try:
            port = int(raw)
        except ValueError:
            raise SettingsError(f"{key}={raw!r}: expected a TCP port number") from None
        if not 0 <= port <= 65535:
            raise SettingsError(f"{key}={raw!r}: port must be within 0..65535")
        return port
    if name == "log_level":
        level = raw.upper()
        if not isinstance(logging.getLevelName(level), int):
            raise SettingsError(f"{key}={raw!r}: expected DEBUG, INFO, WARNING or ERROR")
        return level
    if name == "runtime_image_pull_policy" and raw not in _PULL_POLICIES:
        raise SettingsError(f"{key}={raw!r}: expected one of {', '.join(_PULL_POLICIES)}")
    return raw
