"""SLO-aware adaptive batching of one local model over the shared executor pool."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from sluice_runtime.batching import (
    EdfQueue,
    PendingRequest,
    batch_key,
    dispatch_at,
    merge_inputs,
    split_outputs,
)
from sluice_runtime.errors import (
    DeadlineUnmeetable,
    InferenceError,
    ModelFailure,
    Overloaded,
    ShuttingDown,
)
from sluice_runtime.executors import ExecutorPool
from sluice_runtime.latency import LatencyModel
from sluice_runtime.metrics import RateMeter, RuntimeMetrics
from sluice_runtime.model import OnnxModel
from sluice_runtime.requestlog import RequestLog
from sluice_runtime.servable import select_outputs
from sluice_runtime.settings import BatchingConfig
from sluice_runtime.signature import InferenceRequest

log = logging.getLogger(__name__)

_WARMUP_RUNS = 3


class BatchedModel:
    """Queues requests earliest-deadline-first and runs them in batches.

    A batch starts when it is full, when its oldest request has waited ``max_delay_ms``,
    or when waiting longer would make the earliest deadline miss given the predicted
    compute time; it also needs a free executor, and the queue keeps filling while it
    waits for one, which is what makes the batch size adapt to load.
    """

    platform = "onnxruntime_onnx"

    def __init__(
        self,
        model: OnnxModel,
        config: BatchingConfig,
        pool: ExecutorPool,
        metrics: RuntimeMetrics,
        request_log: RequestLog,
        max_queue_size: int,
    ) -> None:
        self.name = model.name
        self.signature = model.signature
        self._model = model
        self._config = config
        self._pool = pool
        self._metrics = metrics
        self._log = request_log
        self._max_queue_size = max_queue_size
        self._queue = EdfQueue()
        self._latency = LatencyModel()
        self._wake = asyncio.Event()
        self._arrivals = RateMeter()
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._queue_wait = metrics.queue_wait.labels(self.name)
        self._compute = metrics.compute.labels(self.name)
        self._batch_size = metrics.batch_size.labels(self.name)
        metrics.queue_depth.labels(self.name).set_function(lambda: len(self._queue))
        metrics.arrival_rate.labels(self.name).set_function(self._arrivals.rate)
        self._publish_config()

    @property
    def config(self) -> BatchingConfig:
        """Batching settings in force."""
        return self._config

    @property
    def default_slo_ms(self) -> float:
        """Deadline given to requests that carry none."""
        return self._config.default_slo_ms

    def reconfigure(self, config: BatchingConfig) -> None:
        """Apply new batching settings from the next batch on."""
        self._config = config
        self._publish_config()
        self._wake.set()

    def _publish_config(self) -> None:
        for setting, value in self._config.as_dict().items():
            self._metrics.batching.labels(self.name, setting).set(value)

    def predicted_compute_s(self, rows: int) -> float:
        """Predicted compute seconds of a batch of ``rows`` rows."""
        return self._latency.predict(rows)

    async def warm_up(self) -> None:
        """Run example batches so first requests are not slow and predictions exist.

        Zero-filled inputs can be invalid for a data-dependent model: then the model is
        served cold, with a warning, rather than not at all.
        """
        sizes = sorted({1, self._config.max_batch_size if self.signature.batchable else 1})
        for rows in sizes:
            inputs = self._model.example_inputs(rows)
            for _ in range(_WARMUP_RUNS):
                await self._pool.acquire()
                try:
                    _, seconds = await self._pool.run(self._timed_run, inputs)
                except Exception as exc:
                    log.warning("model %s: warm-up on zero inputs failed, serving it cold: %s",
                                self.name, exc)
                    return
                finally:
                    self._pool.release()
                self._latency.observe(rows, seconds)

    def start(self) -> None:
        """Start the batching loop."""
        self._loop_task = asyncio.create_task(self._run_loop(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Let running batches finish, stop the loop, and fail whatever is still queued."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing computing."""
        return not self._queue and not self._running

    async def infer(self, request: InferenceRequest) -> dict[str, np.ndarray]:
        """Queue a validated request and wait for its outputs."""
        now = time.monotonic()
        self._arrivals.mark()
        predicted = self._latency.predict(request.rows)
        if now + predicted > request.deadline:
            self._log_request(request, now, now, now, 0, "DEADLINE_EXCEEDED")
            raise DeadlineUnmeetable(
                f"model '{self.name}': {max(request.deadline - now, 0) * 1000:.2f} ms left, "
                f"compute alone is predicted to take {predicted * 1000:.2f} ms"
            )
        if len(self._queue) >= self._max_queue_size:
            self._log_request(request, now, now, now, 0, "RESOURCE_EXHAUSTED")
            raise Overloaded(
                f"model '{self.name}': {len(self._queue)} requests already queued "
                f"(max {self._max_queue_size}); retry later or scale out"
            )
        future: asyncio.Future[dict[str, np.ndarray]] = (
            asyncio.get_running_loop().create_future()
        )
        key = batch_key(request, self.signature.batchable)
        self._queue.push(PendingRequest(request, future, now, key))
        self._wake.set()
        return await future

    async def _run_loop(self) -> None:
        try:
            while True:
                try:
                    await self._step()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # A bug here must not hang every caller: fail what is queued, go on.
                    log.exception("batching loop of model %s failed; failing its queue", self.name)
                    self._fail_queued(ModelFailure(f"model '{self.name}': batching failed"))
        finally:
            self._fail_queued(ShuttingDown(f"model '{self.name}' is shutting down"))

    def _fail_queued(self, error: InferenceError) -> None:
        for pending in self._queue.drain():
            pending.future.set_exception(error)

    async def _sleep_until(self, when: float) -> None:
        self._wake.clear()
        timer = asyncio.get_running_loop().call_at(when, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            timer.cancel()

    async def _step(self) -> None:
        oldest = self._queue.oldest_arrival()
        head = self._queue.head()
        if head is None or oldest is None:
            self._wake.clear()
            await self._wake.wait()
            return
        config = self._config
        max_rows = config.max_batch_size if self.signature.batchable else 1
        now = time.monotonic()
        start = dispatch_at(
            now, self._queue.rows_with_key(head.key), oldest, head.deadline,
            max_rows, config.max_delay_s, self._latency.predict,
            idle_executor=self._pool.busy < self._pool.limit,
            arrival_rate_per_s=self._arrivals.rate(),
        )
        if start > now:
            await self._sleep_until(start)
            return
        await self._pool.acquire()
        try:
            batch = self._take_batch(max_rows)
        except BaseException:
            self._pool.release()
            raise
        if not batch:
            self._pool.release()
            return
        task = asyncio.create_task(self._execute(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def _take_batch(self, max_rows: int) -> list[PendingRequest]:
        """Pop the next batch, rejecting requests that can no longer make their deadline."""
        now = time.monotonic()
        while candidates := self._queue.pop_batch(max_rows):
            batch = []
            for pending in candidates:
                if now + self._latency.predict(pending.rows) > pending.deadline:
                    self._log_request(pending.request, pending.arrival, now, now, 0,
                                      "DEADLINE_EXCEEDED")
                    pending.future.set_exception(DeadlineUnmeetable(
                        f"model '{self.name}': deadline passed while queued "
                        f"({(now - pending.arrival) * 1000:.1f} ms)"
                    ))
                else:
                    batch.append(pending)
            if batch:
                return batch
        return []

    def _timed_run(self, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        started = time.perf_counter()
        outputs = self._model.run(inputs)
        return outputs, time.perf_counter() - started

    async def _execute(self, batch: list[PendingRequest]) -> None:
        rows = [p.rows for p in batch]
        started = time.monotonic()
        try:
            outputs, compute_s = await self._pool.run(
                self._timed_run, merge_inputs([p.request for p in batch])
            )
            results = split_outputs(outputs, rows)
            error: InferenceError | None = None
        except Exception as exc:  # the model's fault: this batch fails, the server goes on
            log.exception("model %s failed on a batch of %d rows", self.name, sum(rows))
            error = ModelFailure(f"model '{self.name}' failed on this batch: {exc}")
            compute_s = time.monotonic() - started
        finally:
            self._pool.release()
            self._wake.set()
        ended = time.monotonic()
        code = "OK" if error is None else "INTERNAL"
        if error is None:
            self._latency.observe(sum(rows), compute_s)
        self._compute.observe(compute_s)
        self._batch_size.observe(sum(rows))
        for index, pending in enumerate(batch):
            self._queue_wait.observe(started - pending.arrival)
            self._log_request(pending.request, pending.arrival, started, ended, sum(rows), code)
            if pending.future.done():
                continue  # the caller went away during compute
            if error is None:
                selected = select_outputs(results[index], pending.request.requested_outputs)
                pending.future.set_result(selected)
            else:
                pending.future.set_exception(error)
        if self._log.enabled:
            self._log.write({
                "event": "batch", "model": self.name, "start": self._log.wall(started),
                "end": self._log.wall(ended), "batch_size": sum(rows),
                "requests": len(batch), "code": code,
            })

    def _log_request(
        self, request: InferenceRequest, arrival: float, start: float, end: float,
        batch_size: int, code: str,
    ) -> None:
        if self._log.enabled:
            self._log.write({
                "event": "request", "model": self.name, "id": request.id,
                "arrival": self._log.wall(arrival), "start": self._log.wall(start),
                "end": self._log.wall(end), "deadline": self._log.wall(request.deadline),
                "batch_size": batch_size, "code": code,
            })
