"""Overload, seen from outside: what is admitted finishes in time, the rest is refused at once.

No timing assertions: each test makes an ordering certain by holding the one executor
with a request that computes for seconds, and judges "late" and "at once" from the
runtime's own request log (arrival, start, end and deadline of every request).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.runtime.harness import budget, infer, wait_until
from tests.runtime.test_pipeline import ROOT_MANIFEST, overrides, utterances
from tests.runtime.test_scheduling import rejection, slow_input, status_of

SPIN_WIDTH = 64
# About three seconds of Loop iterations: far longer than any budget used below.
BLOCKER_SPINS = 3_000_000


def spin_input(spins: int, rows: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.ones((rows, SPIN_WIDTH), np.float32),
            "spins": np.full((rows, 1), spins, np.int64)}


def records(server, log) -> dict[str, dict]:
    return {r["id"]: r for r in server.request_log(log) if r["event"] == "request"}


def late_and_refused(entries) -> tuple[list[dict], list[dict], list[dict]]:
    ok = [r for r in entries if r["code"] == "OK"]
    late = [r for r in ok if r["end"] > r["deadline"]]
    refused = [r for r in entries if r["code"] == "DEADLINE_EXCEEDED"]
    return ok, late, refused


@pytest.fixture
def logged(start_runtime, tmp_path):
    """Start a runtime that writes its request log; returns (runtime, log path)."""

    def start(*args):
        log = tmp_path / f"requests-{len(list(tmp_path.glob('requests-*')))}.jsonl"
        return start_runtime(*args, "--request-log", log), log

    return start


def test_request_that_cannot_finish_behind_running_work_is_refused_at_once(
        logged, test_models):
    server, log = logged("--model", f"slow={test_models / 'slow.onnx'}", "--executors", "1",
                         "--max-batch-size", "1", "--default-slo-ms", "600000")
    with ThreadPoolExecutor(2) as pool:
        blocker = pool.submit(infer, server.client(), "slow", slow_input(16384),
                              request_id="blocker")
        wait_until(lambda: server.metric("sluice_executors_busy") == 1, what="blocker to run")
        outcome = rejection(lambda: infer(server.client(), "slow", slow_input(1),
                                          request_id="hopeless", parameters=budget(200)))
        blocker.result(timeout=300)
    assert outcome.startswith("StatusCode.DEADLINE_EXCEEDED")
    assert "predicted" in outcome
    assert "batches running" in outcome
    seen = records(server, log)
    assert seen["hopeless"]["end"] < seen["blocker"]["end"], "refused only after the wait"
    assert seen["hopeless"]["batch_size"] == 0


def test_queued_request_is_refused_when_its_deadline_passes_even_with_executors_busy(
        logged, test_models):
    # The spinner's warm-up on zero inputs teaches the runtime that it is fast: the
    # queued request is admitted, and only the sweep can refuse it before the blocker ends.
    server, log = logged("--model", f"spinner={test_models / 'spinner.onnx'}",
                         "--executors", "1", "--max-batch-size", "1",
                         "--default-slo-ms", "600000")
    with ThreadPoolExecutor(2) as pool:
        blocker = pool.submit(infer, server.client(), "spinner", spin_input(BLOCKER_SPINS),
                              request_id="blocker")
        wait_until(lambda: server.metric("sluice_executors_busy") == 1, what="blocker to run")
        outcome = status_of(lambda: infer(server.client(), "spinner", spin_input(0),
                                          request_id="doomed", parameters=budget(300)))
        assert blocker.result(timeout=300).as_numpy("y").shape == (1, SPIN_WIDTH)
    assert outcome == "StatusCode.DEADLINE_EXCEEDED"
    seen = records(server, log)
    assert seen["doomed"]["start"] > seen["doomed"]["arrival"], "it was admitted and queued"
    assert seen["doomed"]["end"] < seen["blocker"]["end"], "refused only after the blocker"
    assert server.metric("sluice_compute_seconds_count", model="spinner") == 1


def test_under_overload_what_is_admitted_finishes_in_time(logged, test_models):
    server, log = logged("--model", f"slow={test_models / 'slow.onnx'}", "--executors", "1",
                         "--max-batch-size", "8", "--max-delay-ms", "2")
    local = threading.local()

    def client_loop(index: int) -> list[str]:
        if not hasattr(local, "client"):
            local.client = server.client()
        return [status_of(lambda i=i: infer(local.client, "slow", slow_input(64, i),
                                            request_id=f"c{index}-{i}",
                                            parameters=budget(100)))
                for i in range(6)]

    with ThreadPoolExecutor(40) as pool:
        outcomes = [s for result in pool.map(client_loop, range(40)) for s in result]
    assert set(outcomes) <= {"OK", "StatusCode.DEADLINE_EXCEEDED"}
    ok, late, refused = late_and_refused(records(server, log).values())
    assert ok, "nothing was served"
    assert len(ok) == outcomes.count("OK")
    assert refused, "40 clients on one executor should overload it"
    # Before admission counted the work ahead, a quarter of the answers here were late;
    # a few percent allows for a noisy shared machine.
    assert len(late) <= max(2, len(ok) // 20), f"{len(late)} of {len(ok)} answers were late"
    at_once = [r for r in refused if r["batch_size"] == 0 and r["start"] == r["arrival"]]
    assert at_once, "no request was refused on arrival"


def test_a_fused_pipeline_refuses_at_its_entrance_what_a_later_stage_cannot_serve(
        logged, example_models):
    server, log = logged("--pipeline", ROOT / ROOT_MANIFEST, *overrides(example_models),
                         "--executors", "1")
    local = threading.local()

    def call(request_id: str, seed: int, budget_ms: int) -> str:
        if not hasattr(local, "client"):
            local.client = server.client()
        return status_of(lambda: infer(
            local.client, "dialogue", {"utterance": utterances(256, seed=seed)},
            request_id=request_id, parameters=budget(budget_ms)))

    # The stages learn their time at 256 rows first: until a size has been measured it is
    # extrapolated from the warm-up's sizes, and the claim here is about a pipeline that
    # knows its stages (a cold size's first requests are a separate, known transient).
    for seed in range(3):
        assert call(f"learn-{seed}", seed, 60_000) == "OK"
    # Open-loop arrivals at three times what the stages serve one after another on their
    # one executor (timed at their quickest: noise only slows). Clients that resend the
    # moment they are refused would spend both shared cores on sending and refusing, and
    # slow the compute admitted before that storm began to several times its prediction.
    compute_s = min(
        sum(r["end"] - r["start"] for r in server.request_log(log)
            if r["event"] == "request" and r["id"] == f"learn-{seed}")
        for seed in range(3))
    # Budgets of about two requests' compute (40 ms here), so a slower machine is tested
    # in the same regime rather than refusing everything.
    budget_ms = max(40, round(2 * compute_s * 1000))
    with ThreadPoolExecutor(32) as pool:
        started = time.monotonic()
        futures = {}
        for i in range(180):
            time.sleep(max(0.0, started + i * compute_s / 3 - time.monotonic()))
            futures[f"c{i}"] = pool.submit(call, f"c{i}", i, budget_ms)
        outcomes = {request_id: f.result() for request_id, f in futures.items()}
    # Refused for its deadline, or at the entrance for the pipeline's concurrency limit.
    assert "OK" in outcomes.values()
    assert set(outcomes.values()) - {"OK"} <= {"StatusCode.DEADLINE_EXCEEDED",
                                               "StatusCode.RESOURCE_EXHAUSTED"}
    entries = [r for r in server.request_log(log)
               if r["event"] == "request" and not r["id"].startswith("learn-")]
    computed_first = {r["id"] for r in entries if r["model"] == "intent" and r["code"] == "OK"}
    refused = {i for i, status in outcomes.items() if status != "OK"}
    assert len(refused) >= len(outcomes) // 4, "three times what it serves should overload it"
    wasted = refused & computed_first
    # Refused before the first stage computed anything, not after two stages' work. Judged
    # by each stage's own queue alone, 40-75% of the refusals came after the first stage's
    # work; a fifth before the look-ahead counted what earlier stages had admitted and
    # stages served requests in their own order; 0-12% now, depending on what else the
    # two cores run (requests admitted with little to spare, refused when the work ahead
    # runs a little slow). bench/overload.py measures the rest; this holds the design.
    assert len(wasted) <= len(refused) // 4, f"{len(wasted)} of {len(refused)} refused late"
    # The last stage's deadline is the request's end-to-end deadline.
    ok, late, _ = late_and_refused([r for r in entries if r["model"] == "response"])
    assert len(ok) == list(outcomes.values()).count("OK")
    # Before admission counted the work ahead, a quarter of the answers here were late;
    # a tenth allows for a noisy shared machine.
    assert len(late) <= max(3, len(ok) // 10), f"{len(late)} of {len(ok)} answers were late"
