"""The runtime process: load, warm up, serve, follow the CPU, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sluice_core.cores import executors_for
from sluice_core.spec import SpecError, load_pipeline

from sluice_runtime.admin import AdminServer
from sluice_runtime.adminauth import AdminAuth
from sluice_runtime.batcher import BatchedModel
from sluice_runtime.cpu import cgroup_cpu_usage, cpu_allocation, read_own_cgroup
from sluice_runtime.errors import InferenceError, StartupError
from sluice_runtime.executors import ExecutorPool
from sluice_runtime.metrics import RuntimeMetrics
from sluice_runtime.model import OnnxModel
from sluice_runtime.pipeline import PipelineError, PipelineModel
from sluice_runtime.protocol import GRPC_MESSAGE_OPTIONS
from sluice_runtime.remote import RemoteModel
from sluice_runtime.requestlog import RequestLog
from sluice_runtime.servable import Servable
from sluice_runtime.servicer import InferenceServicer, ServerState, add_inference_service
from sluice_runtime.settings import BatchingConfig, ModelSource, RuntimeSettings
from sluice_runtime.sources import ModelSourceError, resolve

log = logging.getLogger(__name__)

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class RuntimeServer:
    """Owns every part of one runtime process and their order of start and stop."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        own = read_own_cgroup()
        self.metrics = RuntimeMetrics(
            slo_s=settings.batching.default_slo_ms / 1000,
            cpu_usage=lambda: cgroup_cpu_usage(own),
        )
        self.state = ServerState()
        self.servables: dict[str, Servable] = {}
        self.batchers: dict[str, BatchedModel] = {}
        self.remotes: dict[str, RemoteModel] = {}
        self._request_log = RequestLog(settings.request_log)
        self._health = health.aio.HealthServicer()
        self._stop = asyncio.Event()
        cores = self._read_cpu()
        self._pool = ExecutorPool(settings.executors or executors_for(cores))
        # Read from the pool at scrape time: nothing on the batch path keeps them current.
        self.metrics.executors.set_function(lambda: self._pool.limit)
        self.metrics.executors_busy.set_function(lambda: self._pool.busy)

    def _parallelism(self) -> dict[str, object]:
        return {"executors": self._pool.limit, "executors_busy": self._pool.busy,
                "cpu_allocation_cores": self._cores}

    def _read_cpu(self) -> float:
        cores = cpu_allocation(self.settings.cgroup_root)
        self._cores = cores
        self.metrics.cpu_allocation.set(cores)
        return cores

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT, then drain. Returns the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        auth = AdminAuth(self.settings.admin_token_file, self.settings.host)
        if auth.off:
            log.warning("the admin API is off: %s is not loopback and no --admin-token-file "
                        "was given (/metrics stays open)", self.settings.host)
        # grpc's health servicer starts out SERVING; readiness must wait for warm models.
        await self._health.set("", _NOT_SERVING)
        server, grpc_port = self._grpc_server()
        await server.start()
        try:
            admin = AdminServer(
                self.settings.host, self.settings.metrics_port, self.metrics, self.batchers,
                loop, auth, self._parallelism, self.remotes,
            )
        except OSError as exc:
            await server.stop(grace=None)
            raise StartupError(
                f"cannot listen on {self.settings.host}:{self.settings.metrics_port} for "
                f"metrics: {exc.strerror or exc}"
            ) from None
        admin.start()
        # The bound ports, not the asked-for ones: port 0 picks free ports, and this
        # line is how a supervisor (or a test) learns them.
        log.info("gRPC on %s:%d, metrics on %s:%d, %d executors",
                 self.settings.host, grpc_port, self.settings.host, admin.port,
                 self._pool.limit)
        watcher: asyncio.Task[None] | None = None
        try:
            loading = asyncio.create_task(self._load())
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({loading, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not loading.done():
                loading.cancel()
                await asyncio.gather(loading, return_exceptions=True)
                return 0
            try:
                loading.result()
            except (PipelineError, SpecError, ModelSourceError, InferenceError) as exc:
                raise StartupError(getattr(exc, "message", None) or str(exc)) from None
            if self.settings.executors is None:
                watcher = asyncio.create_task(self._follow_cpu())
            self.state.ready = True
            await self._health.set("", _SERVING)
            log.info("ready: serving %s", ", ".join(sorted(self.servables)))
            await stop
            await self._drain()
            return 0
        finally:
            if watcher is not None:
                watcher.cancel()
            await asyncio.gather(*(b.stop() for b in self.batchers.values()))
            await asyncio.gather(*(r.close() for r in self.remotes.values()))
            await server.stop(grace=1.0)
            admin.stop()
            self._pool.shutdown()
            self._request_log.close()

    def _grpc_server(self) -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(options=GRPC_MESSAGE_OPTIONS)
        servicer = InferenceServicer(self.servables, self.state, self.metrics)
        add_inference_service(servicer, server, self.metrics)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        address = f"{self.settings.host}:{self.settings.port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError:  # grpc raises, rather than returning 0, on some versions
            port = 0
        if port == 0:
            raise StartupError(f"cannot listen on {address} for gRPC (in use or not local?)")
        return server, port

    async def _load_local(self, source: ModelSource, config: BatchingConfig) -> BatchedModel:
        path = await asyncio.to_thread(
            resolve, source.uri, source.sha256, self.settings.model_cache_dir
        )
        try:
            model = await asyncio.to_thread(
                OnnxModel, source.name, path, self.settings.model_cache_dir
            )
        except Exception as exc:  # onnxruntime's errors share no base class but Exception
            raise StartupError(
                f"model '{source.name}': onnxruntime cannot load {path}: {exc}"
            ) from None
        batcher = BatchedModel(
            model, config, self._pool, self.metrics, self._request_log,
            self.settings.max_queue_size, self.settings.max_threads_per_batch,
        )
        await batcher.warm_up()
        batcher.start()
        self.batchers[source.name] = batcher
        log.info("loaded %s from %s", source.name, path)
        return batcher

    async def _connect_remote(self, name: str) -> RemoteModel:
        remote = RemoteModel(name, self.settings.remotes[name],
                             self.settings.batching.default_slo_ms)
        self.remotes[name] = remote
        await remote.connect(self.settings.remote_connect_timeout_s)
        return remote

    def _register(self, servable: Servable) -> None:
        if servable.name in self.servables:
            raise PipelineError(f"two models are named '{servable.name}'")
        self.servables[servable.name] = servable

    async def _load(self) -> None:
        settings = self.settings
        overrides = {m.name: m for m in settings.models}
        if settings.pipeline_file is None:
            for source in settings.models:
                self._register(await self._load_local(source, settings.batching))
            # Without a pipeline a remote model is served whole from its replicas: the
            # load balancer in front of fused replicas.
            for name in settings.remotes:
                self._register(await self._connect_remote(name))
            return
        spec = load_pipeline(settings.pipeline_file)
        unknown = sorted(set(settings.remotes) - {s.name for s in spec.stages})
        if unknown:
            raise PipelineError(f"--remote names stages not in the pipeline: {unknown}")
        stages: list[Servable] = []
        for stage in spec.stages:
            if stage.name in settings.remotes:
                stages.append(await self._connect_remote(stage.name))
            else:
                source = overrides.pop(stage.name, None) or ModelSource(
                    stage.name, stage.uri, stage.sha256
                )
                batching = settings.batching.updated({"max_batch_size": stage.max_batch_size,
                                                      "max_delay_ms": stage.max_delay_ms})
                stages.append(await self._load_local(source, batching))
            self._register(stages[-1])
        for source in overrides.values():  # --model entries that are not stages
            self._register(await self._load_local(source, settings.batching))
        self._register(PipelineModel(spec.name, stages, spec.latency_ms))

    async def _follow_cpu(self) -> None:
        """Re-read the CPU allocation; an in-place resize changes it under us."""
        while True:
            await asyncio.sleep(self.settings.cpu_poll_interval_s)
            limit = executors_for(self._read_cpu())
            if limit != self._pool.limit:
                log.info("CPU allocation changed: %d -> %d cores", self._pool.limit, limit)
                # Side-by-side batches use the new cores at once; wider ones once their
                # sessions exist (a fraction of a second).
                self._pool.resize(limit)
                for batcher in list(self.batchers.values()):
                    await batcher.prepare_threads(limit)

    async def _drain(self) -> None:
        """Refuse new requests, finish the ones in flight (bounded by the drain timeout)."""
        log.info("draining: %d requests in flight", self.state.in_flight)
        self.state.draining = True
        await self._health.enter_graceful_shutdown()
        try:
            await asyncio.wait_for(self.state.wait_idle(), self.settings.drain_timeout_s)
        except TimeoutError:
            log.warning("drain timeout: %d requests still in flight", self.state.in_flight)
        log.info("drained")
