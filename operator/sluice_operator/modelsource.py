"""Where a runtime container finds a stage's model, given the model URI of the spec."""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from dataclasses import dataclass

#: Claims are mounted under this directory, one sub-directory per claim.
PVC_MOUNT_ROOT = "/models/pvc"
SUPPORTED_SCHEMES = ("pvc", "http", "https", "file")

_CLAIM = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class UnsupportedSource(ValueError):
    """The URI names a scheme the operator cannot serve."""


class MalformedSource(ValueError):
    """The URI has a supported scheme but cannot be turned into a source."""


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
    parsed = urllib.parse.urlsplit(uri)
    scheme = parsed.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise UnsupportedSource(
            f"model URI scheme {scheme!r} ({uri}) is not served; use pvc://CLAIM/PATH, "
            "http(s)://URL or file:///PATH"
        )
    if scheme in ("http", "https"):
        if not parsed.netloc:
            raise MalformedSource(f"model URI {uri} has no host")
        return ModelSource(source=uri)
    path = urllib.parse.unquote(parsed.path)
    if scheme == "file":
        if parsed.netloc or not path.startswith("/"):
            raise MalformedSource(f"model URI {uri} must be file:///ABSOLUTE/PATH inside the image")
        return ModelSource(source=posixpath.normpath(path))
    claim = parsed.netloc
    inner = posixpath.normpath(path.lstrip("/")) if path.strip("/") else ""
    if not _CLAIM.match(claim) or not inner or inner.startswith(".."):
        raise MalformedSource(
            f"model URI {uri} must be pvc://CLAIM/PATH with a claim name and a path inside it"
        )
    return ModelSource(source=f"{claim_mount_path(claim)}/{inner}", claim=claim)
