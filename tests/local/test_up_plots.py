"""The plots of a local-mode run: files written, PNG, of a plausible size (no pixels)."""

from dataclasses import replace

import matplotlib.pyplot as plt
import pytest
from sluice_local.records import Records
from sluice_local.up.plots import plot_comparison, plot_run
from sluice_local.up.report import build_report, measured_result
from sluice_local.up.timeline import RunTimeline

from tests.local.test_up_report import DURATION_S, SEED, make_records, make_report, make_timeline

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000


def test_plot_run_writes_a_png(tmp_path):
    path = plot_run(make_report(), tmp_path / "run.png")
    assert path == tmp_path / "run.png"
    assert_png(path)


def test_plot_run_with_gaps_and_a_simulation(tmp_path):
    timeline = make_timeline()
    timeline.ticks[2] = replace(timeline.ticks[2], latency_ms=None)
    simulated = measured_result(timeline, make_records(), DURATION_S, SEED)
    report = build_report(timeline, make_records(), DURATION_S, SEED, simulated)
    assert_png(plot_run(report, tmp_path / "gaps.png"))


def test_plot_run_of_a_run_without_ticks(tmp_path):
    timeline = RunTimeline(pipeline="dialogue", policy="static", slo_ms=100.0,
                           percentile=99.0, stages=("asr",))
    report = build_report(timeline, Records(), 5.0, 0, None)
    path = plot_run(report, tmp_path / "empty.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_plot_comparison_writes_a_png(tmp_path):
    reports = [make_report(policy) for policy in ("static", "vertical", "hybrid")]
    path = plot_comparison(reports, tmp_path / "policies.png")
    assert path == tmp_path / "policies.png"
    assert_png(path)


def test_plot_comparison_needs_a_run(tmp_path):
    with pytest.raises(ValueError, match="no runs"):
        plot_comparison([], tmp_path / "none.png")


def test_figures_are_closed(tmp_path):
    before = len(plt.get_fignums())
    for i in range(3):
        plot_run(make_report(), tmp_path / f"run{i}.png")
        plot_comparison([make_report()], tmp_path / f"cmp{i}.png")
    assert len(plt.get_fignums()) == before
