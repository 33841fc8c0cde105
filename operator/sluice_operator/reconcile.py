"""One level-based pass over a pipeline: observe, converge the children, write status.

Creation, update, resume and every change to a child run this same pass; it reads the
whole state and writes what differs, so it does not matter which event started it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sluice_core.spec import Pipeline

from sluice_operator import names
from sluice_operator.kube import ApiError, Kube, collection_path, object_path
from sluice_operator.pipeline import InvalidPipeline, parse_pipeline
from sluice_operator.render import KNATIVE_API_VERSION, desired_children
from sluice_operator.settings import OperatorSettings
from sluice_operator.status import READY, failed_status, find_condition, pipeline_status

Object = Mapping[str, Any]
Key = tuple[str, str]
_CHILD_KINDS = ((KNATIVE_API_VERSION, "Service"), ("v1", "ConfigMap"))

#: Wait before retrying when another object holds a child's name.
NAME_CONFLICT_RETRY_S = 30.0
#: Wait before retrying when the API server (e.g. Knative's webhook) rejects a child.
REJECTED_RETRY_S = 300.0


@dataclass(frozen=True)
class Notice:
    """A Kubernetes Event to post on the pipeline."""

    type: str
    reason: str
    message: str


class ReconcileFailure(Exception):
    """The pass stopped; status already says why. ``retry_after_s`` None means permanent."""

    def __init__(self, reason: str, message: str, retry_after_s: float | None,
                 notices: Sequence[Notice]) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.retry_after_s = retry_after_s
        self.notices = list(notices)


def converge(kube: Kube, body: Object, settings: OperatorSettings,
             now: str | None = None) -> list[Notice]:
    """Bring the pipeline's children and status in line with ``body``.

    Returns the Events to post; raises ReconcileFailure (with its Events) when it cannot.
    """
    run = _Pass(kube, body, now or utc_now())
    try:
        pipeline = parse_pipeline(body)
    except InvalidPipeline as exc:
        raise run.fail(exc.reason, exc.message, None) from exc
    desired = desired_children(pipeline, settings)
    observed = run.observe(pipeline)
    run.check_names(desired, observed, pipeline.uid)
    applied = run.apply(desired, observed)
    run.prune(observed, applied, pipeline.uid)
    services = {name: obj for (kind, name), obj in applied.items() if kind == "Service"}
    pods = kube.list_by_label(collection_path("v1", "Pod", pipeline.namespace),
                     names.pipeline_selector(pipeline.name))
    run.write_status(pipeline_status(pipeline, services, pods, run.previous, run.now))
    return run.notices


def utc_now() -> str:
    """The current time as Kubernetes writes it (RFC 3339, seconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def controlled_by(obj: Object, uid: str) -> bool:
    """Whether ``obj``'s controller ownerReference points at ``uid``."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)


def stale_children(observed: Iterable[Object], desired_keys: Iterable[Key],
                   uid: str) -> list[Object]:
    """Children this pipeline controls that its spec no longer renders."""
    keep = set(desired_keys)
    return [o for o in observed if _key(o) not in keep and controlled_by(o, uid)]


def transition_notices(previous: Object, status: Object) -> list[Notice]:
    """An Event when the Ready condition changes status or reason, none otherwise."""
    before = find_condition(previous.get("conditions") or [], READY) or {}
    after = find_condition(status.get("conditions") or [], READY) or {}
    if (before.get("status"), before.get("reason")) == (after.get("status"), after.get("reason")):
        return []
    if after.get("status") == "True":
        return [Notice("Normal", after.get("reason", READY), after.get("message", ""))]
    if after.get("status") == "False":
        return [Notice("Warning", after.get("reason", "NotReady"), after.get("message", ""))]
    return []


@dataclass
class _Pass:
    """The steps of one ``converge`` and the Events they collect."""

    kube: Kube
    body: Object
    now: str
    notices: list[Notice] = field(default_factory=list)

    @property
    def previous(self) -> Object:
        return self.body.get("status") or {}

    def observe(self, pipeline: Pipeline) -> dict[Key, Object]:
        """The pipeline's children by (kind, name), found by label."""
        found: dict[Key, Object] = {}
        for api_version, kind in _CHILD_KINDS:
            path = collection_path(api_version, kind, pipeline.namespace)
            try:
                items = self.kube.list_by_label(path, names.pipeline_selector(pipeline.name))
            except ApiError as exc:
                if exc.status != 404:
                    raise
                # Listing succeeds in any namespace; a 404 means the kind is not served.
                raise self.fail("KnativeMissing", f"this cluster does not serve {kind} "
                                f"{api_version} ({exc.message}): install Knative Serving",
                                REJECTED_RETRY_S) from exc
            for obj in items:
                # List items carry no apiVersion/kind; restore them so paths can be built.
                item = {**obj, "apiVersion": api_version, "kind": kind}
                found[_key(item)] = item
        return found

    def check_names(self, desired: Iterable[Object], observed: Mapping[Key, Object],
                    uid: str) -> None:
        """Fail when an object the pipeline does not control holds a child's name."""
        taken = []
        for obj in desired:
            holder = observed.get(_key(obj)) or self.kube.get(object_path(obj))
            if holder is not None and not controlled_by(holder, uid):
                taken.append(_describe(obj))
        if taken:
            raise self.fail("NameConflict", "names already taken by objects this pipeline "
                            f"does not own: {', '.join(taken)}; delete or rename them",
                            NAME_CONFLICT_RETRY_S)

    def apply(self, desired: Iterable[Object],
              observed: Mapping[Key, Object]) -> dict[Key, Object]:
        """Server-side apply every child; returns them as the API server now holds them."""
        applied = {}
        for obj in desired:
            try:
                result = self.kube.apply(obj)
            except ApiError as exc:
                if exc.status >= 500 or exc.status in (409, 429):
                    raise
                raise self.fail("ApplyRejected", f"{_describe(obj)} was rejected: "
                                f"{exc.message}", REJECTED_RETRY_S) from exc
            applied[_key(result)] = result
            self.notices += _change_notice(observed.get(_key(obj)), result)
        return applied

    def prune(self, observed: Mapping[Key, Object], applied: Mapping[Key, Object],
              uid: str) -> None:
        """Delete the children the spec no longer renders."""
        for stale in stale_children(observed.values(), applied.keys(), uid):
            self.kube.delete(stale)
            self.notices.append(Notice("Normal", "Deleted", f"deleted {_describe(stale)}"))

    def write_status(self, status: Object) -> None:
        """Patch the status subresource; an Event when readiness changed."""
        self.kube.patch_status(self.body, status)
        self.notices += transition_notices(self.previous, status)

    def fail(self, reason: str, message: str, retry_after_s: float | None) -> ReconcileFailure:
        """Write a failed status and return the exception for the caller to raise."""
        generation = int(self.body["metadata"].get("generation", 0))
        self.write_status(failed_status(self.previous, generation, reason, message, self.now))
        return ReconcileFailure(reason, message, retry_after_s, self.notices)


def _change_notice(before: Object | None, after: Object) -> list[Notice]:
    if before is None:
        return [Notice("Normal", "Created", f"created {_describe(after)}")]
    # Status writes bump a Knative Service's resourceVersion but not its generation, so
    # compare generations where the kind has them (ConfigMaps do not).
    version = "generation" if "generation" in after["metadata"] else "resourceVersion"
    if before["metadata"].get(version) != after["metadata"].get(version):
        return [Notice("Normal", "Updated", f"updated {_describe(after)}")]
    return []


def _key(obj: Object) -> Key:
    return obj["kind"], obj["metadata"]["name"]


def _describe(obj: Object) -> str:
    kind = "Knative Service" if obj["kind"] == "Service" else obj["kind"]
    return f"{kind} {obj['metadata']['name']}"
