"""Plots of local-mode runs (``sluice up``), drawn from the report's JSON (report.py), to PNG.

``plot_run`` draws one run over time: load, end-to-end latency against the SLO, cores and
replicas per stage, with the scaling actions marked. ``plot_comparison`` sets several runs
of one workload side by side (one per policy). Rendering uses the Agg backend: no display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: render to files, never to a display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

#: Pixels per inch of the PNGs.
DPI = 110
#: Which panel marks which kind of action, and how.
_ACTION_PANELS = {"resize": "cores", "replicas": "replicas"}
_ACTION_MARKER = {"marker": "v", "color": "black", "linestyle": "none", "markersize": 6}


def plot_run(report: dict[str, Any], path: Path) -> Path:
    """Draw one run to ``path`` (PNG): four panels over time sharing the time axis.

    (a) requests per second at the entrance; (b) end-to-end latency at the SLO's
    percentile against the SLO; (c) cores allocated per stage, stacked, with the total and
    the resizes marked; (d) replicas per stage (ready and starting) as steps, with the
    changes of replicas marked. Returns ``path``.
    """
    path = Path(path)
    ticks = report.get("timeline") or []
    times_s = [tick["t_s"] for tick in ticks]
    fig, axes = plt.subplots(4, 1, sharex=True, figsize=(10, 11),
                             height_ratios=(1, 1.3, 1.3, 1))
    try:
        load_ax, latency_ax, cores_ax, replicas_ax = axes
        _load_panel(load_ax, times_s, [tick["entrance_rps"] for tick in ticks])
        _latency_panel(latency_ax, times_s, [tick["latency_ms"] for tick in ticks], report)
        _cores_panel(cores_ax, times_s, ticks, report)
        _replicas_panel(replicas_ax, times_s, ticks, report)
        _mark_actions({"cores": cores_ax, "replicas": replicas_ax}, report.get("actions") or [])
        replicas_ax.set_xlabel("time since the load started (s)")
        fig.suptitle(_run_title(report))
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path


def plot_comparison(reports: Sequence[dict[str, Any]], path: Path) -> Path:
    """Draw several runs of one workload (one per policy) to ``path`` (PNG).

    Total cores over time per policy; end-to-end latency at the SLO's percentile per policy
    against the SLO; and bars of SLO attainment and of core-seconds per policy. Returns
    ``path``. Raises ValueError without reports.
    """
    if not reports:
        raise ValueError("no runs to compare")
    path = Path(path)
    fig, axes = plt.subplot_mosaic(
        [["cores", "cores"], ["latency", "latency"], ["attainment", "core_seconds"]],
        figsize=(10, 10), height_ratios=(1.2, 1.2, 1))
    try:
        axes["latency"].sharex(axes["cores"])
        colours = _colours(len(reports))
        for report, colour in zip(reports, colours, strict=True):
            ticks = report.get("timeline") or []
            times_s = [tick["t_s"] for tick in ticks]
            totals = [sum(s["cores_allocated"] for s in tick["stages"]) for tick in ticks]
            axes["cores"].plot(*_from_zero(times_s, totals), drawstyle="steps-pre",
                               color=colour, label=report["policy"])
            axes["latency"].plot(times_s, _nan_for_none([t["latency_ms"] for t in ticks]),
                                 marker=".", color=colour, label=report["policy"])
        first = reports[0]
        axes["cores"].set_ylabel("cores allocated")
        axes["cores"].set_title("total cores allocated", loc="left", fontsize="medium")
        axes["latency"].set_title("end-to-end latency", loc="left", fontsize="medium")
        axes["cores"].set_ylim(bottom=0)
        axes["cores"].legend(loc="upper left", fontsize="small")
        _slo_line(axes["latency"], first)
        axes["latency"].set_ylabel(f"p{first['percentile']:g} latency (ms)")
        axes["latency"].set_xlabel("time since the load started (s)")
        axes["latency"].legend(loc="upper left", fontsize="small")
        _bars(axes["attainment"], reports, colours, "slo_attainment", 100.0, "SLO met (%)")
        _bars(axes["core_seconds"], reports, colours, "core_seconds", 1.0, "core-seconds")
        fig.suptitle(f"{first.get('pipeline', '?')}: policies compared, SLO "
                     f"{first['slo_ms']:g} ms at p{first['percentile']:g}")
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path


# --- panels of one run ---------------------------------------------------------------------


def _load_panel(ax: Axes, times_s: Sequence[float], rps: Sequence[float]) -> None:
    steps_s, steps_rps = _from_zero(times_s, rps)
    ax.plot(steps_s, steps_rps, drawstyle="steps-pre", color="tab:blue")
    ax.fill_between(steps_s, steps_rps, step="pre", alpha=0.2, color="tab:blue")
    ax.set_ylabel("requests/s")
    ax.set_ylim(bottom=0)
    ax.set_title("(a) load at the entrance", loc="left", fontsize="medium")


def _latency_panel(ax: Axes, times_s: Sequence[float], latency_ms: Sequence[float | None],
                   report: dict[str, Any]) -> None:
    ax.plot(times_s, _nan_for_none(latency_ms), marker=".", color="tab:purple",
            label=f"p{report['percentile']:g} end to end")
    simulated = report.get("simulated")
    if simulated and simulated.get("slo_percentile_ms") is not None:
        ax.axhline(simulated["slo_percentile_ms"], color="tab:gray", linestyle=":",
                   label=f"simulated p{report['percentile']:g}, whole run")
    _slo_line(ax, report)
    ax.set_ylabel("latency (ms)")
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(f"(b) end-to-end latency at p{report['percentile']:g}", loc="left",
                 fontsize="medium")


def _cores_panel(ax: Axes, times_s: Sequence[float], ticks: Sequence[dict[str, Any]],
                 report: dict[str, Any]) -> None:
    stages = _stage_names(report, ticks)
    per_stage = [[_sample(tick, name).get("cores_allocated", 0.0) for tick in ticks]
                 for name in stages]
    if ticks:
        steps_s = _from_zero(times_s, times_s)[0]
        ax.stackplot(steps_s, [_from_zero(times_s, cores)[1] for cores in per_stage],
                     labels=stages, step="pre", alpha=0.6)
        totals = [sum(column) for column in zip(*per_stage, strict=True)]
        ax.plot(*_from_zero(times_s, totals), drawstyle="steps-pre", color="black",
                linewidth=1.2, label="total")
        ax.legend(loc="upper left", fontsize="small")
    ax.set_ylabel("cores allocated")
    ax.set_ylim(bottom=0)
    ax.set_title("(c) cores per stage (▼ resize)", loc="left", fontsize="medium")


def _replicas_panel(ax: Axes, times_s: Sequence[float], ticks: Sequence[dict[str, Any]],
                    report: dict[str, Any]) -> None:
    for name in _stage_names(report, ticks):
        replicas = [_sample(tick, name).get("replicas_ready", 0)
                    + _sample(tick, name).get("replicas_starting", 0) for tick in ticks]
        ax.plot(*_from_zero(times_s, replicas), drawstyle="steps-pre", label=name)
    if ticks:
        ax.legend(loc="upper left", fontsize="small")
    ax.set_ylabel("replicas")
    ax.set_ylim(bottom=0)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title("(d) replicas per stage, ready and starting (▼ scale)", loc="left",
                 fontsize="medium")


def _mark_actions(panels: dict[str, Axes], actions: Sequence[dict[str, Any]]) -> None:
    """Mark each resize on the cores panel and each change of replicas on the replicas
    panel, at the time it was decided, along the top of the panel."""
    for kind, panel in _ACTION_PANELS.items():
        times_s = [a["t_s"] for a in actions if a["kind"] == kind]
        if times_s:
            ax = panels[panel]
            ax.plot(times_s, [1.0] * len(times_s), transform=ax.get_xaxis_transform(),
                    clip_on=False, **_ACTION_MARKER)


def _run_title(report: dict[str, Any]) -> str:
    attainment = report.get("slo_attainment")
    met = "-" if attainment is None else f"{100 * attainment:.2f}%"
    return (f"{report.get('pipeline', '?')}, policy {report['policy']}: SLO "
            f"{report['slo_ms']:g} ms at p{report['percentile']:g} met by {met}")


# --- helpers -------------------------------------------------------------------------------


def _slo_line(ax: Axes, report: dict[str, Any]) -> None:
    ax.axhline(report["slo_ms"], color="tab:red", linestyle="--",
               label=f"SLO {report['slo_ms']:g} ms")
    ax.set_ylim(bottom=0)


def _bars(ax: Axes, reports: Sequence[dict[str, Any]], colours: Sequence[Any], key: str,
          scale: float, label: str) -> None:
    names = [report["policy"] for report in reports]
    values = [(report.get(key) or 0.0) * scale for report in reports]
    bars = ax.bar(names, values, color=colours)
    ax.bar_label(bars, fmt="%.1f", fontsize="small")
    ax.margins(y=0.12)
    ax.set_ylabel(label)
    ax.tick_params(axis="x", labelrotation=20)


def _stage_names(report: dict[str, Any], ticks: Sequence[dict[str, Any]]) -> list[str]:
    """The stages in pipeline order, from the per-stage records (or the first tick)."""
    names = [stage["name"] for stage in report.get("per_stage") or []]
    if not names and ticks:
        names = [sample["stage"] for sample in ticks[0]["stages"]]
    return names


def _sample(tick: dict[str, Any], name: str) -> dict[str, Any]:
    return next((s for s in tick["stages"] if s["stage"] == name), {})


def _from_zero(times_s: Sequence[float], values: Sequence[Any]) -> tuple[list[float], list[Any]]:
    """Per-tick ``values`` as steps from 0 s: the first tick's interval starts at 0."""
    if not times_s or times_s[0] <= 0:
        return list(times_s), list(values)
    return [0.0, *times_s], [values[0], *values]


def _nan_for_none(values: Sequence[float | None]) -> list[float]:
    return [math.nan if value is None else value for value in values]


def _colours(count: int) -> list[Any]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return [cycle[i % len(cycle)] for i in range(count)]

