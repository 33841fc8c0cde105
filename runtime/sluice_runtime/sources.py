"""Resolve a model source (path, ``file://``, ``http(s)://``) to a verified local file."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

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
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("http", "https"):
        path = _download(uri, cache_dir)
    elif parsed.scheme == "file":
        path = Path(urllib.parse.unquote(parsed.netloc + parsed.path))
    elif parsed.scheme == "":
        path = Path(uri)
    else:
        raise ModelSourceError(
            f"model source {uri!r}: scheme {parsed.scheme!r} is not served by the runtime "
            "(use a path, file://, http:// or https://)"
        )
    if not path.is_file():
        raise ModelSourceError(f"model source {uri!r}: no file at {path}")
    if sha256 is not None and (actual := sha256_of(path)) != sha256.lower():
        raise ModelSourceError(f"model source {uri!r}: sha256 is {actual}, expected {sha256}")
    return path
