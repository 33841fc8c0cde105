"""HTTP on the metrics port: Prometheus metrics and live batching reconfiguration.

``GET /metrics`` (open to all); ``GET /v1/batching``; ``PUT /v1/batching/<model>`` with a
JSON object of any of ``max_batch_size``, ``max_delay_ms``, ``default_slo_ms``;
``GET /v1/profile``, the learned latency per batch size and the parallelism;
``GET /v1/stages`` and ``PUT /v1/stages/<stage>/replicas`` with ``{"replicas": [...]}``,
the replicas a remote stage is served by. Everything
under ``/v1/`` goes through :class:`~sluice_runtime.adminauth.AdminAuth`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sluice_runtime.adminauth import AdminAuth
from sluice_runtime.batcher import BatchedModel
from sluice_runtime.metrics import RuntimeMetrics
from sluice_runtime.remote import RemoteModel
from sluice_runtime.settings import BatchingConfig

log = logging.getLogger(__name__)

_BATCHING_PATH = "/v1/batching"
_PROFILE_PATH = "/v1/profile"
_STAGES_PATH = "/v1/stages"
_REPLICAS_PATH = re.compile(r"^/v1/stages/([^/]+)/replicas$")
_MAX_BODY_BYTES = 64 * 1024


class AdminServer:
    """Serves the metrics port from a thread; configuration changes run on the event loop."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: RuntimeMetrics,
        batchers: Mapping[str, BatchedModel],
        loop: asyncio.AbstractEventLoop,
        auth: AdminAuth,
        parallelism: Callable[[], dict[str, Any]],
        remotes: Mapping[str, RemoteModel],
    ) -> None:
        self._metrics = metrics
        self._auth = auth
        self._parallelism = parallelism
        self._remotes = remotes
        self._batchers = batchers
        self._loop = loop
        self._http = ThreadingHTTPServer((host, port), self._handler_class())
        self._http.daemon_threads = True
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="sluice-admin", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        return self._http.server_address[1]

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._http.shutdown()
        self._http.server_close()

    def batching(self) -> dict[str, Any]:
        """Every batched model's configuration."""
        return {name: b.config.as_dict() for name, b in self._batchers.items()}

    def profile(self) -> dict[str, Any]:
        """What the scaler reads besides /metrics: learned latencies and parallelism."""
        return {"models": {name: b.profile() for name, b in self._batchers.items()},
                **self._parallelism()}

    def reconfigure(self, model: str, changes: dict[str, Any]) -> tuple[HTTPStatus, Any]:
        """Validate and apply a change on the event loop; returns status and JSON body."""
        batcher = self._batchers.get(model)
        if batcher is None:
            return HTTPStatus.NOT_FOUND, {"error": f"no batched model '{model}'"}
        try:
            config = batcher.config.updated(changes)
        except (ValueError, TypeError) as exc:
            return HTTPStatus.BAD_REQUEST, {"error": str(exc)}
        asyncio.run_coroutine_threadsafe(self._apply(batcher, config), self._loop).result(5)
        log.info("model %s batching now %s", model, config.as_dict())
        return HTTPStatus.OK, config.as_dict()

    @staticmethod
    async def _apply(batcher: BatchedModel, config: BatchingConfig) -> None:
        batcher.reconfigure(config)

    def stages(self) -> dict[str, Any]:
        """Every remote stage's replicas."""
        return {name: remote.replicas() for name, remote in self._remotes.items()}

    def set_replicas(self, stage: str, body: Any) -> tuple[HTTPStatus, Any]:
        """Validate a new replica set and hand it to the stage on the event loop."""
        remote = self._remotes.get(stage)
        if remote is None:
            return HTTPStatus.NOT_FOUND, {"error": f"no remote stage '{stage}'"}
        replicas = body.get("replicas") if isinstance(body, dict) else None
        if (not isinstance(replicas, list) or not replicas
                or not all(isinstance(r, str) and ":" in r for r in replicas)
                or len(set(replicas)) != len(replicas)):
            return HTTPStatus.BAD_REQUEST, {
                "error": "body must be {\"replicas\": [\"HOST:PORT\", ...]}: at least one, "
                         "all distinct"}
        asyncio.run_coroutine_threadsafe(
            self._replace(remote, replicas), self._loop).result(5)
        log.info("stage %s replicas now %s", stage, replicas)
        # Accepted: new replicas join once ready, removed ones once drained.
        return HTTPStatus.ACCEPTED, {"replicas": remote.replicas()}

    @staticmethod
    async def _replace(remote: RemoteModel, replicas: list[str]) -> None:
        remote.set_replicas(replicas)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        admin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                log.debug("admin: " + format, *args)

            def _send(self, status: HTTPStatus, body: bytes, content_type: str,
                      headers: Mapping[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: HTTPStatus, payload: Any,
                      headers: Mapping[str, str] | None = None) -> None:
                self._send(status, json.dumps(payload).encode(), "application/json", headers)

            def _allowed(self) -> bool:
                """Answer a refused admin request here; True if it may go on."""
                refusal = admin._auth.refusal(self.headers.get("Authorization"))
                if refusal is None:
                    return True
                status, message = refusal
                challenge = ({"WWW-Authenticate": 'Bearer realm="sluice-admin"'}
                             if status == HTTPStatus.UNAUTHORIZED else None)
                self._json(status, {"error": message}, challenge)
                return False

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body = generate_latest(admin._metrics.registry)
                    self._send(HTTPStatus.OK, body, CONTENT_TYPE_LATEST)
                elif not self._allowed():
                    return
                elif self.path == _BATCHING_PATH:
                    self._json(HTTPStatus.OK, admin.batching())
                elif self.path == _PROFILE_PATH:
                    self._json(HTTPStatus.OK, admin.profile())
                elif self.path == _STAGES_PATH:
                    self._json(HTTPStatus.OK, admin.stages())
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no resource {self.path}"})

            def do_PUT(self) -> None:
                if not self._allowed():
                    return
                batching = _BATCHING_PATH + "/"
                stage = _REPLICAS_PATH.match(self.path)
                if not self.path.startswith(batching) and stage is None:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no resource {self.path}"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > _MAX_BODY_BYTES:
                    self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
                    return
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except json.JSONDecodeError as exc:
                    self._json(HTTPStatus.BAD_REQUEST, {"error": f"invalid JSON: {exc}"})
                    return
                if not isinstance(body, dict):
                    self._json(HTTPStatus.BAD_REQUEST, {"error": "body must be a JSON object"})
                    return
                if stage is not None:
                    self._json(*admin.set_replicas(stage.group(1), body))
                else:
                    self._json(*admin.reconfigure(self.path[len(batching):], body))

        return Handler
