"""The only module that talks to the Kubernetes API: a thin, synchronous JSON client.

Built on the ``kubernetes`` package's ApiClient for credentials (in-cluster service account
or kubeconfig) and TLS; requests are plain paths so every verb the operator uses is visible
here and in the chart's RBAC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import kubernetes

from sluice_operator import names

Object = dict[str, Any]

#: Plural resource names of the kinds the operator writes or reads.
_PLURALS = {
    ("serving.knative.dev/v1", "Service"): "services",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Pod"): "pods",
    (names.API_VERSION, names.KIND): names.PLURAL,
}
_REQUEST_TIMEOUT_S = 30


class ApiError(Exception):
    """The API server refused a request; ``status`` is the HTTP status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    """URL path of a namespaced collection, e.g. the Knative Services of a namespace."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{_PLURALS[(api_version, kind)]}"


def object_path(obj: Mapping[str, Any]) -> str:
    """URL path of ``obj`` from its apiVersion, kind, namespace and name."""
    meta = obj["metadata"]
    base = collection_path(obj["apiVersion"], obj["kind"], meta["namespace"])
    return f"{base}/{meta['name']}"


class Kube:
    """Synchronous JSON requests to the API server."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self._client = client

    @classmethod
    def connect(cls) -> Kube:
        """A client with the pod's service account, or else the current kubeconfig."""
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(client_configuration=configuration)
        return cls(kubernetes.client.ApiClient(configuration))

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Object:
        """Send one request; the decoded response, or ApiError for a non-2xx answer."""
        method_, url, headers, body_, post = self._client.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._client.call_api(method_, url, headers, body_, post,
                                         _request_timeout=_REQUEST_TIMEOUT_S)
        data = response.read() or b"{}"
        decoded = json.loads(data) if data.strip() else {}
        if not 200 <= response.status <= 299:
            raise ApiError(response.status, decoded.get("reason") or str(response.reason),
                           decoded.get("message") or data.decode(errors="replace"))
        return decoded

    def get(self, path: str) -> Object | None:
        """The object at ``path``, or None when it does not exist."""
        try:
            return self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list_by_label(self, path: str, label_selector: str) -> list[Object]:
        """Objects of a collection that match a label selector."""
        return self.request("GET", path, query={"labelSelector": label_selector})["items"]

    def apply(self, obj: Mapping[str, Any]) -> Object:
        """Server-side apply ``obj`` as the operator's field manager, taking over conflicts.

        The operator owns what it renders; the Kubernetes docs advise controllers to force.
        A 409 can still come from two applies racing to create the object: try once more.
        """
        path = object_path(obj)
        query = {"fieldManager": names.FIELD_MANAGER, "force": "true"}
        content_type = "application/apply-patch+yaml"
        try:
            return self.request("PATCH", path, query=query, body=obj, content_type=content_type)
        except ApiError as exc:
            if exc.status != 409:
                raise
        return self.request("PATCH", path, query=query, body=obj, content_type=content_type)

    def delete(self, obj: Mapping[str, Any]) -> None:
        """Delete ``obj`` if it is still the same object (uid precondition); absent is fine."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1",
                "preconditions": {"uid": obj["metadata"]["uid"]},
                "propagationPolicy": "Background"}
        try:
            self.request("DELETE", object_path(obj), body=body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise

    def patch_status(self, obj: Mapping[str, Any], status: Mapping[str, Any]) -> Object:
        """Merge ``status`` into the object's status subresource."""
        return self.request("PATCH", object_path(obj) + "/status", body={"status": status},
                            content_type="application/merge-patch+json")
