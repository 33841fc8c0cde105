"""Admission, expiry and every-request-answered, in process on a real event loop.

The pure parts (backlog arithmetic, the pessimistic latency estimate, the concurrency
limit, the queue's live counts) are table-tested; the executor pool and the batched
model run on a real asyncio loop with a real onnxruntime session.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from sluice_runtime.batcher import BatchedModel
from sluice_runtime.batching import EdfQueue, PendingRequest, batch_key, batch_work_s
from sluice_runtime.concurrency import ConcurrencyLimit
from sluice_runtime.executors import ExecutorPool
from sluice_runtime.latency import LatencyModel
from sluice_runtime.metrics import RuntimeMetrics
from sluice_runtime.model import OnnxModel
from sluice_runtime.pipeline import PipelineModel
from sluice_runtime.requestlog import RequestLog
from sluice_runtime.settings import BatchingConfig
from sluice_runtime.signature import InferenceRequest

from tests.runtime.test_units import FakeFuture


@pytest.mark.parametrize(("rows", "max_rows", "expected"), [
    (0, 8, 0.0),
    (3, 8, 0.3),      # one partial batch
    (8, 8, 0.8),      # one full batch
    (19, 8, 1.9),     # two full batches and a partial one of 3 rows
    (5, 1, 0.5),      # no batching: every row its own batch
])
def test_backlog_is_charged_as_full_batches_and_one_partial(rows, max_rows, expected):
    assert batch_work_s(rows, max_rows, lambda n: 0.1 * n) == pytest.approx(expected)


def test_pessimistic_estimate_is_a_high_quantile_of_measured_over_predicted():
    model = LatencyModel()
    model.observe(8, 0.010)
    assert model.predict_upper(8) == pytest.approx(0.010)  # nothing to doubt yet
    for _ in range(90):
        model.observe(8, model.predict(8))  # on the dot
    for _ in range(10):
        model.observe(8, 2 * model.predict(8))  # one batch in ten takes twice as long
    assert model.predict_upper(8) == pytest.approx(2 * model.predict(8), rel=0.05)
    # The ratio is pooled: a size seen once inherits it.
    model.observe(32, 0.040)
    assert model.predict_upper(32) > model.predict(32)
    # Recent batches replace old ones: a quiet spell brings the estimate back down.
    for _ in range(100):
        model.observe(8, model.predict(8))
    assert model.predict_upper(8) == pytest.approx(model.predict(8), rel=0.01)


def test_largest_batch_that_fits_a_deadline():
    model = LatencyModel()
    model.observe(1, 0.001)
    model.observe(32, 0.032)
    assert model.largest_batch_within(0.0105, 1, 32) == 10
    assert model.largest_batch_within(1.0, 1, 32) == 32
    assert model.largest_batch_within(0.0001, 4, 32) == 4  # nothing fits: the minimum


def pending(deadline: float, rows: int = 1) -> PendingRequest:
    request = InferenceRequest("m", {"x": np.zeros((rows, 4), np.float32)}, (), deadline)
    return PendingRequest(request, FakeFuture(), 0.0, batch_key(request, True))


def test_queue_counts_only_requests_still_wanted():
    queue = EdfQueue()
    kept, cancelled = pending(1.0, rows=3), pending(2.0, rows=5)
    queue.push(kept)
    queue.push(cancelled)
    assert (len(queue), queue.rows) == (2, 8)
    cancelled.future.cancel()
    assert (len(queue), queue.rows) == (1, 3)
    assert queue.pop_batch(8) == [kept]
    assert (len(queue), queue.rows) == (0, 0)


def test_concurrency_limit_narrows_on_refusals_once_per_round_trip_and_widens_on_answers():
    limit = ConcurrencyLimit()
    limit.in_flight = 500
    assert not limit.full  # unlimited until a refusal says otherwise
    limit.answered(round_trip_s=0.1)
    limit.in_flight = 10
    limit.refused(now_s=5.0)  # refused with 10 in flight: just below that
    assert limit.limit == pytest.approx(8.0)
    assert limit.full
    limit.refused(now_s=5.05)  # the same burst: within one round trip
    assert limit.limit == pytest.approx(8.0)
    limit.refused(now_s=5.2)
    assert limit.limit == pytest.approx(6.4)
    limit.in_flight = 0
    limit.answered(round_trip_s=0.1)  # little in flight: the limit did not hold it back
    assert limit.limit == pytest.approx(6.4)
    limit.in_flight = 6
    limit.answered(round_trip_s=0.1)
    assert limit.limit == pytest.approx(6.4 + 1 / 6.4)
    for step in range(100):
        limit.refused(now_s=10.0 + step)
    assert limit.limit == limit.minimum


def test_a_waiter_cancelled_after_admission_skipped_it_leaves_the_pool_consistent():
    async def scenario() -> None:
        pool = ExecutorPool(1)
        assert await pool.acquire()
        waiter = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0)
        # Cancelled and released in the same tick: the release pops the waiter first.
        waiter.cancel()
        pool.release()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert pool.busy == 0
        assert await asyncio.wait_for(pool.acquire(), 5)
        assert pool.busy == 1

    asyncio.run(scenario())


def test_acquire_gives_up_at_its_timeout_and_leaves_no_waiter_behind():
    async def scenario() -> None:
        pool = ExecutorPool(1)
        assert await pool.acquire()
        assert not await pool.acquire(timeout_s=0.01)
        pool.release()
        assert pool.busy == 0
        assert await pool.acquire(timeout_s=0.01)  # free again: no stale waiter ahead

    asyncio.run(scenario())


class FailingRecordLog(RequestLog):
    """Fault injection: a request log whose writes raise a bug-like error.

    A real log only fails with OSError, which RequestLog absorbs (see the /dev/full
    test); this stands for any bug in the code that runs after a batch is computed.
    """

    def __init__(self) -> None:
        super().__init__(None)

    @property
    def enabled(self) -> bool:
        return True

    def write(self, record: dict) -> None:
        raise RuntimeError("injected failure while recording")


def test_every_request_of_a_batch_is_answered_even_when_recording_it_fails(tmp_path: Path):
    from tests.runtime.models import slow

    async def scenario() -> list[object]:
        pool = ExecutorPool(1)
        model = OnnxModel("slow", slow(tmp_path / "slow.onnx", width=16, layers=1),
                          tmp_path / "cache")
        batcher = BatchedModel(model, BatchingConfig(max_batch_size=4, max_delay_ms=5.0),
                               pool, RuntimeMetrics(), FailingRecordLog(), max_queue_size=64)
        await batcher.warm_up()
        batcher.start()
        deadline = time.monotonic() + 60
        requests = [
            InferenceRequest("slow", {"x": np.full((1, 16), i, np.float32)}, (), deadline)
            for i in range(8)
        ]
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(batcher.infer(r) for r in requests), return_exceptions=True),
                30,
            )
        finally:
            await batcher.stop()
            pool.shutdown()

    results = asyncio.run(scenario())
    assert all(isinstance(r, dict) for r in results), results


def test_one_stall_of_a_later_stage_does_not_shut_an_idle_pipeline(tmp_path: Path):
    # What each stage reserves for the later ones is pessimistic, but an idle stage's is
    # its mean: nothing running there would ever correct a stalled estimate, and every
    # request would be refused at the entrance for ever.
    from tests.runtime.models import slow

    async def scenario() -> dict[str, np.ndarray]:
        pool = ExecutorPool(1)
        stages = []
        for name in ("first", "second"):
            model = OnnxModel(name, slow(tmp_path / f"{name}.onnx", width=16, layers=1),
                              tmp_path / "cache")
            stage = BatchedModel(model, BatchingConfig(max_batch_size=4, max_delay_ms=0.0),
                                 pool, RuntimeMetrics(), RequestLog(None), max_queue_size=64)
            await stage.warm_up()
            stage.start()
            stages.append(stage)
        # A stall no real part produces on demand (a page-in, a descheduled core): one
        # batch of the second stage measured at a thousand times its mean.
        latency = stages[1]._latency_by_threads[1]
        latency.observe(1, 1000 * latency.predict(1))
        assert latency.predict_upper(1) > 1.0 > latency.predict(1)
        pipeline = PipelineModel("two", stages, default_slo_ms=1000.0)
        request = InferenceRequest("two", {"x": np.ones((1, 16), np.float32)}, (),
                                   time.monotonic() + 1.0)
        try:
            return await asyncio.wait_for(pipeline.infer(request), 30)
        finally:
            for stage in stages:
                await stage.stop()
            pool.shutdown()

    assert asyncio.run(scenario())["y"].shape == (1, 16)
