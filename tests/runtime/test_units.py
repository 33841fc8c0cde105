"""Pure parts of the runtime: queue order, dispatch rule, merge/split, predictions, CPU."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from packaging.version import Version
from sluice_core.cores import executors_for
from sluice_runtime.batching import (
    EdfQueue,
    PendingRequest,
    batch_key,
    dispatch_at,
    merge_inputs,
    split_outputs,
)
from sluice_runtime.cpu import cpu_allocation
from sluice_runtime.latency import LatencyModel
from sluice_runtime.pipeline import shapes_compatible
from sluice_runtime.settings import BatchingConfig
from sluice_runtime.signature import InferenceRequest

from tests.conftest import ROOT
from tests.runtime.stubs import GENERATOR, pinned_generator_version


class FakeFuture:
    """Stands in for an asyncio future: done(), cancel() and its callbacks matter to the queue."""

    def __init__(self) -> None:
        self.cancelled = False
        self._callbacks = []

    def done(self) -> bool:
        return self.cancelled

    def add_done_callback(self, callback) -> None:
        self._callbacks.append(callback)

    def cancel(self) -> None:
        self.cancelled = True
        for callback in self._callbacks:
            callback(self)


def pending(deadline: float, rows: int = 1, width: int = 4, arrival: float = 0.0):
    request = InferenceRequest("m", {"x": np.zeros((rows, width), np.float32)}, (), deadline)
    return PendingRequest(request, FakeFuture(), arrival, batch_key(request, True))


def test_queue_pops_earliest_deadline_first_up_to_max_rows():
    queue = EdfQueue()
    items = [pending(d) for d in (5.0, 1.0, 4.0, 2.0, 3.0)]
    for item in items:
        queue.push(item)
    assert [p.deadline for p in queue.pop_batch(3)] == [1.0, 2.0, 3.0]
    assert [p.deadline for p in queue.pop_batch(3)] == [4.0, 5.0]
    assert len(queue) == 0


def test_a_pipeline_stage_queue_serves_requests_in_the_order_of_their_own_deadlines():
    # A stage deadline is the request's less what later stages are predicted to take; a
    # request admitted later against a longer predicted backlog gets an earlier one, and
    # must not overtake those ahead of it, or they are refused at the next stage.
    queue = EdfQueue()
    ahead = InferenceRequest("m", {"x": np.zeros((1, 4), np.float32)}, (), 3.0,
                             end_to_end_deadline=5.0)
    behind = InferenceRequest("m", {"x": np.zeros((1, 4), np.float32)}, (), 2.0,
                              end_to_end_deadline=6.0)
    for request in (behind, ahead):
        queue.push(PendingRequest(request, FakeFuture(), 0.0, batch_key(request, True)))
    assert queue.head().request is ahead
    assert [p.request for p in queue.pop_batch(1)] == [ahead]


def test_queue_never_mixes_shapes_and_picks_the_group_of_the_earliest_deadline():
    queue = EdfQueue()
    queue.push(pending(3.0, width=4))
    queue.push(pending(1.0, width=8))
    queue.push(pending(2.0, width=4))
    queue.push(pending(4.0, width=8))
    first = queue.pop_batch(10)
    assert [(p.deadline, p.request.inputs["x"].shape[1]) for p in first] == [(1.0, 8), (4.0, 8)]
    assert [p.deadline for p in queue.pop_batch(10)] == [2.0, 3.0]


def test_queue_counts_rows_and_takes_an_oversized_request_alone():
    queue = EdfQueue()
    queue.push(pending(1.0, rows=10))
    queue.push(pending(2.0, rows=2))
    assert queue.rows_with_key(batch_key(pending(0).request, True)) == 12
    assert [p.rows for p in queue.pop_batch(4)] == [10]
    assert [p.rows for p in queue.pop_batch(4)] == [2]


def test_cancelled_requests_are_dropped_before_they_reach_a_batch():
    queue = EdfQueue()
    items = [pending(d, arrival=d) for d in (1.0, 2.0, 3.0)]
    for item in items:
        queue.push(item)
    items[0].future.cancel()
    assert queue.oldest_arrival() == 2.0
    assert [p.deadline for p in queue.pop_batch(5)] == [2.0, 3.0]
    assert len(queue) == 0
    assert queue.head() is None


def test_unbatchable_models_get_one_request_per_batch():
    queue = EdfQueue()
    for d in (1.0, 2.0):
        request = InferenceRequest("m", {"x": np.zeros(4, np.float32)}, (), d)
        queue.push(PendingRequest(request, FakeFuture(), 0.0, batch_key(request, False)))
    assert len(queue.pop_batch(8)) == 1


@pytest.mark.parametrize(("queued", "oldest", "deadline", "expected"), [
    (8, 0.0, 100.0, 10.0),   # full batch: now
    (2, 9.0, 100.0, 9.005),  # wait out max delay
    (2, 10.0, 10.203, 10.203 - 0.2 - 0.0005),  # the deadline starts it before max delay
    (2, 10.0, 10.1, 10.1 - 0.2 - 0.0005),  # already late: start now (a time <= now)
])
def test_dispatch_time(queued, oldest, deadline, expected):
    got = dispatch_at(10.0, queued, oldest, deadline, 8, 0.005, lambda rows: 0.1 * rows)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(("rate", "expected"), [
    (100.0, 10.0),    # 0.5 arrivals expected in the 5 ms wait: an idle executor starts now
    (1000.0, 10.005),  # 5 expected: worth waiting for
])
def test_idle_executor_starts_a_lone_request_unless_more_are_expected(rate, expected):
    got = dispatch_at(10.0, 1, 10.0, 100.0, 8, 0.005, lambda rows: 0.001,
                      idle_executor=True, arrival_rate_per_s=rate)
    assert got == pytest.approx(expected)


def test_merge_and_split_round_trip_and_check_row_counts():
    requests = [InferenceRequest("m", {"x": np.full((n, 2), n, np.float32)}, (), 0.0)
                for n in (1, 3, 2)]
    merged = merge_inputs(requests)
    assert merged["x"].shape == (6, 2)
    parts = split_outputs({"y": merged["x"] * 2}, [1, 3, 2])
    for request, part in zip(requests, parts, strict=True):
        np.testing.assert_array_equal(part["y"], request.inputs["x"] * 2)
    with pytest.raises(ValueError, match="output 'y'"):
        split_outputs({"y": np.zeros((5, 2))}, [1, 3, 2])


def test_latency_model_interpolates_and_extrapolates():
    model = LatencyModel()
    assert model.predict(4) == 0.0
    model.observe(1, 0.001)
    assert model.predict(8) == pytest.approx(0.008)
    model.observe(8, 0.004)
    assert model.predict(4) == pytest.approx(0.001 + 3 / 7 * 0.003)
    assert model.predict(16) == pytest.approx(0.004 + 8 * 0.003 / 7)
    model.observe(8, 0.014)
    assert model.predict(8) == pytest.approx(0.006)


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_cpu_allocation_reads_cgroup_v2_then_v1_then_affinity(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    write(tmp_path / "v2", "cpu.max", "50000 100000\n")
    assert cpu_allocation(tmp_path / "v2") == 0.5
    write(tmp_path / "v2max", "cpu.max", "max 100000\n")
    assert cpu_allocation(tmp_path / "v2max") == affinity
    write(tmp_path / "v1" / "cpu", "cpu.cfs_quota_us", "150000\n")
    write(tmp_path / "v1" / "cpu", "cpu.cfs_period_us", "100000\n")
    assert cpu_allocation(tmp_path / "v1") == min(1.5, affinity)
    write(tmp_path / "v1none" / "cpu", "cpu.cfs_quota_us", "-1\n")
    write(tmp_path / "v1none" / "cpu", "cpu.cfs_period_us", "100000\n")
    assert cpu_allocation(tmp_path / "v1none") == affinity
    assert cpu_allocation(tmp_path / "absent") == affinity


@pytest.mark.parametrize(("cores", "executors"), [(0.1, 1), (0.5, 1), (1.0, 1), (1.49, 1),
                                                  (1.5, 2), (2.0, 2), (3.7, 4)])
def test_executors_for(cores, executors):
    assert executors_for(cores) == executors


@pytest.mark.parametrize(("changes", "message"), [
    ({"max_batch_size": 0}, "max_batch_size"),
    ({"max_batch_size": 2.5}, "max_batch_size"),
    ({"max_batch_size": True}, "max_batch_size"),
    ({"max_delay_ms": -1}, "max_delay_ms"),
    ({"max_delay_ms": "1"}, "max_delay_ms"),
    ({"default_slo_ms": 0}, "default_slo_ms"),
    ({"speed": 1}, "unknown"),
])
def test_batching_config_rejects_bad_values_naming_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        BatchingConfig().updated(changes)


@pytest.mark.parametrize(("produced", "accepted", "ok"), [
    ((-1, 32), (-1, 32), True), ((-1, 32), (-1, -1), True), ((-1, 32), (-1, 64), False),
    ((-1, 32), (-1, 32, 1), False),
])
def test_shapes_compatible(produced, accepted, ok):
    assert shapes_compatible(produced, accepted) is ok


def test_executor_pool_limit_follows_resize_without_interrupting_running_work():
    from sluice_runtime.executors import ExecutorPool

    async def scenario():
        pool = ExecutorPool(2)
        await pool.acquire()
        await pool.acquire()
        pool.resize(1)
        waiter = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0)
        pool.release()  # two ran, limit is now one: the waiter still waits
        await asyncio.sleep(0)
        assert not waiter.done()
        pool.release()
        await asyncio.wait_for(waiter, 5)
        assert pool.busy == 1
        pool.shutdown()

    asyncio.run(scenario())


def test_executor_pool_serves_the_waiter_with_the_earliest_deadline_first():
    # The models of a fused pipeline share the cores: a later stage's batch for a request
    # near its deadline must not queue behind the first stage's batch for a newer one.
    from sluice_runtime.executors import ExecutorPool

    async def scenario():
        pool = ExecutorPool(1)
        await pool.acquire()
        newer = asyncio.create_task(pool.acquire(order=5.0))
        await asyncio.sleep(0)
        older = asyncio.create_task(pool.acquire(order=1.0))
        await asyncio.sleep(0)
        pool.release()
        await asyncio.wait_for(older, 5)
        assert not newer.done()
        pool.release()
        await asyncio.wait_for(newer, 5)
        pool.shutdown()

    asyncio.run(scenario())


def test_committed_protocol_stubs_are_current(tmp_path):
    # Another generator writes other stubs: say the venv is out of step rather than
    # blaming the committed files and sending someone to `make proto` with the wrong tool.
    installed = Version(importlib.metadata.version(GENERATOR))
    assert installed == pinned_generator_version(), (
        f"{GENERATOR} {installed} is installed, pyproject.toml pins "
        f"{pinned_generator_version()}: run .venv/bin/pip install -e '.[dev]'")
    proto = Path("sluice_runtime/protocol/inference.proto")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", str(proto)],
        cwd=ROOT / "runtime", check=True,
    )
    for name in ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py"):
        generated = (tmp_path / proto.parent / name).read_text()
        committed = (ROOT / "runtime" / proto.parent / name).read_text()
        assert generated == committed, f"{name} is stale: run `make proto`"
