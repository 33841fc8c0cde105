"""The processes local mode runs for a pipeline, as the operator's pods would be: one runtime
per stage replica serving that stage's model, and the router that runs the pipeline over
them (its ``--remote`` stages). Pure: ports and paths are given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sluice_core.invocation import RuntimeInvocation
from sluice_core.spec import Pipeline

#: How often a runtime re-reads its cgroup's quota: a resize is followed within this.
CPU_POLL_INTERVAL_S = 0.25
#: Every process listens on loopback only.
LOCAL_HOST = "127.0.0.1"


@dataclass(frozen=True)
class RunFiles:
    """Where a run keeps what its processes share."""

    directory: Path
    manifest: Path
    admin_token: Path

    def model_cache(self) -> Path:
        """The prepared-weights cache every replica shares (as a node's disk would)."""
        return self.directory / "model-cache"


@dataclass(frozen=True)
class Batching:
    """A stage's batching in rows (what the runtime takes)."""

    max_batch_size: int
    max_delay_ms: float


def replica_invocation(pipeline: Pipeline, stage: str, model_source: str, port: int,
                       metrics_port: int, batching: Batching, files: RunFiles
                       ) -> RuntimeInvocation:
    """A runtime serving ``stage``'s model alone, following its own cgroup's CPU."""
    return RuntimeInvocation(
        models=((stage, model_source),),
        host=LOCAL_HOST, port=port, metrics_port=metrics_port,
        max_batch_size=batching.max_batch_size, max_delay_ms=batching.max_delay_ms,
        default_slo_ms=float(pipeline.latency_ms),
        cpu_poll_interval_s=CPU_POLL_INTERVAL_S,
        model_cache_dir=str(files.model_cache()),
        admin_token_file=str(files.admin_token),
        log_level="WARNING",
    )


def router_invocation(pipeline: Pipeline, replicas: dict[str, tuple[str, ...]], port: int,
                      metrics_port: int, files: RunFiles) -> RuntimeInvocation:
    """The router: the pipeline's entrance, calling every stage on its replicas."""
    return RuntimeInvocation(
        pipeline_file=str(files.manifest),
        remotes=tuple((stage.name, replicas[stage.name]) for stage in pipeline.stages),
        host=LOCAL_HOST, port=port, metrics_port=metrics_port,
        default_slo_ms=float(pipeline.latency_ms),
        cpu_poll_interval_s=CPU_POLL_INTERVAL_S,
        admin_token_file=str(files.admin_token),
        log_level="WARNING",
    )
