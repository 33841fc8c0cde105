"""SLO-aware adaptive batching of one local model over the shared executor pool."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import numpy as np

from sluice_runtime.batching import (
    DISPATCH_SLACK_S,
    EdfQueue,
    PendingRequest,
    batch_key,
    batch_work_s,
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
from sluice_runtime.metrics import OUTCOMES, RateMeter, RuntimeMetrics
from sluice_runtime.model import OnnxModel
from sluice_runtime.parallelism import arriving_batches, choose_threads
from sluice_runtime.requestlog import RequestLog
from sluice_runtime.servable import NO_BACKLOG, Backlog, select_outputs
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

    Under overload it keeps its promise instead of its queue: a request is admitted only
    if the work already running and queued ahead of it, plus its own batch, is predicted
    to finish before its deadline (so what cannot be served in time is refused at once,
    and the queue holds at most a deadline's worth of work); a batch is sized so that its
    own predicted time fits the earliest deadline in it; and requests whose deadline can
    no longer be met are refused as soon as that is known, whether or not an executor is
    free.

    Each batch runs with as many intra-op threads as :func:`choose_threads` finds ends the
    ready work soonest, from latencies measured per thread count: a lone request takes the
    free cores that make it faster, a queue is served by batches side by side. Admission
    counts running work in core-seconds, so a wide batch weighs what it occupies.
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
        max_threads_per_batch: int | None = None,
    ) -> None:
        self.name = model.name
        self.signature = model.signature
        self._model = model
        self._config = config
        self._pool = pool
        self._metrics = metrics
        self._log = request_log
        self._max_queue_size = max_queue_size
        self._max_threads = max_threads_per_batch
        self._queue = EdfQueue()
        self._latency_by_threads: dict[int, LatencyModel] = {1: LatencyModel()}
        self._wake = asyncio.Event()
        self._arrivals = RateMeter()
        # Running batches: when each is predicted to end (monotonic seconds), its threads.
        self._running: dict[asyncio.Task[None], tuple[float, int]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._queue_wait = metrics.queue_wait.labels(self.name)
        self._compute = metrics.compute.labels(self.name)
        self._batch_size = metrics.batch_size.labels(self.name)
        self._latency_hist = metrics.model_latency.labels(self.name)
        self._batches = metrics.batches
        self._batches.labels(self.name, "1")
        # Children made once, off the request path; every outcome exported from the start.
        self._outcomes = {outcome: metrics.model_requests.labels(self.name, outcome)
                          for outcome in (*OUTCOMES.values(), "late")}
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

    def profile(self) -> dict[str, object]:
        """The latency learned from this model's batches by intra-op thread count, as
        ``GET /v1/profile`` shows it."""
        return {
            "threads": {str(threads): latency.snapshot()
                        for threads, latency in sorted(self._latency_by_threads.items())
                        if latency.measured},
            "threads_available": list(self._model.threads_available),
            "queued": len(self._queue),
            "running_batches": len(self._running),
        }

    async def prepare_threads(self, max_threads: int) -> None:
        """Make sure batches can run with up to ``max_threads`` intra-op threads (after a
        resize up); new settings are measured on the next lone batches."""
        if self._max_threads is not None:
            max_threads = min(max_threads, self._max_threads)
        if len(self._model.threads_available) < max_threads:
            await asyncio.to_thread(self._model.ensure_threads, max_threads)

    def _estimator(self, threads: int) -> LatencyModel:
        """The latency model of ``threads``, or the one-thread model until it is measured
        (never faster than one thread: deadline checks stay on the safe side)."""
        latency = self._latency_by_threads.get(threads)
        return latency if latency is not None and latency.measured else (
            self._latency_by_threads[1])

    def _measured(self, threads: int, rows: int) -> float | None:
        latency = self._latency_by_threads.get(threads)
        return latency.predict(rows) if latency is not None and latency.measured else None

    def _threads_for(self, free_cores: int, ready_batches: int, rows: int) -> int:
        usable = min(free_cores, len(self._model.threads_available),
                     self._max_threads or free_cores)
        if usable == 1:
            return 1
        arriving = arriving_batches(self._arrivals.rate(), self._measured(1, rows),
                                    self._max_rows())
        return choose_threads(usable, ready_batches + arriving, rows, self._measured)

    def _widen(self, ready_batches: int, rows: int) -> int:
        """Intra-op threads for a batch whose first core the caller holds: the free cores
        the choice wants are taken now, and the total is returned."""
        threads = self._threads_for(1 + self._pool.free, ready_batches, rows)
        return 1 + self._pool.take_free(threads - 1)

    def _ready_batches(self) -> int:
        """Batches the queue would make now."""
        if not self.signature.batchable:
            return len(self._queue)
        return math.ceil(self._queue.rows / self._max_rows())

    def _publish_config(self) -> None:
        for setting, value in self._config.as_dict().items():
            self._metrics.batching.labels(self.name, setting).set(value)

    async def warm_up(self) -> None:
        """Run example batches so first requests are not slow and predictions exist.

        Zero-filled inputs can be invalid for a data-dependent model: then the model is
        served cold, with a warning, rather than not at all.
        """
        await self.prepare_threads(self._pool.limit)
        sizes = sorted({1, self._config.max_batch_size if self.signature.batchable else 1})
        for wanted in self._model.threads_available[:self._pool.limit]:
            for rows in sizes:
                inputs = self._model.example_inputs(rows)
                for _ in range(_WARMUP_RUNS):
                    await self._pool.acquire()
                    threads = 1 + self._pool.take_free(wanted - 1)
                    try:
                        _, seconds = await self._pool.run(self._timed_run, inputs, threads)
                    except Exception as exc:
                        log.warning("model %s: warm-up on zero inputs failed, serving it "
                                    "cold: %s", self.name, exc)
                        return
                    finally:
                        self._pool.release(threads)
                    self._latency_by_threads.setdefault(threads, LatencyModel()).observe(
                        rows, seconds)

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

    def _max_rows(self) -> int:
        return self._config.max_batch_size if self.signature.batchable else 1

    def predicted_latency_s(self, now: float, rows: int, upstream: Backlog = NO_BACKLOG
                            ) -> float:
        """Pessimistic seconds from ``now`` until a new request of ``rows`` would be answered
        (what admission checks, and what a pipeline reserves for this stage).

        The mean work running and queued ahead, spread over the executors, then the new
        request's own batch with its deviation allowance. Every queued request counts as
        ahead: with equal budgets EDF is FIFO, and otherwise this errs on refusing. So does
        ``upstream``, what a pipeline has already admitted to its earlier stages: it
        reaches this queue first. With nothing running, queued or coming only the mean
        counts: predictions are learned from batches that run, so an idle model must try
        what might fit, or one bad estimate would have it refuse everything for ever.
        """
        cores = self._pool.limit
        if self.idle and not upstream.requests:
            return self.local_compute_s(rows)
        # Core-seconds: a batch running wide occupies all its threads' cores.
        running = sum(max(end - now, 0.0) * threads for end, threads in self._running.values())
        predict = self._estimator(1).predict
        if self.signature.batchable:
            # The new rows join the partial batch at the tail; the full ones go first.
            max_rows = self._max_rows()
            queued_rows = self._queue.rows + upstream.rows
            partial = queued_rows % max_rows
            ahead = batch_work_s(queued_rows - partial, max_rows, predict)
            ahead_batches = (queued_rows - partial) // max_rows
            own_rows = min(partial + rows, max(max_rows, rows))
        else:
            ahead_batches = len(self._queue) + upstream.requests
            ahead = ahead_batches * predict(rows)
            own_rows = rows
        threads = self._threads_for(cores, ahead_batches + 1, own_rows)
        own = self._estimator(threads).predict_upper(own_rows)
        return (running + ahead) / cores + own + DISPATCH_SLACK_S

    def local_compute_s(self, rows: int) -> float:
        """The compute time of a lone batch of ``rows`` with its dispatch: pessimistic,
        except on an idle model (see :meth:`predicted_latency_s`)."""
        latency = self._estimator(self._threads_for(self._pool.limit, 1, rows))
        seconds = latency.predict(rows) if self.idle else latency.predict_upper(rows)
        return seconds + DISPATCH_SLACK_S

    async def infer(self, request: InferenceRequest) -> dict[str, np.ndarray]:
        """Queue a validated request and wait for its outputs, or refuse it at once."""
        now = time.monotonic()
        self._arrivals.mark()
        if len(self._queue) >= self._max_queue_size:
            self._log_request(request, now, now, now, 0, "RESOURCE_EXHAUSTED")
            raise Overloaded(
                f"model '{self.name}': {len(self._queue)} requests already queued "
                f"(max {self._max_queue_size}); retry later or scale out"
            )
        predicted = self.predicted_latency_s(now, request.rows)
        if now + predicted > request.deadline:
            self._log_request(request, now, now, now, 0, "DEADLINE_EXCEEDED")
            raise DeadlineUnmeetable(
                f"model '{self.name}': {max(request.deadline - now, 0) * 1000:.2f} ms left, "
                f"an answer is predicted to take {predicted * 1000:.2f} ms "
                f"({len(self._queue)} requests queued, {len(self._running)} batches running)"
            )
        future: asyncio.Future[dict[str, np.ndarray]] = (
            asyncio.get_running_loop().create_future()
        )
        idle = self.idle
        pending = PendingRequest(request, future, now, key=batch_key(
            request, self.signature.batchable), probe=idle)
        if idle and self._arrivals.rate() * self._config.max_delay_s < 1.0 and (
                self._pool.try_acquire()):
            # What the batching loop would do with a lone request and a free executor
            # (start it at once), without the hop through the loop.
            self._launch([pending], now, self._widen(1, request.rows))
        else:
            self._queue.push(pending)
            self._wake.set()
        try:
            return await future
        except asyncio.CancelledError:
            if future.cancelled():  # the caller went away before an answer
                ended = time.monotonic()
                self._log_request(request, now, ended, ended, 0, "CANCELLED")
            raise

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
        now = time.monotonic()
        for pending in self._queue.drain():
            self._log_request(pending.request, pending.arrival, now, now, 0, error.code.name)
            pending.future.set_exception(error)

    async def _sleep_until(self, when: float) -> None:
        self._wake.clear()
        timer = asyncio.get_running_loop().call_at(when, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            timer.cancel()

    def _latest_start(self, pending: PendingRequest) -> float:
        """The last moment ``pending`` can start alone and still make its deadline.

        Judged by the same estimate that admitted it: pessimistic, or the mean for a probe;
        alone means with the threads a lone batch would get from every core.
        """
        latency = self._estimator(self._threads_for(self._pool.limit, 1, pending.rows))
        compute = latency.predict if pending.probe else latency.predict_upper
        return pending.deadline - compute(pending.rows) - DISPATCH_SLACK_S

    def _expire(self, now: float) -> PendingRequest | None:
        """Refuse queued requests that can no longer make their deadline; return the head."""
        while (head := self._queue.head()) is not None and self._latest_start(head) < now:
            for pending in self._queue.pop_batch(head.rows):
                self._refuse_expired(pending, now)
        return head

    def _refuse_expired(self, pending: PendingRequest, now: float) -> None:
        self._log_request(pending.request, pending.arrival, now, now, 0, "DEADLINE_EXCEEDED")
        pending.future.set_exception(DeadlineUnmeetable(
            f"model '{self.name}': deadline can no longer be met after "
            f"{(now - pending.arrival) * 1000:.1f} ms queued"
        ))

    async def _step(self) -> None:
        now = time.monotonic()
        head = self._expire(now)
        oldest = self._queue.oldest_arrival()
        if head is None or oldest is None:
            self._wake.clear()
            await self._wake.wait()
            return
        config = self._config
        max_rows = self._max_rows()
        expires = self._latest_start(head)
        start = dispatch_at(
            now, self._queue.rows_with_key(head.key), oldest, head.deadline,
            max_rows, config.max_delay_s, self._estimator(1).predict,
            idle_executor=self._pool.busy < self._pool.limit,
            arrival_rate_per_s=self._arrivals.rate(),
        )
        if start > now:
            await self._sleep_until(min(start, expires))
            return
        # While every executor is busy, wake when the head expires, to refuse it then
        # rather than after the running batches finish.
        if not await self._pool.acquire(timeout_s=max(expires - now, 0.0),
                                        order=head.request.order):
            return
        try:
            batch = self._take_batch(max_rows)
        except BaseException:
            self._pool.release()
            raise
        if not batch:
            self._pool.release()
            return
        threads = self._widen(1 + self._ready_batches(), sum(p.rows for p in batch))
        self._launch(batch, time.monotonic(), threads)

    def _launch(self, batch: list[PendingRequest], started: float, threads: int) -> None:
        """Compute ``batch`` on the ``threads`` cores the caller holds, as a task of its own."""
        task = asyncio.create_task(self._execute(batch, started, threads))
        rows = sum(p.rows for p in batch)
        self._running[task] = (started + self._estimator(threads).predict(rows), threads)
        task.add_done_callback(lambda done: self._running.pop(done, None))

    def _take_batch(self, max_rows: int) -> list[PendingRequest]:
        """Pop the next batch: no larger than fits the earliest deadline in it.

        Requests that cannot make their deadline even alone are refused first. Every
        request popped here is either returned or answered, whatever goes wrong.
        """
        popped: list[PendingRequest] = []
        try:
            now = time.monotonic()
            head = self._expire(now)
            if head is None:
                return []
            slack_s = head.deadline - now - DISPATCH_SLACK_S
            # Sized for the threads the queue's batches would get from the free cores.
            sizing = self._estimator(self._threads_for(
                1 + self._pool.free, self._ready_batches(), min(self._queue.rows, max_rows)))
            rows = sizing.largest_batch_within(
                slack_s, head.rows, max(max_rows, head.rows)
            )
            popped = self._queue.pop_batch(rows)
            return popped
        except BaseException:
            self._answer_unanswered(popped, f"model '{self.name}': batching failed")
            raise

    def _answer_unanswered(self, batch: list[PendingRequest], message: str) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(ModelFailure(message))

    def _timed_run(
        self, inputs: dict[str, np.ndarray], threads: int
    ) -> tuple[dict[str, np.ndarray], float]:
        started = time.perf_counter()
        outputs = self._model.run(inputs, threads)
        return outputs, time.perf_counter() - started

    async def _execute(self, batch: list[PendingRequest], started: float, threads: int) -> None:
        """Compute one batch and answer every request in it, on every path."""
        rows = [p.rows for p in batch]
        code = "INTERNAL"
        compute_s = 0.0
        try:
            try:
                outputs, compute_s = await self._pool.run(
                    self._timed_run, merge_inputs([p.request for p in batch]), threads
                )
                results = split_outputs(outputs, rows)
            except Exception as exc:  # the model's fault: this batch fails, the server goes on
                log.exception("model %s failed on a batch of %d rows", self.name, sum(rows))
                self._answer_unanswered(batch, f"model '{self.name}' failed on this batch: {exc}")
                compute_s = time.monotonic() - started
            else:
                code = "OK"
                self._latency_by_threads.setdefault(threads, LatencyModel()).observe(
                    sum(rows), compute_s)
                for pending, result in zip(batch, results, strict=True):
                    if not pending.future.done():  # done: the caller went away during compute
                        pending.future.set_result(
                            select_outputs(result, pending.request.requested_outputs)
                        )
        finally:
            self._pool.release(threads)
            self._wake.set()
            # Whatever failed above, no caller is left waiting.
            self._answer_unanswered(batch, f"model '{self.name}': internal error on this batch")
        try:
            self._batches.labels(self.name, str(threads)).inc()
            self._record_batch(batch, started, time.monotonic(), compute_s, code)
        except Exception:
            log.exception("model %s: recording a batch failed", self.name)

    def _record_batch(
        self, batch: list[PendingRequest], started: float, ended: float, compute_s: float,
        code: str,
    ) -> None:
        rows = sum(p.rows for p in batch)
        self._compute.observe(compute_s)
        self._batch_size.observe(rows)
        for pending in batch:
            self._queue_wait.observe(started - pending.arrival)
            if pending.future.cancelled():
                continue  # counted as cancelled by its caller's infer()
            self._log_request(pending.request, pending.arrival, started, ended, rows, code)
        if self._log.enabled:
            self._log.write({
                "event": "batch", "model": self.name, "start": self._log.wall(started),
                "end": self._log.wall(ended), "batch_size": rows,
                "requests": len(batch), "code": code,
            })

    def _log_request(
        self, request: InferenceRequest, arrival: float, start: float, end: float,
        batch_size: int, code: str,
    ) -> None:
        """Count the request's outcome at this model and write its request-log record."""
        outcome = OUTCOMES.get(code, "failed")
        if outcome == "ok":
            if end > request.deadline:
                outcome = "late"
            self._latency_hist.observe(end - arrival)
        self._outcomes[outcome].inc()
        if self._log.enabled:
            self._log.write({
                "event": "request", "model": self.name, "id": request.id,
                "arrival": self._log.wall(arrival), "start": self._log.wall(start),
                "end": self._log.wall(end), "deadline": self._log.wall(request.deadline),
                "batch_size": batch_size, "code": code,
            })
