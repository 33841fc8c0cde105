"""The little of the Kubernetes API the node agent speaks, over HTTPS with a bearer token
from a kubeconfig (what the control plane's tooling writes)."""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

MERGE_PATCH = "application/merge-patch+json"


class ApiError(RuntimeError):
    """The API server answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Api:
    """GET, POST, PUT, PATCH and DELETE of JSON objects by path."""

    def __init__(self, kubeconfig: Path, timeout_s: float = 10.0) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        self.server = cluster["server"].rstrip("/")
        self._token = config["users"][0]["user"]["token"]
        with tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False) as ca:
            ca.write(base64.b64decode(cluster["certificate-authority-data"]))
        self._context = ssl.create_default_context(cafile=ca.name)
        Path(ca.name).unlink()
        self._timeout_s = timeout_s

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> Any:
        """The decoded answer of one call; ApiError on an error status."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.server + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": content_type,
                     "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s,
                                        context=self._context) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, exc.read().decode(errors="replace")) from None
        return json.loads(text) if text else None

    def get(self, path: str) -> Any:
        """GET ``path``."""
        return self.request("GET", path)

    def patch(self, path: str, body: Any) -> Any:
        """A JSON merge patch of ``path``."""
        return self.request("PATCH", path, body, MERGE_PATCH)
