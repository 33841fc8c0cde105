"""The report of a local-mode run (``sluice up``): what was measured, in the simulator's
shape so the two can be set side by side, the per-second rows of the CSV, and the table.

``measured_result`` has exactly the keys of ``SimResult.to_json()`` (what
``sluice simulate --json`` writes); ``build_report`` adds the timeline, the actions and
the simulated record with the agreement between the two.

Times are seconds since the load started; latencies are in milliseconds. Nothing here does
I/O except ``write_csv``, which writes the path it is given.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sluice_local.records import OK, Records, percentile
from sluice_local.up.timeline import ActionRecord, RunTimeline, StageSample, Tick

#: Measured p99 within this fraction of the simulated one counts as agreement.
P99_GOAL = 0.15
#: Measured core-seconds within this fraction of the simulated ones counts as agreement.
CORE_SECONDS_GOAL = 0.10
#: ActionRecord kinds, and the SimResult counter of each.
_ACTION_COUNTERS = {
    "resize": "vertical_actions",
    "replicas": "horizontal_actions",
    "batching": "batching_actions",
    "variant": "variant_actions",
}
#: Per-stage counts a timeline cannot know: they are None in a measured record.
_UNMEASURED_STAGE_KEYS = (
    "refused_router", "refused_deadline", "refused_queue_full", "refused_unavailable",
    "batches", "mean_batch_size", "largest_batch",
)


# --- the measured record -------------------------------------------------------------------


def measured_result(timeline: RunTimeline, requests: Records, duration_s: float,
                    seed: int) -> dict[str, Any]:
    """What the run measured, as a JSON-ready dict with the keys of ``SimResult.to_json()``.

    Requests come from the client's records: ``ok`` when answered ("OK") within the SLO,
    ``late`` when answered after it, ``rejected`` for any error code. Latencies are
    nearest-rank over answered requests (None when none were). Cores come from the ticks:
    each tick's ``cores_allocated`` summed over stages, held over the interval since the
    previous tick (the first tick's from 0). ``decisions`` is the number of ticks. The
    per-stage records are ``stage_results``'s.
    """
    slo_ms = timeline.slo_ms
    counts = _request_counts(requests, slo_ms)
    answered_ms = _answered_latencies_ms(requests)
    totals = [sum(s.cores_allocated for s in tick.stages) for tick in timeline.ticks]
    core_seconds = _integrate(timeline.ticks, totals)
    actions = _action_counts(timeline.actions)
    ok, late, rejected = counts["ok"], counts["late"], counts["rejected"]
    total = ok + late + rejected
    return {
        "policy": timeline.policy,
        "slo_attainment": ok / total if total else None,
        "misses": late + rejected,
        "answered": ok + late,
        "seed": seed,
        "duration_s": duration_s,
        "slo_ms": slo_ms,
        "percentile": timeline.percentile,
        "requests": total,
        "ok": ok,
        "late": late,
        "rejected": rejected,
        "p50_ms": _percentile_ms(answered_ms, 50),
        "p99_ms": _percentile_ms(answered_ms, 99),
        "max_ms": max(answered_ms) if answered_ms else None,
        "slo_percentile_ms": _percentile_ms(answered_ms, timeline.percentile),
        "core_seconds": core_seconds,
        "mean_cores": _mean(core_seconds, _ticks_span_s(timeline.ticks)),
        "peak_cores": max(totals, default=0.0),
        "decisions": len(timeline.ticks),
        **actions,
        "drain_s": drain_s(requests, duration_s),
        "per_stage": stage_results(timeline),
    }


def stage_results(timeline: RunTimeline) -> list[dict[str, Any]]:
    """One dict per stage with the keys of ``StageResult.to_json()``, from the ticks.

    Measured: ``arrivals`` (each tick's arrival rate times its interval, rounded),
    ``answered``, ``late`` and ``refused`` (summed over ticks), ``max_ms`` (the highest
    per-tick latency at the SLO's percentile: the stage's latency is not recorded per
    request), cores from ``cores_allocated``, and replicas (ready and starting).

    None, because the timeline does not record them: ``p50_ms`` and ``p99_ms`` (no
    per-request latencies at the stage); the causes of refusal (``refused_router``,
    ``refused_deadline``, ``refused_queue_full``, ``refused_unavailable``: the runtimes
    report only a total, which ``refused`` holds); ``batches``, ``mean_batch_size`` and
    ``largest_batch`` (batches formed inside the runtimes are not reported per batch);
    ``resizes_deferred`` and ``resizes_infeasible`` (simulator bookkeeping of resizes a
    node could not fit, which local processes never meet).
    """
    return [_stage_result(timeline, name) for name in timeline.stages]


def _stage_result(timeline: RunTimeline, name: str) -> dict[str, Any]:
    samples = [tick.stage(name) for tick in timeline.ticks]
    cores = [s.cores_allocated for s in samples]
    replicas = [_replicas(s) for s in samples]
    latencies = [s.latency_ms for s in samples if s.latency_ms is not None]
    core_seconds = _integrate(timeline.ticks, cores)
    return {
        "name": name,
        "arrivals": sum(round(s.arrival_rps * interval_s)
                        for s, interval_s in zip(samples, _intervals_s(timeline.ticks),
                                                 strict=True)),
        "answered": sum(s.answered for s in samples),
        "late": sum(s.late for s in samples),
        **dict.fromkeys(_UNMEASURED_STAGE_KEYS),
        "p50_ms": None,
        "p99_ms": None,
        "max_ms": max(latencies, default=None),
        "core_seconds": core_seconds,
        "mean_cores": _mean(core_seconds, _ticks_span_s(timeline.ticks)),
        "peak_cores": max(cores, default=0.0),
        "peak_replicas": max(replicas, default=0),
        "final_replicas": replicas[-1] if replicas else 0,
        "resizes_deferred": None,
        "resizes_infeasible": None,
        "refused": sum(s.refused for s in samples),
    }


def drain_s(requests: Records, duration_s: float) -> float:
    """Seconds from the end of the load until the last request ended (0 if none after)."""
    ends_s = [s + lat for s, lat in zip(requests.scheduled_s, requests.latency_s, strict=True)]
    return max(0.0, max(ends_s, default=0.0) - duration_s)


def _request_counts(requests: Records, slo_ms: float) -> dict[str, int]:
    counts = {"ok": 0, "late": 0, "rejected": 0}
    for latency_s, code in zip(requests.latency_s, requests.codes, strict=True):
        counts[_outcome(code, latency_s, slo_ms)] += 1
    return counts


def _outcome(code: str, latency_s: float, slo_ms: float) -> str:
    """"ok", "late" or "rejected": how one request ended."""
    if code != OK:
        return "rejected"
    return "ok" if latency_s * 1000.0 <= slo_ms else "late"


def _answered_latencies_ms(requests: Records) -> list[float]:
    return [lat * 1000.0 for lat, code in zip(requests.latency_s, requests.codes, strict=True)
            if code == OK]


def _percentile_ms(values_ms: Sequence[float], q: float) -> float | None:
    return percentile(values_ms, q) if values_ms else None


def _intervals_s(ticks: Sequence[Tick]) -> list[float]:
    """Each tick's interval: since the previous tick, the first's since 0."""
    starts_s = [0.0, *(tick.t_s for tick in ticks)]
    return [tick.t_s - start_s for tick, start_s in zip(ticks, starts_s, strict=False)]


def _integrate(ticks: Sequence[Tick], values: Sequence[float]) -> float:
    """The integral over time of per-tick ``values``, each held over its tick's interval."""
    return sum(v * d for v, d in zip(values, _intervals_s(ticks), strict=True))


def _ticks_span_s(ticks: Sequence[Tick]) -> float:
    return ticks[-1].t_s if ticks else 0.0


def _mean(integral: float, span_s: float) -> float:
    return integral / span_s if span_s > 0 else 0.0


def _replicas(sample: StageSample) -> int:
    return sample.replicas_ready + sample.replicas_starting


def _action_counts(actions: Iterable[ActionRecord]) -> dict[str, int]:
    counts = dict.fromkeys(_ACTION_COUNTERS.values(), 0)
    for action in actions:
        if action.kind in _ACTION_COUNTERS:
            counts[_ACTION_COUNTERS[action.kind]] += 1
    return counts


def cores_used(timeline: RunTimeline) -> dict[str, float]:
    """Mean CPU the stages' replicas and the router used, in cores (their cgroups'
    accounting), over the same span as the allocated cores' mean."""
    ticks, span_s = timeline.ticks, _ticks_span_s(timeline.ticks)
    stages = _integrate(ticks, [sum(s.cores_used for s in t.stages) for t in ticks])
    router = _integrate(ticks, [t.router_cores_used for t in ticks])
    return {"stages_mean_cores": _mean(stages, span_s),
            "router_mean_cores": _mean(router, span_s)}


# --- the report ----------------------------------------------------------------------------


def build_report(timeline: RunTimeline, requests: Records, duration_s: float, seed: int,
                 simulated: dict[str, Any] | None) -> dict[str, Any]:
    """The whole report: the measured record, the pipeline, whether CPU quotas were in
    force, every tick, action and replica, the simulated record (or None) and the
    agreement."""
    measured = measured_result(timeline, requests, duration_s, seed)
    return {
        **measured,
        "pipeline": timeline.pipeline,
        "composition": "fused" if timeline.fused_stages else "isolated",
        "fused_stages": list(timeline.fused_stages),
        "quota": timeline.quota,
        "timeline": [tick_json(tick) for tick in timeline.ticks],
        "actions": [action_json(action) for action in timeline.actions],
        "replicas": [asdict(replica) for replica in timeline.replicas.values()],
        "cores_used": cores_used(timeline),
        "simulated": simulated,
        "agreement": agreement(measured, simulated),
    }


def tick_json(tick: Tick) -> dict[str, Any]:
    """One tick as JSON: its figures and a "stages" list of the samples' fields."""
    return {
        "t_s": tick.t_s,
        "entrance_rps": tick.entrance_rps,
        "ok": tick.ok,
        "missed": tick.missed,
        "latency_ms": tick.latency_ms,
        "router_cores_used": tick.router_cores_used,
        "stages": [asdict(sample) for sample in tick.stages],
    }


def action_json(action: ActionRecord) -> dict[str, Any]:
    """One action as JSON: its fields and ``reaction_s`` (None while not in force)."""
    return {**asdict(action), "reaction_s": action.reaction_s}


def agreement(measured: dict[str, Any], simulated: dict[str, Any] | None
              ) -> dict[str, Any] | None:
    """How the measured record compares with the simulated one; None without a simulation.

    The ratios are measured / simulated (None when either side is missing or the simulated
    one is 0); the goals are p99 within ±15% and core-seconds within ±10%, and a ratio that
    cannot be computed does not meet its goal.
    """
    if simulated is None:
        return None
    p99_ratio = _ratio(measured.get("p99_ms"), simulated.get("p99_ms"))
    core_ratio = _ratio(measured.get("core_seconds"), simulated.get("core_seconds"))
    return {
        "p99_ratio": p99_ratio,
        "p99_goal": P99_GOAL,
        "p99_within_goal": _within(p99_ratio, P99_GOAL),
        "core_seconds_ratio": core_ratio,
        "core_seconds_goal": CORE_SECONDS_GOAL,
        "core_seconds_within_goal": _within(core_ratio, CORE_SECONDS_GOAL),
        "measured_slo_attainment": measured.get("slo_attainment"),
        "simulated_slo_attainment": simulated.get("slo_attainment"),
    }


def _ratio(measured: float | None, simulated: float | None) -> float | None:
    if measured is None or not simulated:
        return None
    return measured / simulated


def _within(ratio: float | None, goal: float) -> bool:
    """Whether ``ratio`` is within ``goal`` of 1 (a goal's edge, as 0.85 for 15%, meets it)."""
    if ratio is None:
        return False
    off = abs(ratio - 1.0)
    return off <= goal or math.isclose(off, goal, rel_tol=1e-9, abs_tol=1e-12)


# --- per-second rows and the CSV -----------------------------------------------------------


def per_second_rows(timeline: RunTimeline, requests: Records,
                    duration_s: float) -> list[dict[str, Any]]:
    """One row per whole second of the load, ``0 .. ceil(duration_s) - 1``.

    ``sent``, ``ok``, ``late`` and ``rejected`` count the client's requests by the second
    they were scheduled in (requests scheduled outside the load are left out); ``p99_ms``
    is the end-to-end p99 of that second's answered requests (None if none). For each stage,
    from the latest tick at or before the end of the second (None before the first tick):
    ``<stage>_replicas`` (ready and starting), ``<stage>_cores`` (per replica),
    ``<stage>_cores_allocated``, ``<stage>_queue`` (depth) and ``<stage>_batch`` (maximum
    batch size).
    """
    seconds = max(0, math.ceil(duration_s))
    rows = [_request_row(second) for second in range(seconds)]
    latencies_ms: list[list[float]] = [[] for _ in range(seconds)]
    for scheduled_s, latency_s, code in zip(requests.scheduled_s, requests.latency_s,
                                            requests.codes, strict=True):
        second = math.floor(scheduled_s)
        if not 0 <= second < seconds:
            continue
        outcome = _outcome(code, latency_s, timeline.slo_ms)
        rows[second]["sent"] += 1
        rows[second][outcome] += 1
        if code == OK:
            latencies_ms[second].append(latency_s * 1000.0)
    for row, answered_ms in zip(rows, latencies_ms, strict=True):
        row["p99_ms"] = _percentile_ms(answered_ms, 99)
        row.update(_stage_columns(timeline, _tick_at(timeline.ticks, row["second"] + 1.0)))
    return rows


def _request_row(second: int) -> dict[str, Any]:
    return {"second": second, "sent": 0, "ok": 0, "late": 0, "rejected": 0}


def _tick_at(ticks: Sequence[Tick], t_s: float) -> Tick | None:
    """The latest tick at or before ``t_s`` (ticks are in time order)."""
    latest = None
    for tick in ticks:
        if tick.t_s > t_s:
            break
        latest = tick
    return latest


def _stage_columns(timeline: RunTimeline, tick: Tick | None) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for name in timeline.stages:
        sample = tick.stage(name) if tick is not None else None
        columns[f"{name}_replicas"] = _replicas(sample) if sample else None
        columns[f"{name}_cores"] = sample.cores_per_replica if sample else None
        columns[f"{name}_cores_allocated"] = sample.cores_allocated if sample else None
        columns[f"{name}_queue"] = sample.queue_depth if sample else None
        columns[f"{name}_batch"] = sample.max_batch_size if sample else None
    return columns


def write_csv(path: Path | str, rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``rows`` to ``path`` as CSV with a header (the first row's keys); None is
    written empty. No rows: an empty file. Returns the path."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


# --- the table -----------------------------------------------------------------------------


def format_table(reports: Sequence[dict[str, Any]]) -> str:
    """The runs side by side for a terminal, one line per report (each policy's).

    Under a report with a simulated record come a ``simulated`` line with the same
    columns, and whether p99 and core-seconds agree within the goals. The first line names
    the pipeline, the seconds of load, the requests and the SLO (of the first report).
    Lines are joined by newlines, without a trailing one; no reports, an empty string.
    """
    if not reports:
        return ""
    first = reports[0]
    lines = [
        f"{first.get('pipeline', '?')}: {first['duration_s']:g} s, {first['requests']} "
        f"requests, SLO {first['slo_ms']:g} ms at p{first['percentile']:g}",
        _TABLE_HEADER,
    ]
    for report in reports:
        lines.append(_table_row(report["policy"], report))
        simulated = report.get("simulated")
        if simulated is not None:
            lines.append(_table_row("  simulated", simulated))
            lines.append(_agreement_line(report.get("agreement")
                                         or agreement(report, simulated)))
    return "\n".join(lines)


_TABLE_HEADER = (f"{'policy':<12} {'SLO met':>8} {'p50 ms':>8} {'p99 ms':>8} {'core-s':>10} "
                 f"{'cores':>6} {'peak':>6} {'refused':>8} {'late':>7} {'vert':>5} "
                 f"{'horiz':>5}")


def _table_row(label: str, record: dict[str, Any]) -> str:
    return (f"{label:<12} {_percent(record.get('slo_attainment')):>8} "
            f"{_ms(record.get('p50_ms')):>8} {_ms(record.get('p99_ms')):>8} "
            f"{_number(record.get('core_seconds'), '.1f'):>10} "
            f"{_number(record.get('mean_cores'), '.2f'):>6} "
            f"{_number(record.get('peak_cores'), '.2f'):>6} "
            f"{_number(record.get('rejected'), 'd'):>8} {_number(record.get('late'), 'd'):>7} "
            f"{_number(record.get('vertical_actions'), 'd'):>5} "
            f"{_number(record.get('horizontal_actions'), 'd'):>5}")


def _agreement_line(result: dict[str, Any]) -> str:
    p99 = _ratio_text(result["p99_ratio"], result["p99_goal"], result["p99_within_goal"])
    cores = _ratio_text(result["core_seconds_ratio"], result["core_seconds_goal"],
                        result["core_seconds_within_goal"])
    return f"  measured/simulated: p99 {p99}, core-s {cores}"


def _ratio_text(ratio: float | None, goal: float, met: bool) -> str:
    value = "-" if ratio is None else f"{ratio:.2f}x"
    return f"{value} (goal ±{100 * goal:g}%: {'met' if met else 'missed'})"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
