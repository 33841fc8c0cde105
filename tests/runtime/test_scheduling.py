"""Batching, deadlines, overload, live reconfiguration and CPU following, seen from outside.

Orderings are made deterministic without timing assertions: one executor is held by a
"blocker" request with many rows while the requests under test queue up behind it.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest
from tritonclient.utils import InferenceServerException

from tests.runtime.harness import budget, infer, wait_until

BLOCKER_ROWS = 16384
WIDTH = 512


def slow_input(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((rows, WIDTH)).astype(np.float32)}


def held_executor(server, pool: ThreadPoolExecutor):
    """Submit the blocker and return once it is computing."""
    future = pool.submit(infer, server.client(), "slow", slow_input(BLOCKER_ROWS))
    wait_until(lambda: server.metric("sluice_executors_busy") == 1, what="blocker to run")
    return future


def rejection(call) -> str:
    try:
        call()
    except InferenceServerException as error:
        return f"{error.status()}: {error.message()}"
    return "OK"


def status_of(call) -> str:
    return rejection(call).split(":", 1)[0]


@pytest.fixture
def slow_server(start_runtime, test_models, tmp_path):
    log = tmp_path / "requests.jsonl"
    runtime = start_runtime(
        "--model", f"slow={test_models / 'slow.onnx'}", "--executors", "1",
        "--max-batch-size", "1", "--default-slo-ms", "600000", "--max-queue-size", "8",
        "--request-log", log,
    )
    runtime.request_log_path = log
    return runtime


def test_concurrent_requests_are_batched_and_split_back_to_their_callers(
        start_runtime, example_models):
    server = start_runtime("--model", f"mlp={example_models / 'mlp.onnx'}",
                           "--executors", "1", "--max-batch-size", "32", "--max-delay-ms", "20")
    session = ort.InferenceSession(str(example_models / "mlp.onnx"))
    inputs = [np.random.default_rng(i).standard_normal((1 + i % 3, 384)).astype(np.float32)
              for i in range(96)]
    local = threading.local()

    def call(x):
        if not hasattr(local, "client"):
            local.client = server.client()
        return infer(local.client, "mlp", {"features": x}).as_numpy("scores")

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, inputs))
    for x, got in zip(inputs, results, strict=True):
        np.testing.assert_allclose(got, session.run(None, {"features": x})[0], rtol=1e-5,
                                   atol=1e-6)
    rows = server.metric("sluice_batch_size_sum", model="mlp")
    batches = server.metric("sluice_batch_size_count", model="mlp")
    assert rows == sum(len(x) for x in inputs)
    assert rows / batches > 1, "no batching happened under concurrency"


def test_requests_of_different_shapes_are_never_batched_together(start_runtime, test_models):
    server = start_runtime("--model", f"row_sum={test_models / 'row_sum.onnx'}",
                           "--executors", "1", "--max-batch-size", "64", "--max-delay-ms", "20")
    inputs = [np.full((2, 3 + i % 4), float(i), np.float32) for i in range(48)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(
            lambda x: infer(server.client(), "row_sum", {"x": x}).as_numpy("s"), inputs))
    for x, got in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(got, x.sum(axis=1, keepdims=True))


def test_queue_is_served_earliest_deadline_first(slow_server):
    # Far beyond the blocker: the runtime predicts it from one measured size, pessimistically.
    budgets_ms = [500_000, 200_000, 600_000, 100_000, 400_000, 300_000]
    with ThreadPoolExecutor(8) as pool:
        blocker = held_executor(slow_server, pool)
        futures = []
        for i, ms in enumerate(budgets_ms):
            futures.append(pool.submit(
                infer, slow_server.client(), "slow", slow_input(1, i),
                request_id=f"r{ms}", parameters=budget(ms)))
            wait_until(lambda n=i + 1: slow_server.metric("sluice_queue_depth", model="slow") == n,
                       what="request to queue")
        blocker.result(timeout=300)
        for f in futures:
            f.result(timeout=300)
    records = [r for r in slow_server.request_log(slow_server.request_log_path)
               if r["event"] == "request" and r["id"].startswith("r")]
    started = [r["id"] for r in sorted(records, key=lambda r: r["start"])]
    assert started == [f"r{ms}" for ms in sorted(budgets_ms)]


def test_hopeless_request_is_rejected_before_compute(slow_server):
    computed = slow_server.metric("sluice_compute_seconds_count", model="slow")
    client = slow_server.client()
    by_budget = rejection(lambda: infer(client, "slow", slow_input(4096), parameters=budget(5)))
    by_grpc_deadline = rejection(lambda: infer(client, "slow", slow_input(4096),
                                               client_timeout=0.2))
    for outcome in (by_budget, by_grpc_deadline):
        assert outcome.startswith("StatusCode.DEADLINE_EXCEEDED")
        assert "predicted" in outcome  # the server's early rejection, not the client's timer
    assert slow_server.metric("sluice_compute_seconds_count", model="slow") == computed


def test_request_whose_deadline_passes_in_the_queue_is_dropped_not_computed(slow_server):
    with ThreadPoolExecutor(4) as pool:
        blocker = held_executor(slow_server, pool)
        doomed = pool.submit(status_of, lambda: infer(
            slow_server.client(), "slow", slow_input(1), parameters=budget(200)))
        assert doomed.result(timeout=300) == "StatusCode.DEADLINE_EXCEEDED"
        blocker.result(timeout=300)
    assert slow_server.metric("sluice_compute_seconds_count", model="slow") == 1


def test_full_queue_sheds_with_resource_exhausted(slow_server):
    with ThreadPoolExecutor(12) as pool:
        blocker = held_executor(slow_server, pool)
        queued = [pool.submit(infer, slow_server.client(), "slow", slow_input(1, i))
                  for i in range(8)]
        wait_until(lambda: slow_server.metric("sluice_queue_depth", model="slow") == 8,
                   what="queue to fill")
        shed = [status_of(lambda: infer(slow_server.client(), "slow", slow_input(1)))
                for _ in range(3)]
        assert shed == ["StatusCode.RESOURCE_EXHAUSTED"] * 3
        blocker.result(timeout=300)
        for f in queued:
            assert f.result(timeout=300).as_numpy("y").shape == (1, WIDTH)


def test_batching_is_reconfigured_live(slow_server):
    def batch_sizes_of_queued(count: int) -> list[int]:
        with ThreadPoolExecutor(count + 1) as pool:
            blocker = held_executor(slow_server, pool)
            futures = [pool.submit(infer, slow_server.client(), "slow", slow_input(1, i),
                                   request_id=f"q{i}") for i in range(count)]
            wait_until(lambda: slow_server.metric("sluice_queue_depth", model="slow") == count)
            blocker.result(timeout=300)
            for f in futures:
                f.result(timeout=300)
        records = slow_server.request_log(slow_server.request_log_path)
        slow_server.request_log_path.write_text("")
        return sorted(r["batch_size"] for r in records
                      if r["event"] == "request" and r["id"].startswith("q"))

    assert batch_sizes_of_queued(6) == [1] * 6
    status, body = slow_server.admin("PUT", "/v1/batching/slow", {"max_batch_size": 3})
    assert status == 200
    assert body["max_batch_size"] == 3
    assert batch_sizes_of_queued(6) == [3] * 6
    status, body = slow_server.admin("PUT", "/v1/batching/slow",
                                     {"max_delay_ms": 7.5, "default_slo_ms": 900000})
    assert status == 200
    assert slow_server.admin("GET", "/v1/batching")[1]["slow"] == {
        "max_batch_size": 3, "max_delay_ms": 7.5, "default_slo_ms": 900000}
    assert slow_server.metric("sluice_batching_config", model="slow",
                              setting="max_delay_ms") == 7.5


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/v1/batching/slow", {"max_batch_size": 0}, 400),
    ("/v1/batching/slow", {"max_batch_size": "big"}, 400),
    ("/v1/batching/slow", {"max_delay_ms": -1}, 400),
    ("/v1/batching/slow", {"default_slo_ms": 0}, 400),
    ("/v1/batching/slow", {"batch": 4}, 400),
    ("/v1/batching/slow", [1, 2], 400),
    ("/v1/batching/nope", {"max_batch_size": 2}, 404),
])
def test_invalid_reconfiguration_is_refused_and_changes_nothing(slow_server, path, body, status):
    before = slow_server.admin("GET", "/v1/batching")[1]
    got, reply = slow_server.admin("PUT", path, body)
    assert got == status
    assert "error" in reply
    assert slow_server.admin("GET", "/v1/batching")[1] == before


def test_parallelism_follows_the_cgroup_cpu_limit_without_failing_requests(
        start_runtime, example_models, tmp_path):
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    cpu_max = cgroup / "cpu.max"
    cpu_max.write_text("100000 100000\n")
    server = start_runtime("--model", f"mlp={example_models / 'mlp.onnx'}",
                           "--cgroup-root", cgroup, "--cpu-poll-interval-s", "0.1")
    assert server.metric("sluice_executors") == 1
    cores = len(os.sched_getaffinity(0))
    stop = threading.Event()
    outcomes: list[str] = []

    def load():
        client = server.client()
        x = {"features": np.ones((2, 384), np.float32)}
        while not stop.is_set():
            outcomes.append(status_of(lambda: infer(client, "mlp", x)))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for limit, expected in [("200000 100000", min(2, cores)), ("50000 100000", 1),
                                ("max 100000", cores), ("100000 100000", 1)]:
            cpu_max.write_text(limit + "\n")
            wait_until(lambda e=expected: server.metric("sluice_executors") == e,
                       what=f"executors to follow cpu.max={limit}")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert outcomes
    assert set(outcomes) == {"OK"}


def test_sigterm_drains_queued_and_running_requests_then_exits(slow_server):
    with ThreadPoolExecutor(8) as pool:
        blocker = held_executor(slow_server, pool)
        queued = [pool.submit(infer, slow_server.client(), "slow", slow_input(1, i))
                  for i in range(4)]
        wait_until(lambda: slow_server.metric("sluice_queue_depth", model="slow") == 4)
        slow_server.signal()
        wait_until(lambda: slow_server.health() != 1, what="health to leave SERVING")
        refused = status_of(lambda: infer(slow_server.client(), "slow", slow_input(1)))
        assert refused == "StatusCode.UNAVAILABLE"
        assert blocker.result(timeout=300).as_numpy("y").shape == (BLOCKER_ROWS, WIDTH)
        for f in queued:
            assert f.result(timeout=300).as_numpy("y").shape == (1, WIDTH)
    assert slow_server.wait(60) == 0


def test_one_copy_of_the_weights_whatever_the_parallelism(start_runtime, tmp_path):
    from tests.runtime.models import heavy

    path = heavy(tmp_path / "heavy.onnx", megabytes=200)

    def rss_mb(executors: int) -> float:
        server = start_runtime("--model", f"heavy={path}", "--executors", str(executors))
        x = {"x": np.ones((1, 1024), np.float32)}
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: infer(server.client(), "heavy", x), range(32)))
        # PSS, not VmRSS: each session maps the one weights file, and VmRSS counts a page
        # once per mapping; PSS divides it among them, as the page cache holds it once.
        rollup = f"/proc/{server.process.pid}/smaps_rollup"
        with open(rollup) as handle:
            kb = next(int(line.split()[1]) for line in handle if line.startswith("Pss:"))
        server.stop()
        return kb / 1024

    one, four = rss_mb(1), rss_mb(4)
    assert one > 200, f"weights not resident? PSS {one:.0f} MB"
    assert four - one < 100, f"PSS grew from {one:.0f} to {four:.0f} MB with 4 executors"
