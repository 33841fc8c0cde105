"""Typed runtime settings. Units are in the field names; validation names the bad field."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice_core.invocation import RuntimeInvocation

# The defaults live with the command line that sets them (sluice_core.invocation).
_DEFAULT = RuntimeInvocation()


@dataclass(frozen=True)
class BatchingConfig:
    """How one model forms batches; replaced whole on live reconfiguration."""

    max_batch_size: int = _DEFAULT.max_batch_size  # rows per batch
    max_delay_ms: float = _DEFAULT.max_delay_ms  # longest the oldest request waits to batch
    default_slo_ms: float = _DEFAULT.default_slo_ms  # deadline for requests that carry none

    def __post_init__(self) -> None:
        if isinstance(self.max_batch_size, bool) or not isinstance(self.max_batch_size, int):
            raise ValueError(f"max_batch_size must be an integer, got {self.max_batch_size!r}")
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        for name in ("max_delay_ms", "default_slo_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not 0 <= self.max_delay_ms <= 60_000:
            raise ValueError(f"max_delay_ms must be within [0, 60000], got {self.max_delay_ms}")
        if not 0 < self.default_slo_ms <= 3_600_000:
            raise ValueError(
                f"default_slo_ms must be within (0, 3600000], got {self.default_slo_ms}"
            )

    @property
    def max_delay_s(self) -> float:
        """``max_delay_ms`` in seconds."""
        return self.max_delay_ms / 1000.0

    def updated(self, changes: dict[str, Any]) -> BatchingConfig:
        """A copy with ``changes`` applied; unknown keys and bad values raise ValueError."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown batching settings: {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as the admin API shows it."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelSource:
    """Where a model's ONNX file comes from, and the digest it must have."""

    name: str
    uri: str
    sha256: str | None = None


@dataclass(frozen=True)
class RuntimeSettings:
    """Everything ``sluice-runtime serve`` was asked to do."""

    models: tuple[ModelSource, ...] = ()
    pipeline_file: Path | None = None
    remotes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # stage -> replicas
    host: str = _DEFAULT.host
    port: int = _DEFAULT.port
    metrics_port: int = _DEFAULT.metrics_port
    batching: BatchingConfig = BatchingConfig()
    max_queue_size: int = _DEFAULT.max_queue_size  # per model, before RESOURCE_EXHAUSTED
    executors: int | None = None  # None: follow the CPU allocation
    max_threads_per_batch: int | None = None  # None: as many as the cores
    cgroup_root: Path | None = None  # None: the process's own cgroup, from /proc/self
    cpu_poll_interval_s: float = _DEFAULT.cpu_poll_interval_s
    request_log: str | None = None  # path, or "-" for stdout
    model_cache_dir: Path = Path(_DEFAULT.model_cache_dir)
    drain_timeout_s: float = _DEFAULT.drain_timeout_s
    admin_token_file: Path | None = None  # bearer token of the admin API (/v1/…)
    remote_connect_timeout_s: float = _DEFAULT.remote_connect_timeout_s
