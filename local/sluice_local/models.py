"""Where a manifest's model is on this machine: one rule for every local command.

Manifests name models as the pods see them. ``file:///models/...`` is a path inside the
runtime image (the example models are baked into ``/models``); locally, ``--model-root
DIR`` stands for that directory, so ``file:///models/intent.onnx`` with ``--model-root
examples/models`` is ``examples/models/intent.onnx``. Other ``file://`` paths are taken as
they are. ``http(s)://`` models are handed to the runtime, which downloads and verifies
them as a pod does. ``pvc://`` names a Kubernetes volume claim, which has no local meaning.
The URI itself is read as every plane reads it (:func:`sluice_core.sources.parse_model_uri`).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from sluice_core.sources import (
    CLAIM,
    URL,
    MalformedSource,
    UnsupportedSource,
    parse_model_uri,
)

#: Where the runtime image keeps models: the directory ``--model-root`` re-roots.
IMAGE_MODEL_DIR = PurePosixPath("/models")


class ModelLocationError(ValueError):
    """A model URI that names no usable model on this machine (one line: what to do)."""


def local_model_path(uri: str, model_root: Path | None = None) -> Path:
    """The local file a ``file://`` model URI names, ``/models/...`` re-rooted under
    ``model_root`` when given; ModelLocationError when it is not a local file."""
    try:
        location = parse_model_uri(uri)
    except (UnsupportedSource, MalformedSource) as exc:
        raise ModelLocationError(str(exc)) from None
    if location.kind == URL:
        raise ModelLocationError(f"model {uri} is remote: it has no local path (the runtime "
                                 "downloads it; see local_model_source)")
    if location.kind == CLAIM:
        raise ModelLocationError(f"model {uri} is on a Kubernetes volume claim, which local "
                                 "commands cannot read: copy the model here and name it "
                                 "file:///models/NAME.onnx with --model-root DIR")
    in_image = PurePosixPath(location.location)
    path = Path(in_image)
    if model_root is not None and in_image.is_relative_to(IMAGE_MODEL_DIR):
        path = model_root / in_image.relative_to(IMAGE_MODEL_DIR)
    if not path.is_file():
        hint = ""
        if model_root is None and in_image.is_relative_to(IMAGE_MODEL_DIR):
            hint = (f": {IMAGE_MODEL_DIR} is where the runtime image keeps models; give "
                    "--model-root DIR for the directory that holds them here")
        raise ModelLocationError(f"model {uri}: no file at {path}{hint}")
    return path


def local_model_source(uri: str, model_root: Path | None = None) -> str:
    """What a runtime on this machine loads for ``uri``: the local path of a ``file://``
    model (see :func:`local_model_path`), an ``http(s)://`` URL unchanged."""
    try:
        if parse_model_uri(uri).kind == URL:
            return uri
    except (UnsupportedSource, MalformedSource) as exc:
        raise ModelLocationError(str(exc)) from None
    return str(local_model_path(uri, model_root).resolve())
