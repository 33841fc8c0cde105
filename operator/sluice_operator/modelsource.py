"""Where a runtime container finds a stage's model, given the model URI of the spec."""

from __future__ import annotations

from dataclasses import dataclass

from sluice_core.sources import CLAIM, MalformedSource, UnsupportedSource, parse_model_uri

#: Claims are mounted under this directory, one sub-directory per claim.
PVC_MOUNT_ROOT = "/models/pvc"

__all__ = ["MalformedSource", "ModelSource", "UnsupportedSource", "claim_mount_path",
           "resolve_source"]


@dataclass(frozen=True)
class ModelSource:
    """What the runtime is given for one model (``--model NAME=<source>``)."""

    #: A local path inside the container, or an http(s) URL the runtime downloads.
    source: str
    #: PersistentVolumeClaim that must be mounted read-only for ``source`` to exist.
    claim: str | None = None

    @property
    def mount_path(self) -> str | None:
        """Where ``claim`` is mounted, or None when no claim is needed."""
        return claim_mount_path(self.claim) if self.claim else None


def claim_mount_path(claim: str) -> str:
    """Directory a claim is mounted at in every runtime container."""
    return f"{PVC_MOUNT_ROOT}/{claim}"


def resolve_source(uri: str) -> ModelSource:
    """The runtime source for ``uri``; raises UnsupportedSource or MalformedSource."""
    location = parse_model_uri(uri)
    if location.kind == CLAIM and location.claim is not None:
        return ModelSource(f"{claim_mount_path(location.claim)}/{location.location}",
                           location.claim)
    return ModelSource(location.location)
