"""The processes local mode runs for a pipeline, as the operator's pods would be. Isolated:
one runtime per stage replica serving that stage's model, and the router that runs the
pipeline over them (its ``--remote`` stages). Fused: replicas that each run the whole
pipeline in one process, and in front of them a balancer (a runtime serving the pipeline's
model ``--remote``, as Knative's activator would balance a fused service's pods). Pure:
ports and paths are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice_core.fused import stage_delay_ms
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
    return _local(pipeline, port, metrics_port, files,
                  models=((stage, model_source),),
                  max_batch_size=batching.max_batch_size, max_delay_ms=batching.max_delay_ms,
                  model_cache_dir=str(files.model_cache()))


def fused_replica_invocation(pipeline: Pipeline, manifest: Path,
                             model_sources: tuple[tuple[str, str], ...], port: int,
                             metrics_port: int, files: RunFiles) -> RuntimeInvocation:
    """A runtime running the fused pipeline of ``manifest`` whole, every stage's model (from
    ``model_sources``) in one process following its own cgroup's CPU."""
    return _local(pipeline, port, metrics_port, files, models=model_sources,
                  pipeline_file=str(manifest), model_cache_dir=str(files.model_cache()))


def fused_manifest(manifest: Mapping[str, Any], batching: Batching) -> dict[str, Any]:
    """``manifest`` with every stage batching as the fused unit's ``batching`` asks: the
    same batch, the unit's wait shared evenly among the stages."""
    stages = manifest["spec"]["stages"]
    delay_ms = stage_delay_ms(batching.max_delay_ms, len(stages))
    return {**manifest, "spec": {**manifest["spec"], "stages": [
        {**stage, "batching": {"maxBatchSize": batching.max_batch_size,
                               "maxDelayMs": delay_ms}}
        for stage in stages]}}


def router_invocation(pipeline: Pipeline, replicas: dict[str, tuple[str, ...]], port: int,
                      metrics_port: int, files: RunFiles, fused: bool = False
                      ) -> RuntimeInvocation:
    """The pipeline's entrance: the router calling every stage on its replicas or, for a
    fused pipeline's unit (named after the pipeline), the balancer over its replicas."""
    return _local(pipeline, port, metrics_port, files,
                  pipeline_file=None if fused else str(files.manifest),
                  remotes=tuple((stage.name, replicas[stage.name])
                                for stage in pipeline.stages))


def _local(pipeline: Pipeline, port: int, metrics_port: int, files: RunFiles,
           **fields: Any) -> RuntimeInvocation:
    """A runtime on loopback with the pipeline's SLO as default budget, following its CPU
    quickly, its admin API behind the run's token, and quiet."""
    return RuntimeInvocation(
        host=LOCAL_HOST, port=port, metrics_port=metrics_port,
        default_slo_ms=float(pipeline.latency_ms),
        cpu_poll_interval_s=CPU_POLL_INTERVAL_S,
        admin_token_file=str(files.admin_token),
        log_level="WARNING", **fields)
