"""A stage's ``variants`` list in a manifest, rewritten with the variants made for it: pure.

A variant's model lives next to the stage's own model: its URI is the stage's with the
file name replaced (``file:///models/magika.onnx`` -> ``file:///models/magika-int8.onnx``),
so the files are deployed where the model already is, and its SHA-256 is pinned, so the
runtime and ``sluice profile`` refuse a different file under that name. Its ``accuracy``
is the stage's own accuracy scaled by the variant's agreement with the stage's model
(:mod:`sluice_local.variants.agreement`): relative, as the planner reads it.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sluice_core.spec import Pipeline, SpecError, parse_pipeline

#: The CRD's maxItems for a stage's variants.
MAX_VARIANTS = 8
#: Accuracy figures are kept to this many decimals: the samples support no more.
ACCURACY_DECIMALS = 4


class ManifestError(ValueError):
    """The manifest cannot take the variants (one line for the user)."""


@dataclass(frozen=True)
class VariantEntry:
    """A variant as the manifest lists it: its name, file (next to the stage's model),
    digest and accuracy figure."""

    name: str
    file_name: str
    sha256: str
    accuracy: float


def variant_accuracy(stage_accuracy: float, agreed: float) -> float:
    """The variant's accuracy figure: the stage's own, scaled by the agreement."""
    return round(stage_accuracy * agreed, ACCURACY_DECIMALS)


def model_stem(uri: str) -> str:
    """The name of a model URI's file without its extension (what its variants are named
    after): ``file:///models/magika.onnx`` -> ``magika``."""
    return posixpath.splitext(posixpath.basename(urlsplit(uri).path))[0]


def sibling_uri(uri: str, file_name: str) -> str:
    """``uri`` with its last path segment replaced by ``file_name`` (query dropped)."""
    parts = urlsplit(uri)
    path = posixpath.join(posixpath.dirname(parts.path), file_name)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def parsed(manifest: Mapping[str, Any]) -> Pipeline:
    """The manifest's pipeline; ManifestError naming the field to fix."""
    try:
        return parse_pipeline(manifest)
    except SpecError as exc:
        raise ManifestError(" ".join(str(exc).split())) from None


def stage_of(pipeline: Pipeline, stage: str) -> int:
    """The index of stage ``stage``; ManifestError naming the stages there are."""
    names = [s.name for s in pipeline.stages]
    if stage not in names:
        raise ManifestError(f"no stage {stage!r} in pipeline {pipeline.name} "
                            f"(stages: {', '.join(names)})")
    return names.index(stage)


def with_variants(manifest: Mapping[str, Any], stage: str,
                  entries: Sequence[VariantEntry]) -> dict[str, Any]:
    """A copy of ``manifest`` whose stage ``stage`` lists ``entries`` among its variants
    (replacing those of the same names, keeping the others), valid as the CRD is."""
    pipeline = parsed(manifest)
    index = stage_of(pipeline, stage)
    updated = copy.deepcopy(dict(manifest))
    raw_stage = updated["spec"]["stages"][index]
    uri = pipeline.stages[index].uri
    variants = list(raw_stage.get("variants") or [])
    for entry in entries:
        listed = {"name": entry.name, "accuracy": entry.accuracy,
                  "model": {"uri": sibling_uri(uri, entry.file_name), "sha256": entry.sha256}}
        names = [v.get("name") for v in variants]
        if entry.name in names:
            variants[names.index(entry.name)] = listed
        else:
            variants.append(listed)
    if len(variants) > MAX_VARIANTS:
        raise ManifestError(f"stage {stage} would have {len(variants)} variants; the CRD "
                            f"allows at most {MAX_VARIANTS}: make fewer (--variants) or "
                            "remove some from the manifest")
    raw_stage["variants"] = variants
    parsed(updated)
    return updated
