"""The report of a local-mode run: measured figures in the simulator's shape, the per-second
CSV, the agreement with the simulation and the terminal table."""

import csv
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
from sluice_core.profiles import load_profile
from sluice_core.scaling.registry import PolicyContext, make_policy
from sluice_core.simulate import SimConfig, poisson_counts, simulate
from sluice_core.spec import load_pipeline
from sluice_local.records import Records
from sluice_local.up.report import (
    agreement,
    build_report,
    cores_used,
    format_table,
    measured_result,
    per_second_rows,
    write_csv,
)
from sluice_local.up.timeline import ActionRecord, RunTimeline, StageSample, Tick

ROOT = Path(__file__).resolve().parents[2]
DURATION_S = 10.0
SEED = 4

# --- a run, by hand ----------------------------------------------------------------------
#
# Two stages, ten ticks one second apart (the first covers 0 to 1 s).
#   asr: one replica, 1 core until tick 4, resized to 2 cores (in force at tick 5).
#   nlu: one replica at 0.5 core; scaled out to 2 at tick 6 (starting at tick 7, ready
#        from tick 8).
# Core-seconds: asr 4 * 1 + 6 * 2 = 16, nlu 6 * 0.5 + 4 * 1 = 7; total 23, peak 3.

ASR_RPS = (10.0, 10.0, 20.0, 20.0, 30.0, 30.0, 20.0, 20.0, 10.0, 10.0)  # sum 180
NLU_RPS = (9.6, 9.6, 19.6, 19.6, 29.6, 29.6, 19.6, 19.6, 9.6, 19.6)  # rounds to 190
ASR_LATENCY_MS = (12.0, 13.0, None, 30.0, 41.5, 20.0, 18.0, 15.0, None, 11.0)


def asr(i: int) -> StageSample:
    cores = 1.0 if i < 4 else 2.0
    return StageSample(
        stage="asr", replicas_ready=1, replicas_starting=0, cores_per_replica=cores,
        cores_in_force=cores, cores_allocated=cores, max_batch_size=8, max_delay_ms=2.0,
        queue_depth=i, arrival_rps=ASR_RPS[i], latency_ms=ASR_LATENCY_MS[i],
        answered=int(ASR_RPS[i]) - 1, late=i % 2, refused=1)


def nlu(i: int) -> StageSample:
    ready, starting = (1, 0) if i < 6 else (1, 1) if i == 6 else (2, 0)
    return StageSample(
        stage="nlu", replicas_ready=ready, replicas_starting=starting, cores_per_replica=0.5,
        cores_in_force=0.5 * ready, cores_allocated=0.5 * (ready + starting),
        max_batch_size=4 if i < 3 else 16, max_delay_ms=1.0, queue_depth=2 * i,
        arrival_rps=NLU_RPS[i], latency_ms=20.0 + i, answered=int(NLU_RPS[i]), late=0,
        refused=2 if i == 5 else 0)


ACTIONS = [
    ActionRecord(t_s=4.0, stage="asr", kind="resize", detail="2 cores", reason="p99 rising",
                 effective_s=4.6),
    ActionRecord(t_s=6.0, stage="nlu", kind="replicas", detail="2 replicas at 0.5 core",
                 reason="queue", effective_s=7.5),
    ActionRecord(t_s=3.0, stage="nlu", kind="batching", detail="batch 16, 1 ms",
                 reason="throughput", effective_s=3.1),
    ActionRecord(t_s=9.0, stage="asr", kind="resize", detail="1.5 cores", reason="idle"),
]


def make_timeline(policy: str = "hybrid") -> RunTimeline:
    ticks = [Tick(t_s=float(i + 1), entrance_rps=ASR_RPS[i], ok=int(ASR_RPS[i]) - 2,
                  missed=2, latency_ms=40.0 + 3 * i, stages=(asr(i), nlu(i)))
             for i in range(10)]
    return RunTimeline(pipeline="dialogue", policy=policy, slo_ms=100.0, percentile=95.0,
                       stages=("asr", "nlu"), ticks=ticks, actions=list(ACTIONS))


# Thirty requests, three a second at +0.1, +0.4 and +0.7 s. Request i is answered in
# 10 + i ms, except: 5 and 17 expire (DEADLINE_EXCEEDED), 11 is refused
# (RESOURCE_EXHAUSTED), and 8, 20 and 29 are answered late (150, 200 and 500 ms; the last,
# due at 9.7 s, ends at 10.2 s: 0.2 s of drain).
REJECTED = {5: "DEADLINE_EXCEEDED", 11: "RESOURCE_EXHAUSTED", 17: "DEADLINE_EXCEEDED"}
LATE_MS = {8: 150.0, 20: 200.0, 29: 500.0}


def make_records() -> Records:
    records = Records()
    for i in range(30):
        scheduled_s = i // 3 + (0.1, 0.4, 0.7)[i % 3]
        if i in REJECTED:
            records.add(scheduled_s, scheduled_s + 0.001, 0.1 if i != 11 else 0.002,
                        REJECTED[i])
        else:
            latency_ms = LATE_MS.get(i, 10.0 + i)
            records.add(scheduled_s, scheduled_s + 0.001, latency_ms / 1000, "OK")
    return records


def make_report(policy: str = "hybrid", simulated: dict | None = None) -> dict:
    return build_report(make_timeline(policy), make_records(), DURATION_S, SEED, simulated)


@pytest.fixture(scope="module")
def real_sim_json() -> dict:
    """What `sluice simulate --json` writes, from the real simulator on the example."""
    pipeline = load_pipeline(ROOT / "examples" / "pipelines" / "dialogue.yaml")
    profile = load_profile(ROOT / "examples" / "profiles" / "dialogue.json")
    counts = poisson_counts(50, 5, random.Random(1))
    context = PolicyContext(pipeline=pipeline, profile=profile, mean_rps=50.0,
                            peak_rps=float(max(counts)), counts_per_second=counts)
    policy = make_policy("static", context)
    return simulate(pipeline, profile, policy, counts, SimConfig(seed=1)).to_json()


# --- measured_result ---------------------------------------------------------------------


def test_measured_result_has_exactly_the_simulators_keys(real_sim_json):
    measured = measured_result(make_timeline(), make_records(), DURATION_S, SEED)
    assert list(measured) == list(real_sim_json)
    assert [list(s) for s in measured["per_stage"]] == [
        list(real_sim_json["per_stage"][0])] * 2
    json.dumps(measured)


def test_request_counts_and_attainment():
    measured = measured_result(make_timeline(), make_records(), DURATION_S, SEED)
    assert measured["policy"] == "hybrid"
    assert measured["seed"] == SEED
    assert measured["duration_s"] == DURATION_S
    assert measured["slo_ms"] == 100.0
    assert measured["percentile"] == 95.0
    assert (measured["requests"], measured["ok"], measured["late"], measured["rejected"]) == (
        30, 24, 3, 3)
    assert measured["answered"] == 27
    assert measured["misses"] == 6
    assert measured["slo_attainment"] == pytest.approx(0.8)


def test_latencies_are_nearest_rank_over_answered_requests():
    measured = measured_result(make_timeline(), make_records(), DURATION_S, SEED)
    # 27 answered: ... 37, 38, 150, 200, 500 ms; the 14th is 26 ms.
    assert measured["p50_ms"] == pytest.approx(26.0)
    assert measured["p99_ms"] == pytest.approx(500.0)
    assert measured["max_ms"] == pytest.approx(500.0)
    assert measured["slo_percentile_ms"] == pytest.approx(200.0), "p95: the 26th of 27"


def test_core_seconds_integrate_the_allocated_cores_from_zero():
    measured = measured_result(make_timeline(), make_records(), DURATION_S, SEED)
    assert measured["core_seconds"] == pytest.approx(23.0)
    assert measured["mean_cores"] == pytest.approx(2.3)
    assert measured["peak_cores"] == pytest.approx(3.0)


def test_core_seconds_weigh_uneven_intervals():
    timeline = make_timeline()
    times = (0.5, 1.0, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
    timeline.ticks = [replace(t, t_s=s) for t, s in zip(timeline.ticks, times, strict=True)]
    measured = measured_result(timeline, make_records(), DURATION_S, SEED)
    totals = [1.5, 1.5, 1.5, 1.5, 2.5, 2.5, 3.0, 3.0, 3.0, 3.0]
    intervals = [0.5, 0.5, 2.0, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    expected = sum(c * d for c, d in zip(totals, intervals, strict=True))
    assert measured["core_seconds"] == pytest.approx(expected)
    assert measured["mean_cores"] == pytest.approx(expected / 9.0)


def test_actions_decisions_and_drain():
    measured = measured_result(make_timeline(), make_records(), DURATION_S, SEED)
    assert measured["decisions"] == 10
    assert measured["vertical_actions"] == 2
    assert measured["horizontal_actions"] == 1
    assert measured["batching_actions"] == 1
    assert measured["variant_actions"] == 0
    assert measured["drain_s"] == pytest.approx(0.2)


def test_drain_is_never_negative():
    records = Records()
    records.add(1.0, 1.0, 0.05, "OK")
    measured = measured_result(make_timeline(), records, DURATION_S, SEED)
    assert measured["drain_s"] == 0.0


def test_per_stage_figures_from_the_timeline():
    measured = measured_result(make_timeline(), make_records(), DURATION_S, SEED)
    asr_stage, nlu_stage = measured["per_stage"]
    assert asr_stage["name"] == "asr"
    assert asr_stage["arrivals"] == 180
    assert asr_stage["answered"] == 170
    assert asr_stage["late"] == 5
    assert asr_stage["refused"] == 10
    assert asr_stage["max_ms"] == 41.5
    assert asr_stage["p50_ms"] is None
    assert asr_stage["p99_ms"] is None
    assert asr_stage["core_seconds"] == pytest.approx(16.0)
    assert asr_stage["mean_cores"] == pytest.approx(1.6)
    assert asr_stage["peak_cores"] == 2.0
    assert (asr_stage["peak_replicas"], asr_stage["final_replicas"]) == (1, 1)

    assert nlu_stage["name"] == "nlu"
    assert nlu_stage["arrivals"] == 190
    assert nlu_stage["refused"] == 2
    assert nlu_stage["max_ms"] == 29.0
    assert nlu_stage["core_seconds"] == pytest.approx(7.0)
    assert nlu_stage["peak_cores"] == 1.0
    assert (nlu_stage["peak_replicas"], nlu_stage["final_replicas"]) == (2, 2)
    for stage in (asr_stage, nlu_stage):
        for unknown in ("refused_router", "refused_deadline", "refused_queue_full",
                        "refused_unavailable", "batches", "mean_batch_size",
                        "largest_batch", "resizes_deferred", "resizes_infeasible"):
            assert stage[unknown] is None, unknown


def test_an_empty_run_has_no_attainment_nor_latency():
    timeline = RunTimeline(pipeline="dialogue", policy="static", slo_ms=100.0,
                           percentile=99.0, stages=("asr",))
    measured = measured_result(timeline, Records(), 5.0, 0)
    assert measured["requests"] == 0
    assert measured["slo_attainment"] is None
    assert measured["p50_ms"] is None
    assert measured["p99_ms"] is None
    assert measured["core_seconds"] == 0.0
    assert measured["mean_cores"] == 0.0
    assert measured["peak_cores"] == 0.0
    assert measured["drain_s"] == 0.0
    assert measured["per_stage"][0]["final_replicas"] == 0
    assert measured["per_stage"][0]["max_ms"] is None


# --- build_report and agreement ----------------------------------------------------------


def test_build_report_adds_the_timeline_actions_and_simulation(real_sim_json):
    report = make_report(simulated=real_sim_json)
    assert set(report) == set(real_sim_json) | {
        "pipeline", "composition", "fused_stages", "quota", "timeline", "actions",
        "replicas", "cores_used", "simulated", "agreement"}
    assert report["pipeline"] == "dialogue"
    assert (report["composition"], report["fused_stages"]) == ("isolated", [])
    assert report["quota"] is True
    assert report["simulated"] is real_sim_json
    assert len(report["timeline"]) == 10
    tick = report["timeline"][6]
    assert tick["t_s"] == 7.0
    assert tick["entrance_rps"] == 20.0
    assert (tick["ok"], tick["missed"], tick["latency_ms"]) == (18, 2, 58.0)
    assert [s["stage"] for s in tick["stages"]] == ["asr", "nlu"]
    assert tick["stages"][1]["replicas_starting"] == 1
    assert tick["stages"][1]["cores_allocated"] == 1.0
    assert set(tick["stages"][0]) >= {"replicas_ready", "cores_per_replica", "queue_depth",
                                      "arrival_rps", "latency_ms", "answered", "late",
                                      "refused", "max_batch_size", "max_delay_ms"}
    actions = report["actions"]
    assert [a["kind"] for a in actions] == ["resize", "replicas", "batching", "resize"]
    assert actions[0]["reaction_s"] == pytest.approx(0.6)
    assert actions[1]["reaction_s"] == pytest.approx(1.5)
    assert actions[3]["reaction_s"] is None
    assert actions[3]["effective_s"] is None
    assert actions[0]["detail"] == "2 cores"
    assert report["agreement"] == agreement(report, real_sim_json)
    json.dumps(report)


def test_cores_used_beside_allocated_by_stages_and_router():
    # What the processes' cgroups accounted, held over each tick's interval like the
    # allocation: the stages' quotas against how full they ran, and the router beside.
    timeline = make_timeline()
    timeline.ticks = [
        replace(t, router_cores_used=0.25 if t.t_s <= 5 else 0.75, stages=tuple(
            replace(s, cores_used=0.5) for s in t.stages))
        for t in timeline.ticks]
    used = cores_used(timeline)
    assert used["stages_mean_cores"] == pytest.approx(1.0)
    assert used["router_mean_cores"] == pytest.approx(0.5)
    assert build_report(timeline, make_records(), DURATION_S, SEED, None)["cores_used"] == used


def test_build_report_without_simulation():
    report = make_report()
    assert report["simulated"] is None
    assert report["agreement"] is None


def test_agreement_within_goals():
    measured = {"p99_ms": 500.0, "core_seconds": 23.0, "slo_attainment": 0.8}
    simulated = {"p99_ms": 450.0, "core_seconds": 25.0, "slo_attainment": 0.85}
    result = agreement(measured, simulated)
    assert result["p99_ratio"] == pytest.approx(500 / 450)
    assert result["core_seconds_ratio"] == pytest.approx(0.92)
    assert result["p99_within_goal"] is True
    assert result["core_seconds_within_goal"] is True
    assert result["measured_slo_attainment"] == 0.8
    assert result["simulated_slo_attainment"] == 0.85
    assert agreement(measured, None) is None


def test_agreement_outside_goals():
    measured = {"p99_ms": 120.0, "core_seconds": 23.0, "slo_attainment": 0.8}
    simulated = {"p99_ms": 100.0, "core_seconds": 20.0, "slo_attainment": 0.9}
    result = agreement(measured, simulated)
    assert result["p99_ratio"] == pytest.approx(1.2)
    assert result["p99_within_goal"] is False
    assert result["core_seconds_ratio"] == pytest.approx(1.15)
    assert result["core_seconds_within_goal"] is False


def test_agreement_at_the_goals_edges_is_met():
    measured = {"p99_ms": 85.0, "core_seconds": 11.0, "slo_attainment": 1.0}
    simulated = {"p99_ms": 100.0, "core_seconds": 10.0, "slo_attainment": 1.0}
    result = agreement(measured, simulated)
    assert result["p99_within_goal"] is True
    assert result["core_seconds_within_goal"] is True


def test_agreement_without_a_simulated_p99_cannot_be_met():
    measured = {"p99_ms": 85.0, "core_seconds": 11.0, "slo_attainment": 1.0}
    simulated = {"p99_ms": None, "core_seconds": 0.0, "slo_attainment": None}
    result = agreement(measured, simulated)
    assert result["p99_ratio"] is None
    assert result["core_seconds_ratio"] is None
    assert result["p99_within_goal"] is False
    assert result["core_seconds_within_goal"] is False


# --- per-second rows and CSV ---------------------------------------------------------------


def test_per_second_rows_count_requests_by_scheduled_second():
    rows = per_second_rows(make_timeline(), make_records(), DURATION_S)
    assert [row["second"] for row in rows] == list(range(10))
    assert [row["sent"] for row in rows] == [3] * 10
    assert [row["ok"] for row in rows] == [3, 2, 2, 2, 3, 2, 2, 3, 3, 2]
    assert [row["late"] for row in rows] == [0, 0, 1, 0, 0, 0, 1, 0, 0, 1]
    assert [row["rejected"] for row in rows] == [0, 1, 0, 1, 0, 1, 0, 0, 0, 0]
    assert rows[0]["p99_ms"] == pytest.approx(12.0)
    assert rows[1]["p99_ms"] == pytest.approx(14.0), "the refusal has no latency"
    assert rows[2]["p99_ms"] == pytest.approx(150.0)
    assert rows[9]["p99_ms"] == pytest.approx(500.0)


def test_per_second_rows_take_stages_from_the_latest_tick():
    rows = per_second_rows(make_timeline(), make_records(), DURATION_S)
    # Second 3 ends at 4 s: the fourth tick (asr still at 1 core).
    assert rows[3]["asr_cores"] == 1.0
    assert rows[4]["asr_cores"] == 2.0
    assert rows[4]["asr_cores_allocated"] == 2.0
    assert rows[6]["nlu_replicas"] == 2, "ready and starting"
    assert rows[6]["nlu_cores_allocated"] == 1.0
    assert rows[5]["nlu_replicas"] == 1
    assert rows[2]["nlu_queue"] == 4
    assert rows[2]["nlu_batch"] == 4
    assert rows[3]["nlu_batch"] == 16
    assert rows[9]["asr_queue"] == 9


def test_per_second_rows_before_the_first_tick_have_no_stage_figures():
    timeline = make_timeline()
    timeline.ticks = [t for t in timeline.ticks if t.t_s >= 3.0]
    timeline.ticks[0] = replace(timeline.ticks[0], t_s=2.5)
    rows = per_second_rows(timeline, make_records(), 3.5)
    assert len(rows) == 4
    assert rows[0]["asr_replicas"] is None
    assert rows[0]["nlu_queue"] is None
    assert rows[1]["asr_cores"] is None
    assert rows[2]["asr_queue"] == 2, "the tick at 2.5 s is before the end of second 2"
    assert rows[3]["sent"] == 3


def test_per_second_rows_without_answers_have_no_p99():
    records = Records()
    records.add(0.5, 0.5, 0.1, "UNAVAILABLE")
    rows = per_second_rows(make_timeline(), records, 2.0)
    assert rows[0]["rejected"] == 1
    assert rows[0]["p99_ms"] is None
    assert rows[1]["sent"] == 0


def test_csv_round_trip(tmp_path):
    timeline = make_timeline()
    timeline.ticks = [replace(t, t_s=t.t_s + 0.5) for t in timeline.ticks]
    rows = per_second_rows(timeline, make_records(), DURATION_S)
    path = tmp_path / "run.csv"
    write_csv(path, rows)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        read = list(reader)
        assert reader.fieldnames == list(rows[0])
    assert len(read) == 10
    assert read[0]["asr_replicas"] == "", "None is written empty"
    assert read[1]["asr_replicas"] == "1"
    assert read[3]["sent"] == "3"
    assert float(read[2]["p99_ms"]) == pytest.approx(150.0)
    assert float(read[9]["nlu_cores_allocated"]) == 1.0
    assert "second" in reader.fieldnames
    assert {"nlu_replicas", "nlu_cores", "nlu_cores_allocated", "nlu_queue",
            "nlu_batch"} <= set(reader.fieldnames)


# --- the table -----------------------------------------------------------------------------


def test_table_has_a_line_per_policy_and_the_simulated_comparison(real_sim_json):
    simulated = {**real_sim_json, "p99_ms": 450.0, "core_seconds": 25.0}
    hybrid = make_report("hybrid", simulated)
    static = make_report("static")
    text = format_table([hybrid, static])
    lines = text.splitlines()
    assert lines[0] == "dialogue: 10 s, 30 requests, SLO 100 ms at p95"
    assert lines[1].split()[:3] == ["policy", "SLO", "met"]
    assert lines[2].split()[0] == "hybrid"
    assert "80.00%" in lines[2]
    assert "500.0" in lines[2]
    assert "23.0" in lines[2]
    assert lines[3].split()[0] == "simulated"
    assert lines[3].startswith("  simulated")
    assert "450.0" in lines[3]
    assert lines[4] == ("  measured/simulated: p99 1.11x (goal ±15%: met), "
                        "core-s 0.92x (goal ±10%: met)")
    assert lines[5].split()[0] == "static"
    assert len(lines) == 6, "no simulation, no comparison lines"


def test_table_says_when_the_goals_are_missed():
    measured = measured_result(make_timeline(), make_records(), DURATION_S, SEED)
    simulated = {**measured, "p99_ms": 300.0, "core_seconds": 20.0}
    text = format_table([make_report(simulated=simulated)])
    assert ("p99 1.67x (goal ±15%: missed), core-s 1.15x (goal ±10%: missed)") in text


def test_table_of_nothing_is_empty():
    assert format_table([]) == ""
