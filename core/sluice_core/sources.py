"""What a model URI names: a file path, a URL to download, or a path inside a claim.

One reading of the URI for every plane: the operator maps it into the container
(``sluice_operator.modelsource``), the runtime opens or downloads it
(``sluice_runtime.sources``), local mode finds it on the machine.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from dataclasses import dataclass

PATH = "path"
URL = "url"
CLAIM = "claim"
SUPPORTED_SCHEMES = ("pvc", "http", "https", "file")

_CLAIM_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class UnsupportedSource(ValueError):
    """The URI names a scheme Sluice cannot serve."""


class MalformedSource(ValueError):
    """The URI has a supported scheme but does not name a model."""


@dataclass(frozen=True)
class ModelLocation:
    """Where a model is: ``kind`` is PATH (an absolute path, or relative for bare paths),
    URL (``location`` is the http(s) URL) or CLAIM (``location`` is the path inside
    ``claim``, a PersistentVolumeClaim)."""

    kind: str
    location: str
    claim: str | None = None


def parse_model_uri(uri: str, *, bare_paths: bool = False) -> ModelLocation:
    """What ``uri`` names; UnsupportedSource or MalformedSource saying what to write.

    ``bare_paths`` admits a path without a scheme (the runtime's ``--model NAME=PATH``);
    manifests always carry a scheme.
    """
    parsed = urllib.parse.urlsplit(uri)
    scheme = parsed.scheme.lower()
    if bare_paths and scheme == "":
        return ModelLocation(PATH, uri)
    if scheme not in SUPPORTED_SCHEMES:
        raise UnsupportedSource(
            f"model URI scheme {scheme!r} ({uri}) is not served; use pvc://CLAIM/PATH, "
            "http(s)://URL or file:///PATH"
        )
    if scheme in ("http", "https"):
        if not parsed.netloc:
            raise MalformedSource(f"model URI {uri} has no host")
        return ModelLocation(URL, uri)
    path = urllib.parse.unquote(parsed.path)
    if scheme == "file":
        if parsed.netloc or not path.startswith("/"):
            raise MalformedSource(f"model URI {uri} must be file:///ABSOLUTE/PATH")
        return ModelLocation(PATH, posixpath.normpath(path))
    claim = parsed.netloc
    inner = posixpath.normpath(path.lstrip("/")) if path.strip("/") else ""
    if not _CLAIM_NAME.match(claim) or not inner or inner.startswith(".."):
        raise MalformedSource(
            f"model URI {uri} must be pvc://CLAIM/PATH with a claim name and a path inside it"
        )
    return ModelLocation(CLAIM, inner, claim)
