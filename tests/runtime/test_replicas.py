"""Several runtimes behind one stage: balanced, changed while serving, none lost."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.runtime.harness import infer, wait_until
from tests.runtime.test_pipeline import ROOT_MANIFEST, STAGES, by_hand, utterances


def served(runtime, stage: str) -> float:
    return runtime.metric("sluice_model_requests_total", model=stage, outcome="ok")


@pytest.fixture
def stages(start_runtime, example_models):
    """Two runtimes serving 'intent', one each for the other stages."""
    def stage(name):
        return start_runtime("--model", f"{name}={example_models / (name + '.onnx')}")

    return {"intent": [stage("intent"), stage("intent")],
            **{name: [stage(name)] for name in STAGES[1:]}}


def router_for(start_runtime, stages, intent):
    remotes = [f"--remote=intent={','.join(r.url for r in intent)}"]
    remotes += [f"--remote={name}={stages[name][0].url}" for name in STAGES[1:]]
    return start_runtime("--pipeline", ROOT / ROOT_MANIFEST, *remotes,
                         "--default-slo-ms", "60000")


def ask(router, seed: int) -> np.ndarray:
    return infer(router.client(), "dialogue",
                 {"utterance": utterances(2, seed)}).as_numpy("tokens")


def test_requests_are_spread_over_replicas_and_answers_stay_right(
        start_runtime, stages, example_models):
    router = router_for(start_runtime, stages, stages["intent"])
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda seed: (seed, ask(router, seed)), range(48)))
    for seed, tokens in results:
        np.testing.assert_array_equal(tokens, by_hand(example_models, utterances(2, seed)))
    first, second = (served(r, "intent") for r in stages["intent"])
    assert first + second == 48
    assert first > 0
    assert second > 0
    listed = router.admin("GET", "/v1/stages")[1]["intent"]
    assert {r["address"] for r in listed} == {r.url for r in stages["intent"]}
    assert all(r["ready"] for r in listed)


def test_replicas_change_while_serving_and_none_is_lost(start_runtime, stages):
    first, second = stages["intent"]
    router = router_for(start_runtime, stages, [first])
    outcomes: list[str] = []
    stop = threading.Event()

    def load(seed: int) -> None:
        client = router.client()
        while not stop.is_set():
            try:
                infer(client, "dialogue", {"utterance": utterances(2, seed)})
                outcomes.append("OK")
            except Exception as error:  # every failure is a finding here
                outcomes.append(str(error))

    threads = [threading.Thread(target=load, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    try:
        status, body = router.admin("PUT", "/v1/stages/intent/replicas",
                                    {"replicas": [first.url, second.url]})
        assert status == 202, body
        wait_until(lambda: served(second, "intent") > 0, what="the new replica to serve")
        status, _ = router.admin("PUT", "/v1/stages/intent/replicas",
                                 {"replicas": [second.url]})
        assert status == 202
        wait_until(lambda: [r["address"] for r in router.admin("GET", "/v1/stages")[1][
            "intent"]] == [second.url], what="the removed replica to drain")
        after_removal = served(first, "intent")
        before = len(outcomes)
        wait_until(lambda: len(outcomes) > before + 20, what="more requests after removal")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert set(outcomes) == {"OK"}, [o for o in outcomes if o != "OK"][:3]
    assert served(first, "intent") == after_removal, "a removed replica got new requests"


def test_a_replica_that_goes_away_is_skipped(start_runtime, stages):
    first, second = stages["intent"]
    router = router_for(start_runtime, stages, [first, second])
    for seed in range(6):
        ask(router, seed)
    first.stop()  # SIGTERM: it drains, then its port is closed
    for seed in range(12):
        ask(router, seed)  # every one answered: the router tries the other replica
    listed = {r["address"]: r for r in router.admin("GET", "/v1/stages")[1]["intent"]}
    assert listed[first.url]["ready"] is False
    assert listed[second.url]["ready"] is True


@pytest.mark.parametrize("body", [{}, {"replicas": []}, {"replicas": ["nocolon"]},
                                  {"replicas": ["a:1", "a:1"]}, {"replicas": "a:1"}])
def test_bad_replica_sets_are_refused_and_change_nothing(start_runtime, stages, body):
    router = router_for(start_runtime, stages, stages["intent"])
    before = router.admin("GET", "/v1/stages")[1]
    status, reply = router.admin("PUT", "/v1/stages/intent/replicas", body)
    assert status == 400
    assert "replicas" in reply["error"]
    assert router.admin("GET", "/v1/stages")[1] == before
    assert router.admin("PUT", "/v1/stages/nope/replicas", {"replicas": ["a:1"]})[0] == 404


def test_a_remote_model_without_a_pipeline_balances_whole_requests(
        start_runtime, example_models):
    """``--remote NAME=...`` alone serves NAME from its replicas: the load balancer in front
    of fused replicas (each the whole pipeline in one process), as Knative's would be."""
    models = [f"--model={name}={example_models / (name + '.onnx')}" for name in STAGES]
    fused = [start_runtime("--pipeline", ROOT / ROOT_MANIFEST, *models) for _ in range(2)]
    balancer = start_runtime(f"--remote=dialogue={','.join(r.url for r in fused)}",
                             "--default-slo-ms", "60000")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda seed: (seed, ask(balancer, seed)), range(24)))
    for seed, tokens in results:
        np.testing.assert_array_equal(tokens, by_hand(example_models, utterances(2, seed)))
    per_replica = [r.metric("sluice_requests_total", model="dialogue", code="OK")
                   for r in fused]
    assert sum(per_replica) == 24
    assert min(per_replica) > 0
    status, _ = balancer.admin("PUT", "/v1/stages/dialogue/replicas",
                               {"replicas": [fused[1].url]})
    assert status == 202
    wait_until(lambda: [r["address"] for r in balancer.admin("GET", "/v1/stages")[1][
        "dialogue"]] == [fused[1].url], what="the removed replica to drain")
    ask(balancer, 99)
    assert fused[0].metric("sluice_requests_total", model="dialogue", code="OK") == (
        per_replica[0])
