"""From the workers' documents to profile records."""

from __future__ import annotations

import pytest
from sluice_core.profiles import FORMAT, parse_profile
from sluice_local.profiling.assemble import (
    Measured,
    MeasurementError,
    best_threads,
    check_document,
    cold_start_job,
    model_name,
    model_profile,
    pipeline_profile,
    points_of,
)
from sluice_local.profiling.grid import Job, Target

TARGET = Target("intent", "default", "/m/intent.onnx", None, 0.9, (1, 8))


def document(cores, runs, load_s=0.5, warmup_s=0.05, rss_mib=80.0, seen=None):
    return {
        "format": "sluice.measure/v1", "sha256": "ab" * 32, "onnxruntime": "1.32.0",
        "cpu_allocation_cores": cores if seen is None else seen,
        "load_s": load_s, "warmup_s": warmup_s, "rss_mib": rss_mib,
        "runs": [{"batch": b, "threads": t, "latencies_ms": lat} for b, t, lat in runs],
    }


def measured(cores, runs, threads=(1,), target=TARGET, **kwargs):
    return Measured(Job(target, cores, threads, 0.4), document(cores, runs, **kwargs))


@pytest.mark.parametrize(("latencies", "expected"), [
    ({1: [2.0, 2.0], 2: [1.2, 1.2]}, 2),
    ({1: [1.0, 1.0], 2: [1.5, 1.5]}, 1),
    ({1: [1.0, 3.0], 2: [2.0, 2.0]}, 1),  # equal means: fewer threads
    ({2: [1.0], 3: [1.0], 1: [1.0]}, 1),
    ({1: [5.0], 2: [3.0], 3: [3.5]}, 2),
])
def test_best_threads_like_the_runtime(latencies, expected):
    assert best_threads(latencies) == expected


def test_points_take_the_faster_threads_per_batch():
    # Two threads help batch 8 and not batch 1: each point records its own choice.
    result = measured(2.0, [
        (1, 1, [1.0, 1.1, 1.2]), (1, 2, [1.3, 1.4, 1.5]),
        (8, 1, [8.0, 8.2, 8.4]), (8, 2, [4.5, 4.6, 4.7]),
    ], threads=(1, 2))
    one, eight = points_of(result)
    assert (one.cores, one.batch, one.threads, one.samples) == (2.0, 1, 1, 3)
    assert (eight.batch, eight.threads) == (8, 2)
    assert (eight.min_ms, eight.max_ms) == (4.5, 4.7)


def test_check_document_accepts_the_quota_it_asked_for():
    check_document(Job(TARGET, 0.5, (1,), 0.4), document(0.5, [(1, 1, [1.0])]), cpus=2)
    # A quota above the machine is seen capped at its CPUs, as the runtime sees it.
    check_document(Job(TARGET, 3.0, (1, 2), 0.4), document(3, [(1, 1, [1.0])], seen=2.0),
                   cpus=2)


@pytest.mark.parametrize(("doc", "message"), [
    ({**document(0.5, [(1, 1, [1.0])]), "format": "other"}, "format 'other'"),
    (document(0.5, [(1, 1, [1.0])], seen=2.0), "ran with 2.0 cores, not the 0.5"),
    ({**document(0.5, [(1, 1, [1.0])]), "cpu_allocation_cores": None}, "ran with None"),
    (document(0.5, []), "measured nothing"),
    (document(0.5, [(1, 1, [])]), "no latency at batch 1"),
])
def test_check_document_refuses(doc, message):
    with pytest.raises(MeasurementError, match=message):
        check_document(Job(TARGET, 0.5, (1,), 0.4), doc, cpus=2)


@pytest.mark.parametrize(("cores", "expected"), [
    ((0.5, 1.0, 1.5, 2.0), 1.0),
    ((0.5, 1.5, 2.0), 0.5),  # as far as 1.5: the slower one
    ((0.5, 2.0), 0.5),
    ((1.5, 2.0), 1.5),
    ((2.0,), 2.0),
])
def test_cold_start_is_taken_near_one_core(cores, expected):
    results = [measured(c, [(1, 1, [1.0])]) for c in cores]
    assert cold_start_job(results).job.cores == expected


@pytest.mark.parametrize(("source", "expected"), [
    ("/work/examples/models/intent.onnx", "intent.onnx"),
    ("https://example.com/m/policy.onnx?x=1", "policy.onnx"),
    ("file:///models/response.onnx", "response.onnx"),
])
def test_model_name(source, expected):
    assert model_name(source) == expected


def test_model_profile_combines_allocations():
    results = [
        measured(0.5, [(1, 1, [2.0, 2.2]), (8, 1, [9.0, 9.5])], load_s=0.9, rss_mib=70.0),
        measured(1.0, [(1, 1, [1.0, 1.1]), (8, 1, [4.0, 4.5])], load_s=0.51234567,
                 warmup_s=0.04, rss_mib=75.0),
        measured(2.0, [(1, 1, [1.0]), (1, 2, [0.9]), (8, 1, [4.0]), (8, 2, [2.5])],
                 threads=(1, 2), load_s=0.4, rss_mib=90.04),
    ]
    profile = model_profile(TARGET, results)
    assert (profile.model, profile.accuracy, profile.sha256) == ("intent.onnx", 0.9, "ab" * 32)
    assert (profile.load_s, profile.warmup_s) == (0.5123, 0.04)  # at one core, rounded
    assert profile.rss_mib == 90.0  # the most: a session per thread count at two cores
    assert profile.cores_measured == (0.5, 1.0, 2.0)
    assert profile.batches_measured == (1, 8)
    assert profile.latency_ms(8, 2.0) == 2.5
    assert profile.latency_ms(8, 0.5) > profile.latency_ms(8, 1.0)


def test_model_profile_needs_measurements():
    with pytest.raises(MeasurementError, match="nothing was measured"):
        model_profile(TARGET, [])


def test_pipeline_profile_round_trips_through_the_format():
    policy = Target("policy", "default", "/m/policy.onnx", None, 1.0, (1,))
    small = Target("policy", "small", "/m/policy-small.onnx", None, 0.8, (1,))
    results = [
        measured(1.0, [(1, 1, [1.0, 1.2]), (8, 1, [3.0])]),
        measured(1.0, [(1, 1, [0.5])], target=policy),
        measured(1.0, [(1, 1, [0.2])], target=small),
    ]
    profile = pipeline_profile("dialogue", results, {"cores": 2})
    document_ = profile.to_json()
    assert document_["format"] == FORMAT
    again = parse_profile(document_)
    assert list(again.stages) == ["intent", "policy"]
    assert sorted(again.stage("policy").variants) == ["default", "small"]
    assert again.stage("policy").variant("small").accuracy == 0.8
    assert again.stage("intent").variant().latency_ms(8, 1.0) == 3.0
    assert again.host == {"cores": 2}
