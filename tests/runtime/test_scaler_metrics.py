"""What the scaler reads, checked against the requests that were sent.

Per-model outcomes (pipeline stages included), late answers, refusals by reason, cancelled
requests leaving the queue count, latency buckets around the SLO, the cgroup's CPU
accounting, and the learned profile at GET /v1/profile.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as triton
from sluice_runtime.metrics import slo_buckets_s

from tests.conftest import ROOT
from tests.runtime.cgroups import in_cgroup
from tests.runtime.harness import Runtime, budget, infer, wait_until
from tests.runtime.test_overload import BLOCKER_SPINS, spin_input
from tests.runtime.test_pipeline import ROOT_MANIFEST, overrides, utterances
from tests.runtime.test_scheduling import slow_input, status_of


def outcomes(server, model: str) -> dict[str, float]:
    return {labels[1][1]: value for (name, labels), value in server.metrics().items()
            if name == "sluice_model_requests_total" and dict(labels)["model"] == model}


def test_slo_buckets_are_dense_around_the_slo():
    buckets = slo_buckets_s(0.1)
    assert 0.1 in buckets
    assert 0.095 in buckets
    assert 0.105 in buckets
    assert buckets == tuple(sorted(buckets))
    assert slo_buckets_s(0.01)[0] == 0.0005


def test_outcomes_count_ok_late_and_each_refusal(start_runtime, test_models):
    server = start_runtime("--model", f"spinner={test_models / 'spinner.onnx'}",
                           "--model", f"slow={test_models / 'slow.onnx'}",
                           "--executors", "1", "--max-batch-size", "1",
                           "--max-queue-size", "1", "--default-slo-ms", "600000")
    client = server.client()
    for _ in range(3):
        infer(client, "spinner", spin_input(0), parameters=budget(60_000))
    # Warm-up taught the runtime the spinner is fast: admitted, then answered late.
    infer(client, "spinner", spin_input(BLOCKER_SPINS // 6), parameters=budget(100))
    assert status_of(lambda: infer(client, "slow", slow_input(1),
                                   parameters=budget(0.001))) == "StatusCode.DEADLINE_EXCEEDED"
    with ThreadPoolExecutor(3) as pool:
        blocker = pool.submit(infer, server.client(), "spinner", spin_input(BLOCKER_SPINS))
        wait_until(lambda: server.metric("sluice_executors_busy") == 1, what="blocker to run")
        queued = pool.submit(infer, server.client(), "slow", slow_input(1))
        wait_until(lambda: server.metric("sluice_queue_depth", model="slow") == 1)
        full = status_of(lambda: infer(server.client(), "slow", slow_input(1)))
        blocker.result(timeout=300)
        queued.result(timeout=300)
    assert full == "StatusCode.RESOURCE_EXHAUSTED"
    spinner, slow = outcomes(server, "spinner"), outcomes(server, "slow")
    assert spinner["ok"] == 4  # three quick ones and the blocker
    assert spinner["late"] == 1
    assert slow["ok"] == 1
    assert slow["refused_deadline"] == 1
    assert slow["refused_queue_full"] == 1
    assert slow["failed"] == slow["cancelled"] == spinner["failed"] == 0
    assert server.metric("sluice_late_answers_total", model="spinner") == 1
    assert server.metric("sluice_requests_total", model="spinner", code="OK") == 5


def test_a_cancelled_request_leaves_the_queue_count_at_once(start_runtime, test_models):
    server = start_runtime("--model", f"spinner={test_models / 'spinner.onnx'}",
                           "--executors", "1", "--max-batch-size", "1",
                           "--default-slo-ms", "600000")
    with ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(infer, server.client(), "spinner", spin_input(BLOCKER_SPINS))
        wait_until(lambda: server.metric("sluice_executors_busy") == 1, what="blocker to run")
        client = server.client()
        inputs = []
        for name, array in spin_input(0).items():
            tensor = triton.InferInput(name, list(array.shape),
                                       "FP32" if array.dtype == np.float32 else "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        done = threading.Event()
        call = client.async_infer("spinner", inputs, lambda *_: done.set())
        wait_until(lambda: server.metric("sluice_queue_depth", model="spinner") == 1)
        call.cancel()
        wait_until(lambda: server.metric("sluice_queue_depth", model="spinner") == 0,
                   what="the cancelled request to leave the queue count")
        assert not blocker.done(), "the count must drop before the blocker ends"
        blocker.result(timeout=300)
    assert outcomes(server, "spinner")["cancelled"] == 1


def test_fused_pipeline_stages_have_their_own_counts(start_runtime, example_models):
    server = start_runtime("--pipeline", ROOT / ROOT_MANIFEST, *overrides(example_models),
                           "--default-slo-ms", "100")
    for seed in range(3):
        infer(server.client(), "dialogue", {"utterance": utterances(4, seed)},
              parameters=budget(60_000))
    for stage in ("intent", "policy", "response"):
        assert outcomes(server, stage)["ok"] == 3, stage
        assert server.metric("sluice_model_latency_seconds_count", model=stage) == 3
    assert server.metric("sluice_requests_total", model="dialogue", code="OK") == 3
    # Buckets follow the SLO given: a p99 near 100 ms is read to 5 ms.
    assert ("sluice_request_duration_seconds_bucket",
            (("le", "0.095"), ("model", "dialogue"))) in server.metrics()


def test_profile_shows_learned_latency_and_parallelism(start_runtime, example_models):
    server = start_runtime("--model", f"mlp={example_models / 'mlp.onnx'}",
                           "--executors", "2", "--max-batch-size", "8")
    for rows in (1, 3):
        infer(server.client(), "mlp", {"features": np.ones((rows, 384), np.float32)})
    status, profile = server.admin("GET", "/v1/profile")
    assert status == 200
    assert profile["executors"] == 2
    assert profile["cpu_allocation_cores"] > 0
    learned = profile["models"]["mlp"]
    assert learned["threads_available"] == [1, 2]
    # Warm-up measures both thread counts at 1 and 8 rows; the 3 rows ran with one of them.
    by_threads = learned["threads"]
    assert set(by_threads) == {"1", "2"}
    assert all({"1", "8"} <= set(t["batch_seconds"]) for t in by_threads.values())
    assert any("3" in t["batch_seconds"] for t in by_threads.values())
    assert all(seconds > 0 for t in by_threads.values() for seconds in t["batch_seconds"].values())
    assert all(t["upper_ratio"] >= 1 for t in by_threads.values())


def test_cgroup_cpu_accounting_shows_use_and_throttling(child_cgroups, example_models,
                                                        tmp_path):
    runtime = Runtime(["--model", f"mlp={example_models / 'mlp.onnx'}"], tmp_path,
                      wrap=lambda command: in_cgroup(child_cgroups, command))
    runtime.start()
    try:
        before = runtime.metric("sluice_cgroup_cpu_throttled_periods_total")
        stop = time.monotonic() + 3

        def load():
            client = runtime.client()
            while time.monotonic() < stop:
                infer(client, "mlp", {"features": np.ones((64, 384), np.float32)})

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert runtime.metric("sluice_cgroup_cpu_usage_seconds_total") > 0
        throttled = runtime.metric("sluice_cgroup_cpu_throttled_periods_total")
        assert throttled > before, "half a core under four busy clients must be throttled"
        assert runtime.metric("sluice_cgroup_cpu_periods_total") >= throttled
    finally:
        runtime.stop()
