"""Resolve a model source (path, ``file://``, ``http(s)://``) to a verified local file."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from sluice_core.sources import CLAIM, URL, MalformedSource, UnsupportedSource, parse_model_uri

_CHUNK = 1 << 20


class ModelSourceError(Exception):
    """A model file cannot be found, fetched, or verified."""


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, cache_dir: Path) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / hashlib.sha256(url.encode()).hexdigest()[:32]
    if target.exists():
        return target
    # Download beside the target and rename, so a crash never leaves a truncated model.
    fd, partial = tempfile.mkstemp(dir=cache_dir, suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
        os.replace(partial, target)
    except OSError as exc:
        Path(partial).unlink(missing_ok=True)
        raise ModelSourceError(f"cannot download {url}: {exc}") from exc
    return target


def resolve(uri: str, sha256: str | None, cache_dir: Path) -> Path:
    """A local path holding the model named by ``uri``, checked against ``sha256`` if given."""
    try:
        location = parse_model_uri(uri, bare_paths=True)
    except (UnsupportedSource, MalformedSource) as exc:
        raise ModelSourceError(f"model source {uri!r}: {exc}") from None
    if location.kind == CLAIM:
        raise ModelSourceError(
            f"model source {uri!r}: a pvc:// claim is mounted by the operator; give the "
            "runtime the mounted path"
        )
    path = _download(uri, cache_dir) if location.kind == URL else Path(location.location)
    if not path.is_file():
        raise ModelSourceError(f"model source {uri!r}: no file at {path}")
    if sha256 is not None and (actual := sha256_of(path)) != sha256.lower():
        raise ModelSourceError(f"model source {uri!r}: sha256 is {actual}, expected {sha256}")
    return path
