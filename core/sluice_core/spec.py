"""The one InferencePipeline spec: parsed, defaulted and validated the way the CRD does it.

The API server enforces the CRD's schema and CEL rules before the operator sees an object;
local mode, the planner and the runtime read manifests from files that no API server has
checked. Both paths go through :func:`parse_pipeline`, which applies the CRD's defaults and
the same rules, so a manifest that ``kubectl apply`` refuses is refused here too, with the
field to fix. ``tests/core/test_spec.py`` holds the two to the same table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sluice_core import quantities

ISOLATED = "isolated"
FUSED = "fused"
AUTO = "auto"
COMPOSITIONS = (ISOLATED, FUSED, AUTO)
SCALING_MODES = ("hybrid", "horizontal", "vertical", "none")
#: Stage names the pipeline's own services use.
RESERVED_STAGE_NAMES = ("router", "fused")
#: The name a stage's own model goes by among its variants.
DEFAULT_VARIANT = "default"

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://.+$")
_PVC_URI = re.compile(r"^pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/[^/].*$")
_SHA256 = re.compile(r"^[a-f0-9]{64}$")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
#: The fields each object of the CRD's schema knows: anything else is refused, as the API
#: server's strict field validation refuses it (a typo must not silently drop a setting).
_FIELDS = {
    "manifest": ("apiVersion", "kind", "metadata", "spec", "status"),
    "spec": ("slo", "composition", "scaling", "runtime", "stages"),
    "spec.slo": ("latencyMs", "percentile", "minAccuracy"),
    "spec.scaling": ("mode",),
    "spec.runtime": ("image", "imagePullPolicy"),
    "stage": ("name", "model", "accuracy", "batching", "resources", "replicas", "variants"),
    "model": ("uri", "sha256"),
    "batching": ("maxBatchSize", "maxDelayMs"),
    "resources": ("cpu", "memory"),
    "bounds": ("initial", "min", "max"),
    "replicas": ("min", "max"),
    "variant": ("name", "model", "accuracy"),
}
_CPU_DEFAULT = {"initial": "1", "min": "250m", "max": "2"}
_MEMORY_DEFAULT = {"initial": "512Mi", "min": "256Mi", "max": "1Gi"}


class SpecError(ValueError):
    """A manifest that cannot be served; ``reason`` is a CamelCase condition reason and
    ``field`` the path of the offending field."""

    def __init__(self, field: str, message: str, reason: str = "InvalidSpec") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = reason
        self.message = f"{field}: {message}"


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from, as the manifest names it."""

    uri: str
    sha256: str | None = None


@dataclass(frozen=True)
class Variant:
    """One model a stage can run: its own (``default``) or an alternative."""

    name: str
    model: ModelRef
    accuracy: float


@dataclass(frozen=True)
class Bounds:
    """A resource's initial value and the range the scaler may move it in (quantities)."""

    initial: str
    min: str
    max: str

    @property
    def initial_value(self) -> float:
        """``initial`` in base units (cores or bytes)."""
        return float(quantities.parse(self.initial))

    @property
    def min_value(self) -> float:
        """``min`` in base units."""
        return float(quantities.parse(self.min))

    @property
    def max_value(self) -> float:
        """``max`` in base units."""
        return float(quantities.parse(self.max))


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline."""

    name: str
    model: ModelRef
    accuracy: float
    max_batch_size: int
    max_delay_ms: float
    cpu: Bounds
    memory: Bounds
    min_replicas: int
    max_replicas: int
    alternatives: tuple[Variant, ...] = ()

    @property
    def uri(self) -> str:
        """The stage's own model URI."""
        return self.model.uri

    @property
    def sha256(self) -> str | None:
        """The stage's own model digest, if the manifest gives one."""
        return self.model.sha256

    @property
    def variants(self) -> tuple[Variant, ...]:
        """Every model the stage may run, its own first (named ``default``)."""
        return (Variant(DEFAULT_VARIANT, self.model, self.accuracy), *self.alternatives)

    def variant(self, name: str) -> Variant:
        """The variant called ``name``; KeyError when the stage has none."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(f"stage {self.name!r} has no variant {name!r}")


@dataclass(frozen=True)
class Pipeline:
    """An InferencePipeline: its identity, SLO, composition, scaling mode and stages."""

    name: str
    latency_ms: int
    percentile: float
    composition: str
    scaling_mode: str
    stages: tuple[Stage, ...]
    min_accuracy: float | None = None
    image: str | None = None
    image_pull_policy: str | None = None
    namespace: str = "default"
    uid: str = ""
    generation: int = 0

    @property
    def effective_composition(self) -> str:
        """The composition served: ``auto`` is isolated until the planner decides."""
        return FUSED if self.composition == FUSED else ISOLATED

    @property
    def slo_quantile(self) -> float:
        """The SLO's percentile as a probability (99 -> 0.99)."""
        return self.percentile / 100.0

    def stage(self, name: str) -> Stage:
        """The stage called ``name``; KeyError when there is none."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"pipeline {self.name!r} has no stage {name!r}")


def parse_pipeline(manifest: Mapping[str, Any]) -> Pipeline:
    """The pipeline in ``manifest``, with the CRD's defaults; SpecError naming what to fix."""
    if not isinstance(manifest, Mapping):
        raise SpecError("manifest", f"expected a mapping, got {type(manifest).__name__}")
    _known(manifest, "manifest", "")
    meta = _mapping(manifest, "metadata", "metadata", required=True)
    name = _string(meta, "name", "metadata.name", required=True)
    if len(name) > 56 or not _DNS_1035.match(name):
        raise SpecError("metadata.name", f"{name!r} must be a DNS-1035 label of at most 56 "
                        "characters (lower case letters, digits and '-', starting with a "
                        "letter)", "InvalidName")
    spec = _mapping(manifest, "spec", "spec", required=True)
    _known(spec, "spec", "spec")
    slo = _mapping(spec, "slo", "spec.slo", required=True)
    _known(slo, "spec.slo", "spec.slo")
    latency_ms = _integer(slo, "latencyMs", "spec.slo.latencyMs", None, 1, 600_000)
    percentile = _number(slo, "percentile", "spec.slo.percentile", 99, 0, 100)
    if percentile <= 0:
        raise SpecError("spec.slo.percentile", f"must be greater than 0, got {percentile}")
    min_accuracy = None
    if "minAccuracy" in slo:
        min_accuracy = _number(slo, "minAccuracy", "spec.slo.minAccuracy", None, 0, 1)
    composition = _choice(spec, "composition", "spec.composition", ISOLATED, COMPOSITIONS)
    scaling = _mapping(spec, "scaling", "spec.scaling")
    _known(scaling, "spec.scaling", "spec.scaling")
    mode = _choice(scaling, "mode", "spec.scaling.mode", "hybrid", SCALING_MODES)
    runtime = _mapping(spec, "runtime", "spec.runtime")
    _known(runtime, "spec.runtime", "spec.runtime")
    image = _string(runtime, "image", "spec.runtime.image")
    if image is not None and len(image) > 512:
        raise SpecError("spec.runtime.image", "must be at most 512 characters")
    pull_policy = None
    if "imagePullPolicy" in runtime:
        pull_policy = _choice(runtime, "imagePullPolicy", "spec.runtime.imagePullPolicy",
                              "", _PULL_POLICIES)
    raw_stages = spec.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise SpecError("spec.stages", "must be a non-empty list of stages")
    if len(raw_stages) > 16:
        raise SpecError("spec.stages", f"at most 16 stages, got {len(raw_stages)}")
    stages = tuple(_stage(raw, f"spec.stages[{i}]") for i, raw in enumerate(raw_stages))
    pipeline = Pipeline(
        name=name,
        latency_ms=latency_ms,
        percentile=percentile,
        composition=composition,
        scaling_mode=mode,
        stages=stages,
        min_accuracy=min_accuracy,
        image=image,
        image_pull_policy=pull_policy,
        namespace=str(meta.get("namespace") or "default"),
        uid=str(meta.get("uid") or ""),
        generation=int(meta.get("generation") or 0),
    )
    _check_pipeline(pipeline)
    return pipeline


def load_pipeline(path: Path) -> Pipeline:
    """Parse a manifest file (YAML or JSON); SpecError on unreadable or invalid files."""
    try:
        manifest = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(str(path), f"cannot read the manifest: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        # PyYAML's messages span lines (with a caret under the column): keep one line.
        raise SpecError(str(path), f"not valid YAML: {' '.join(str(exc).split())}") from None
    return parse_pipeline(manifest)


def _check_pipeline(pipeline: Pipeline) -> None:
    names = [s.name for s in pipeline.stages]
    if len(set(names)) != len(names):
        raise SpecError("spec.stages", f"stage names must be unique, got {names}")
    for index, stage in enumerate(pipeline.stages):
        where = f"spec.stages[{index}]"
        if stage.name in RESERVED_STAGE_NAMES:
            raise SpecError(f"{where}.name", f"stage names {list(RESERVED_STAGE_NAMES)} are "
                            "reserved for the pipeline's own services", "InvalidName")
        if len(pipeline.name) + 1 + len(stage.name) > 63:
            raise SpecError(f"{where}.name", f"the stage's Knative Service name "
                            f"{pipeline.name}-{stage.name} exceeds 63 characters: shorten the "
                            "pipeline or the stage name", "InvalidName")
        if stage.name == pipeline.name:
            # The runtime serves each stage as a model named after it and the pipeline as a
            # model named after the pipeline: the two would collide.
            raise SpecError(f"{where}.name", f"stage {stage.name!r} has the pipeline's own "
                            "name, which names the whole-pipeline model: rename the stage",
                            "ModelNameClash")
    first = pipeline.stages[0]
    if pipeline.composition == FUSED and any(
        (s.min_replicas, s.max_replicas) != (first.min_replicas, first.max_replicas)
        for s in pipeline.stages
    ):
        raise SpecError("spec.stages", "composition fused runs every stage in one Knative "
                        "Service, so all stages must declare the same replicas (min and max)")
    if pipeline.scaling_mode in ("vertical", "none") and any(
        s.min_replicas != s.max_replicas for s in pipeline.stages
    ):
        raise SpecError("spec.stages", f"scaling.mode {pipeline.scaling_mode} keeps the "
                        "replica count fixed: set replicas.min equal to replicas.max in every "
                        "stage")
    if pipeline.min_accuracy is not None:
        best = 1.0
        for stage in pipeline.stages:
            best *= max(v.accuracy for v in stage.variants)
        if best < pipeline.min_accuracy:
            raise SpecError("spec.slo.minAccuracy", f"{pipeline.min_accuracy} exceeds the best "
                            f"end-to-end accuracy the variants allow ({best:.4g})")


def _stage(raw: Any, where: str) -> Stage:
    if not isinstance(raw, Mapping):
        raise SpecError(where, "each stage must be a mapping")
    _known(raw, "stage", where)
    name = _string(raw, "name", f"{where}.name", required=True)
    if len(name) > 54 or not _DNS_1035.match(name):
        raise SpecError(f"{where}.name", f"{name!r} must be a DNS-1035 label of at most 54 "
                        "characters", "InvalidName")
    batching = _mapping(raw, "batching", f"{where}.batching")
    _known(batching, "batching", f"{where}.batching")
    resources = _mapping(raw, "resources", f"{where}.resources")
    _known(resources, "resources", f"{where}.resources")
    replicas = _mapping(raw, "replicas", f"{where}.replicas")
    _known(replicas, "replicas", f"{where}.replicas")
    min_replicas = _integer(replicas, "min", f"{where}.replicas.min", 1, 0, 1000)
    max_replicas = _integer(replicas, "max", f"{where}.replicas.max", 4, 1, 1000)
    if min_replicas > max_replicas:
        raise SpecError(f"{where}.replicas.min", "replicas.min must not exceed replicas.max")
    raw_variants = raw.get("variants") or []
    if not isinstance(raw_variants, list) or len(raw_variants) > 8:
        raise SpecError(f"{where}.variants", "must be a list of at most 8 variants")
    alternatives = tuple(_variant(v, f"{where}.variants[{i}]")
                         for i, v in enumerate(raw_variants))
    variant_names = [DEFAULT_VARIANT] + [v.name for v in alternatives]
    if len(set(variant_names)) != len(variant_names):
        raise SpecError(f"{where}.variants", f"variant names must be unique and not "
                        f"{DEFAULT_VARIANT!r} (the stage's own model): {variant_names[1:]}")
    return Stage(
        name=name,
        model=_model(raw, f"{where}.model"),
        accuracy=_number(raw, "accuracy", f"{where}.accuracy", 1.0, 0, 1),
        max_batch_size=_integer(batching, "maxBatchSize", f"{where}.batching.maxBatchSize",
                                8, 1, 1024),
        max_delay_ms=_number(batching, "maxDelayMs", f"{where}.batching.maxDelayMs",
                             2, 0, 10_000),
        cpu=_bounds(resources, "cpu", f"{where}.resources.cpu", _CPU_DEFAULT),
        memory=_bounds(resources, "memory", f"{where}.resources.memory", _MEMORY_DEFAULT),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        alternatives=alternatives,
    )


def _variant(raw: Any, where: str) -> Variant:
    if not isinstance(raw, Mapping):
        raise SpecError(where, "each variant must be a mapping")
    _known(raw, "variant", where)
    name = _string(raw, "name", f"{where}.name", required=True)
    if len(name) > 63 or not _DNS_1035.match(name):
        raise SpecError(f"{where}.name", f"{name!r} must be a DNS-1035 label")
    return Variant(name, _model(raw, f"{where}.model"),
                   _number(raw, "accuracy", f"{where}.accuracy", 1.0, 0, 1))


def _model(raw: Mapping[str, Any], where: str) -> ModelRef:
    model = _mapping(raw, "model", where, required=True)
    _known(model, "model", where)
    uri = _string(model, "uri", f"{where}.uri", required=True)
    if len(uri) > 2048 or not _URI.match(uri):
        raise SpecError(f"{where}.uri", f"{uri!r} must be a URI with a scheme "
                        "(pvc://CLAIM/PATH, http(s)://URL or file:///PATH)", "InvalidModelURI")
    if uri.startswith("pvc://") and not _PVC_URI.match(uri):
        raise SpecError(f"{where}.uri", "a pvc:// model URI must be pvc://CLAIM/PATH with a "
                        "valid claim name and a path inside the claim", "InvalidModelURI")
    if uri.startswith("file://") and not uri.startswith("file:///"):
        raise SpecError(f"{where}.uri", "a file:// model URI must name an absolute path "
                        "(file:///path)", "InvalidModelURI")
    sha256 = _string(model, "sha256", f"{where}.sha256")
    if sha256 is not None and not _SHA256.match(sha256):
        raise SpecError(f"{where}.sha256", "must be 64 lowercase hex digits")
    return ModelRef(uri, sha256)


def _bounds(raw: Mapping[str, Any], key: str, where: str, default: Mapping[str, str]) -> Bounds:
    given = _mapping(raw, key, where)
    _known(given, "bounds", where)
    values = {}
    for part in ("initial", "min", "max"):
        value = given.get(part, default[part])
        try:
            values[part] = (str(value), quantities.parse(value))
        except (ValueError, TypeError):
            raise SpecError(f"{where}.{part}", f"{value!r} is not a Kubernetes quantity "
                            "(e.g. 500m, 2, 1Gi)") from None
    resource = key
    if values["min"][1] <= 0:
        raise SpecError(f"{where}.min", f"{resource}.min must be greater than zero")
    if values["min"][1] > values["initial"][1]:
        raise SpecError(f"{where}.min", f"{resource}.min ({values['min'][0]}) must not exceed "
                        f"{resource}.initial ({values['initial'][0]})")
    if values["initial"][1] > values["max"][1]:
        raise SpecError(f"{where}.initial", f"{resource}.initial ({values['initial'][0]}) must "
                        f"not exceed {resource}.max ({values['max'][0]})")
    return Bounds(values["initial"][0], values["min"][0], values["max"][0])


def _known(raw: Mapping[str, Any], kind: str, where: str) -> None:
    for key in raw:
        if key not in _FIELDS[kind]:
            path = f"{where}.{key}" if where else str(key)
            raise SpecError(path, f"unknown field {path!r} (known here: "
                            f"{', '.join(_FIELDS[kind])})")


def _mapping(raw: Mapping[str, Any], key: str, where: str, *,
             required: bool = False) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        if required:
            raise SpecError(where, "is required")
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(where, f"must be a mapping, got {type(value).__name__}")
    return value


def _string(raw: Mapping[str, Any], key: str, where: str, *,
            required: bool = False) -> Any:
    value = raw.get(key)
    if value is None:
        if required:
            raise SpecError(where, "is required")
        return None
    if not isinstance(value, str) or not value:
        raise SpecError(where, f"must be a non-empty string, got {value!r}")
    return value


def _number(raw: Mapping[str, Any], key: str, where: str, default: float | None,
            low: float, high: float) -> float:
    value = raw.get(key, default)
    if value is None:
        raise SpecError(where, "is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(where, f"must be a number, got {value!r}")
    if not low <= value <= high:
        raise SpecError(where, f"must be within [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _integer(raw: Mapping[str, Any], key: str, where: str, default: int | None,
             low: int, high: int) -> int:
    value = raw.get(key, default)
    if value is None:
        raise SpecError(where, "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(where, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise SpecError(where, f"must be within [{low}, {high}], got {value!r}")
    return value


def _choice(raw: Mapping[str, Any], key: str, where: str, default: str,
            allowed: tuple[str, ...]) -> str:
    value = raw.get(key, default)
    if value not in allowed:
        raise SpecError(where, f"must be one of {list(allowed)}, got {value!r}")
    return str(value)
