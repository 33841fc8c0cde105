"""Desired children of a pipeline: Knative Services and the manifest ConfigMap (pure).

Isolated composition: one Knative Service per stage (cluster-local) and a router service
that drives requests through them over gRPC. Fused: one service runs every stage in
process. Every child carries the pipeline's labels and a controller ownerReference, so the
garbage collector deletes it with the pipeline.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from typing import Any

import yaml
from sluice_core import quantities
from sluice_core.invocation import RuntimeInvocation
from sluice_core.spec import FUSED, Pipeline, Stage

from sluice_operator import names
from sluice_operator.modelsource import ModelSource, claim_mount_path
from sluice_operator.pipeline import stage_source
from sluice_operator.settings import OperatorSettings

KNATIVE_API_VERSION = "serving.knative.dev/v1"
GRPC_PORT = 8001
METRICS_PORT = 8002
#: How every runtime container is started: on the pod's address, the ports Knative and the
#: scraper reach; the services add what they serve.
_POD_INVOCATION = RuntimeInvocation(host="0.0.0.0", port=GRPC_PORT, metrics_port=METRICS_PORT)
CONTAINER_NAME = "runtime"
#: The writable scratch volume every runtime container has at /tmp.
SCRATCH = "scratch"
#: Knative's in-cluster entry point for a service speaks h2c on port 80.
KNATIVE_CLUSTER_PORT = 80

Manifest = dict[str, Any]


def desired_children(pipeline: Pipeline, settings: OperatorSettings) -> list[Manifest]:
    """Every object the pipeline should own, ConfigMap before the services that mount it."""
    if pipeline.effective_composition == FUSED:
        manifest = runtime_manifest(pipeline, with_batching=True)
        return [
            manifest_configmap(pipeline, manifest, names.COMPONENT_FUSED),
            fused_service(pipeline, manifest, settings),
        ]
    manifest = runtime_manifest(pipeline, with_batching=False)
    return [
        *(stage_service(pipeline, stage, settings) for stage in pipeline.stages),
        manifest_configmap(pipeline, manifest, names.COMPONENT_ROUTER),
        router_service(pipeline, manifest, settings),
    ]


def owner_reference(pipeline: Pipeline) -> Manifest:
    """Controller reference to the pipeline: garbage collection deletes children with it."""
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "name": pipeline.name,
        "uid": pipeline.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def cluster_address(pipeline: Pipeline, service: str) -> str:
    """HOST:PORT at which Knative serves ``service`` inside the cluster (h2c)."""
    return f"{service}.{pipeline.namespace}.svc.cluster.local:{KNATIVE_CLUSTER_PORT}"


def stage_service(pipeline: Pipeline, stage: Stage, settings: OperatorSettings) -> Manifest:
    """Knative Service serving one stage's model, visible only inside the cluster."""
    source = stage_source(stage)
    invocation = dataclasses.replace(
        _POD_INVOCATION,
        models=((stage.name, source.source),),
        model_sha256=((stage.name, stage.sha256),) if stage.sha256 else (),
        max_batch_size=stage.max_batch_size,
        max_delay_ms=stage.max_delay_ms,
        default_slo_ms=float(pipeline.latency_ms),
    )
    labels = _labels(pipeline, names.COMPONENT_STAGE, stage.name)
    return _knative_service(
        pipeline,
        name=names.stage_service_name(pipeline.name, stage.name),
        labels={**labels, "networking.knative.dev/visibility": "cluster-local"},
        template_labels=labels,
        annotations=_scale_annotations(stage.min_replicas, stage.max_replicas),
        container=_container(pipeline, settings, invocation, stage.cpu.initial,
                             stage.memory.initial, _claim_mounts([source])),
        volumes=_claim_volumes([source]),
    )


def router_service(pipeline: Pipeline, manifest: Manifest, settings: OperatorSettings) -> Manifest:
    """Knative Service that serves the whole pipeline by calling each stage's service."""
    remotes = tuple(
        (stage.name,
         (cluster_address(pipeline, names.stage_service_name(pipeline.name, stage.name)),))
        for stage in pipeline.stages
    )
    return _pipeline_service(pipeline, manifest, settings, names.COMPONENT_ROUTER,
                             names.router_service_name(pipeline.name), remotes,
                             settings.router_cpu, settings.router_memory, sources=[])


def fused_service(pipeline: Pipeline, manifest: Manifest, settings: OperatorSettings) -> Manifest:
    """Knative Service running every stage in one process; resources are the stages' sum."""
    stages = pipeline.stages
    cpu = quantities.format_cpu(quantities.total(s.cpu.initial for s in stages))
    memory = quantities.format_memory(quantities.total(s.memory.initial for s in stages))
    return _pipeline_service(pipeline, manifest, settings, names.COMPONENT_FUSED,
                             names.fused_service_name(pipeline.name), (), cpu, memory,
                             sources=[stage_source(s) for s in stages])


def _pipeline_service(
    pipeline: Pipeline,
    manifest: Manifest,
    settings: OperatorSettings,
    component: str,
    name: str,
    remotes: tuple[tuple[str, tuple[str, ...]], ...],
    cpu: str,
    memory: str,
    sources: list[ModelSource],
) -> Manifest:
    """A service that serves the whole pipeline from the manifest (router or fused)."""
    stages = pipeline.stages
    annotations = {
        **_scale_annotations(max(s.min_replicas for s in stages),
                             max(s.max_replicas for s in stages)),
        names.ANNOTATION_MANIFEST_SHA256: manifest_digest(manifest),
    }
    labels = _labels(pipeline, component)
    invocation = dataclasses.replace(
        _POD_INVOCATION, pipeline_file=f"{names.MANIFEST_DIR}/{names.MANIFEST_KEY}",
        remotes=remotes)
    return _knative_service(
        pipeline,
        name=name,
        labels=labels,
        template_labels=labels,
        annotations=annotations,
        container=_container(pipeline, settings, invocation, cpu, memory,
                             [_manifest_mount(), *_claim_mounts(sources)]),
        volumes=[_manifest_volume(pipeline), *_claim_volumes(sources)],
    )


def runtime_manifest(pipeline: Pipeline, *, with_batching: bool) -> Manifest:
    """The manifest the runtime reads with ``--pipeline``: model URIs resolved to what the
    container sees. The router's copy leaves batching out (the stage services batch), so
    a batching change rolls only the stage it concerns."""
    stages = []
    for stage in pipeline.stages:
        model: Manifest = {"uri": _runtime_uri(stage_source(stage))}
        if stage.sha256:
            model["sha256"] = stage.sha256
        entry: Manifest = {"name": stage.name, "model": model}
        if with_batching:
            entry["batching"] = {"maxBatchSize": stage.max_batch_size,
                                 "maxDelayMs": stage.max_delay_ms}
        stages.append(entry)
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": pipeline.name},
        "spec": {
            "slo": {"latencyMs": pipeline.latency_ms, "percentile": pipeline.percentile},
            "composition": pipeline.effective_composition,
            "stages": stages,
        },
    }


def manifest_text(manifest: Manifest) -> str:
    """Stable YAML text of a manifest (sorted keys, so equal manifests hash equally)."""
    return yaml.safe_dump(manifest, sort_keys=True)


def manifest_digest(manifest: Manifest) -> str:
    """SHA-256 of the manifest text: a template annotation, so a new manifest rolls pods."""
    return hashlib.sha256(manifest_text(manifest).encode()).hexdigest()


def manifest_configmap(pipeline: Pipeline, manifest: Manifest, component: str) -> Manifest:
    """ConfigMap with the runtime manifest, mounted by the router or fused service."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": names.manifest_configmap_name(pipeline.name),
            "namespace": pipeline.namespace,
            "labels": _labels(pipeline, component),
            "ownerReferences": [owner_reference(pipeline)],
        },
        "data": {names.MANIFEST_KEY: manifest_text(manifest)},
    }


def _knative_service(
    pipeline: Pipeline,
    *,
    name: str,
    labels: dict[str, str],
    template_labels: dict[str, str],
    annotations: dict[str, str],
    container: Manifest,
    volumes: list[Manifest],
) -> Manifest:
    template_spec: Manifest = {"containers": [container],
                               "volumes": [*volumes, {"name": SCRATCH, "emptyDir": {}}]}
    return {
        "apiVersion": KNATIVE_API_VERSION,
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": pipeline.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(pipeline)],
        },
        "spec": {
            "template": {
                # Template labels reach the pods, which is how the scaler finds them.
                "metadata": {"labels": template_labels, "annotations": annotations},
                "spec": template_spec,
            }
        },
    }


def _container(
    pipeline: Pipeline,
    settings: OperatorSettings,
    invocation: RuntimeInvocation,
    cpu: str,
    memory: str,
    mounts: list[Manifest],
) -> Manifest:
    # requests == limits: the runtime sizes its executors from cgroup cpu.max, which only a
    # limit sets, and the scaler moves both together so a resize never changes QoS class.
    allocation = {"cpu": cpu, "memory": memory}
    container: Manifest = {
        "name": CONTAINER_NAME,
        "image": pipeline.image or settings.runtime_image,
        "imagePullPolicy": pipeline.image_pull_policy or settings.runtime_image_pull_policy,
        "command": ["sluice-runtime"],
        "args": invocation.argv(),
        # protocol (like the probe's service below) is what Knative's schema defaults it to;
        # said here so that the stored object equals the rendered one.
        "ports": [{"name": "h2c", "containerPort": GRPC_PORT, "protocol": "TCP"}],
        "resources": {"requests": dict(allocation), "limits": dict(allocation)},
        # grpc.health.v1 for service "": SERVING only once every model is loaded and warmed up.
        "readinessProbe": {"grpc": {"port": GRPC_PORT, "service": ""}},
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    # The runtime writes only under /tmp (prepared weights, downloaded models): a scratch
    # emptyDir there. Without it a read-only root leaves each model one intra-op thread.
    container["volumeMounts"] = [*mounts, {"name": SCRATCH, "mountPath": "/tmp"}]
    return container


def _labels(pipeline: Pipeline, component: str, stage: str | None = None) -> dict[str, str]:
    labels = {names.LABEL_PIPELINE: pipeline.name, names.LABEL_COMPONENT: component}
    if stage is not None:
        labels[names.LABEL_STAGE] = stage
    return labels


def _scale_annotations(min_replicas: int, max_replicas: int) -> dict[str, str]:
    return {
        "autoscaling.knative.dev/min-scale": str(min_replicas),
        "autoscaling.knative.dev/max-scale": str(max_replicas),
    }


def _runtime_uri(source: ModelSource) -> str:
    return source.source if "://" in source.source else f"file://{source.source}"


def _claims(sources: Iterable[ModelSource]) -> list[str]:
    return sorted({s.claim for s in sources if s.claim})


def _claim_volume_name(index: int) -> str:
    # Claim names can be 253 characters; volume names must be DNS labels, so number them.
    return f"model-pvc-{index}"


def _claim_volumes(sources: Iterable[ModelSource]) -> list[Manifest]:
    return [
        {"name": _claim_volume_name(i),
         "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        for i, claim in enumerate(_claims(sources))
    ]


def _claim_mounts(sources: Iterable[ModelSource]) -> list[Manifest]:
    return [
        {"name": _claim_volume_name(i), "mountPath": claim_mount_path(claim), "readOnly": True}
        for i, claim in enumerate(_claims(sources))
    ]


def _manifest_volume(pipeline: Pipeline) -> Manifest:
    return {"name": "manifest",
            "configMap": {"name": names.manifest_configmap_name(pipeline.name)}}


def _manifest_mount() -> Manifest:
    return {"name": "manifest", "mountPath": names.MANIFEST_DIR, "readOnly": True}
