"""Every Kopf registration of the operator. Bodies stay thin: the work is in ``reconcile``.

The pipeline's own create/update/resume handlers and the events of its children (Knative
Services, the manifest ConfigMap, the pods) all run the same level-based pass, serialised
per pipeline. No delete handler: children carry ownerReferences and the garbage collector
removes them, so the pipeline needs no finalizer and deletes even while the operator is down.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import kopf

from sluice_operator import names
from sluice_operator.kube import ApiError, Kube, collection_path
from sluice_operator.reconcile import Notice, ReconcileFailure, converge

logger = logging.getLogger(__name__)

#: Delay before retrying after the API server failed a request (5xx, 409, 429).
API_RETRY_S = 10.0

#: The operator's handlers, kept apart from Kopf's default registry.
REGISTRY = kopf.OperatorRegistry()

_CHILD_RESOURCES = (("serving.knative.dev", "services"), ("v1", "configmaps"), ("v1", "pods"))
_OWNED = {names.LABEL_PIPELINE: kopf.PRESENT}


class KeyedLocks:
    """One lock per pipeline, so passes over the same pipeline never interleave."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def __call__(self, namespace: str, name: str) -> threading.Lock:
        """The lock of pipeline ``namespace/name``."""
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())


@kopf.on.startup(registry=REGISTRY)
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Connect and tune Kopf before any watch starts (``memo.operator`` holds our settings)."""
    memo.kube = Kube.connect()
    memo.locks = KeyedLocks()
    # Kopf's bookkeeping goes to sluice.dev/* annotations; the status is ours alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.GROUP, key="last-handled-configuration")
    # Our own Events say what happened; Kopf adds only warnings and errors.
    settings.posting.level = logging.WARNING
    # The resources we serve are known: no need to watch CRDs or namespaces (and no RBAC
    # for them). Namespaces given by SLUICE_NAMESPACES are taken as existing.
    settings.scanning.disabled = True
    for resource in _CHILD_RESOURCES:
        settings.watching.label_selectors[resource] = names.LABEL_PIPELINE


@kopf.on.login(registry=REGISTRY)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Kopf's credentials: the pod's service account, or else the current kubeconfig."""
    return kopf.login_via_client(**kwargs)


@kopf.on.resume(names.GROUP, names.VERSION, names.PLURAL, registry=REGISTRY)
@kopf.on.create(names.GROUP, names.VERSION, names.PLURAL, registry=REGISTRY)
@kopf.on.update(names.GROUP, names.VERSION, names.PLURAL, registry=REGISTRY)
def pipeline_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Converge the pipeline; Kopf retries temporary failures and stops on permanent ones."""
    try:
        _converge(memo, dict(body))
    except ReconcileFailure as exc:
        if exc.retry_after_s is None:
            raise kopf.PermanentError(exc.message) from exc
        raise kopf.TemporaryError(exc.message, delay=exc.retry_after_s) from exc
    except ApiError as exc:
        raise kopf.TemporaryError(f"API server: {exc}", delay=API_RETRY_S) from exc


@kopf.on.event("serving.knative.dev", "v1", "services", labels=_OWNED, registry=REGISTRY)
@kopf.on.event("v1", "configmaps", labels=_OWNED, registry=REGISTRY)
@kopf.on.event("v1", "pods", labels=_OWNED, registry=REGISTRY)
def child_changed(meta: kopf.Meta, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    """A child changed (status, drift, deletion): converge its pipeline again."""
    name = meta.labels[names.LABEL_PIPELINE]
    pipeline = memo.kube.get(_pipeline_path(namespace, name))
    if pipeline is None or pipeline["metadata"].get("deletionTimestamp"):
        return  # the garbage collector is removing the children
    try:
        _converge(memo, pipeline)
    except (ReconcileFailure, ApiError) as exc:
        # Status and Events say it already; the pipeline's own handler does the retrying.
        logger.info("pipeline %s/%s not converged: %s", namespace, name, exc)


def _converge(memo: kopf.Memo, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    with memo.locks(meta["namespace"], meta["name"]):
        try:
            notices = converge(memo.kube, body, memo.operator)
        except ReconcileFailure as exc:
            _post(body, exc.notices)
            raise
        except ApiError as exc:
            if exc.status == 404 and memo.kube.get(_pipeline_path(meta["namespace"],
                                                                  meta["name"])) is None:
                # The pipeline or its namespace was deleted meanwhile: nothing left to do.
                logger.debug("pipeline %s/%s is gone: %s", meta["namespace"], meta["name"], exc)
                return
            raise
    _post(body, notices)


def _pipeline_path(namespace: str, name: str) -> str:
    return f"{collection_path(names.API_VERSION, names.KIND, namespace)}/{name}"


def _post(body: dict[str, Any], notices: list[Notice]) -> None:
    for notice in notices:
        kopf.event(body, type=notice.type, reason=notice.reason, message=notice.message)
