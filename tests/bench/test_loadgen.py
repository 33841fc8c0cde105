"""The load generator: its pure parts in-process, its client as a subprocess.

The client side (``sluice_local.loadgen``) imports the protocol stubs, which this
process must never load (see tests/conftest.py), so it runs as ``python -m`` against a
real runtime process; only ``sluice_local.records`` is imported here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sluice_local import records as stats

from tests.runtime.harness import Runtime, wait_until

ROOT = Path(__file__).resolve().parents[2]


# --- statistics --------------------------------------------------------------------------


def records(rows):
    out = stats.Records()
    for scheduled, sent, latency, code in rows:
        out.add(scheduled, sent, latency, code)
    return out


def test_summarize_counts_goodput_within_the_slo_and_errors_by_code():
    rows = [
        (0.0, 0.0, 0.010, "OK"),
        (0.5, 0.5, 0.020, "OK"),
        (1.0, 1.0, 0.200, "OK"),  # misses a 100 ms SLO
        (1.5, 1.5, 0.001, "DEADLINE_EXCEEDED"),
        (1.8, 1.8, 0.002, "RESOURCE_EXHAUSTED"),
        (1.9, 1.9, 0.100, "OK"),  # last completion at 2.0 s
    ]
    summary = stats.summarize(records(rows), slo_ms=100.0)
    assert summary.requests == 6
    assert summary.ok == 4
    assert summary.window_s == pytest.approx(2.0)
    assert summary.throughput == pytest.approx(2.0)
    assert summary.goodput == pytest.approx(1.5)
    assert summary.errors == {"DEADLINE_EXCEEDED": 1, "RESOURCE_EXHAUSTED": 1}
    assert summary.max_ms == pytest.approx(200.0)


def test_summarize_without_slo_counts_every_success_as_good():
    summary = stats.summarize(records([(0.0, 0.0, 5.0, "OK"), (1.0, 1.0, 0.5, "OK")]))
    assert summary.goodput == summary.throughput


def test_summarize_leaves_warmup_out():
    rows = [(0.1, 0.1, 9.0, "UNAVAILABLE"), (1.0, 1.0, 0.010, "OK"), (2.0, 2.0, 0.010, "OK")]
    summary = stats.summarize(records(rows), warmup_s=0.5)
    assert summary.requests == 2
    assert summary.errors == {}
    assert summary.window_s == pytest.approx(2.01 - 0.5)


def test_latency_is_counted_from_the_scheduled_time():
    # Sent 30 ms late: the client's lateness shows as send lag and stays in the latency.
    summary = stats.summarize(records([(1.0, 1.030, 0.040, "OK")]))
    assert summary.p50_ms == pytest.approx(40.0)
    assert summary.send_lag_p99_ms == pytest.approx(30.0)


def test_summarize_of_nothing_is_empty_not_an_error():
    summary = stats.summarize(stats.Records(), slo_ms=10.0)
    assert summary.requests == 0
    assert summary.throughput == 0.0
    assert np.isnan(summary.p99_ms)


def test_percentiles_are_observed_values_by_nearest_rank():
    values = list(range(1, 101))
    assert stats.percentile(values, 50) == 50
    assert stats.percentile(values, 99) == 99
    assert stats.percentile(values, 100) == 100
    assert stats.percentile([3.0, 1.0], 50) == 1.0
    with pytest.raises(ValueError, match="within"):
        stats.percentile(values, 101)


# --- the client, end to end against a runtime process -------------------------------------


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, example_models):
    mlp = example_models / "mlp.onnx"
    server = Runtime(["--model", f"mlp={mlp}"], tmp_path_factory.mktemp("loadgen")).start()
    yield server
    server.stop()


def loadgen(runtime, *args):
    return subprocess.run(
        [sys.executable, "-m", "sluice_local.loadgen", "--target", runtime.url, *args],
        capture_output=True, text=True, timeout=300, check=False,
    )


def report(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_open_loop_run_reports_every_request(runtime, tmp_path):
    csv = tmp_path / "records.csv"
    out = report(loadgen(
        runtime, "--model", "mlp", "--rate", "100", "--duration-s", "2", "--slo-ms", "1000",
        "--records", str(csv), "--json", "-",
    ))
    assert out["outputs"] == {"scores": [1, 16]}
    assert out["requests"] > 0
    assert out["ok"] == out["requests"]
    assert out["errors"] == {}
    lines = csv.read_text().splitlines()
    assert lines[0] == "scheduled_ms,sent_ms,latency_ms,code"
    assert len(lines) == out["requests"] + 1
    again = stats.summarize(stats.read_records(csv), slo_ms=1000)
    assert (again.requests, again.ok) == (out["requests"], out["ok"])
    assert again.p99_ms == pytest.approx(out["p99_ms"], abs=0.001)


def test_closed_loop_run_with_batches_and_explicit_inputs(runtime):
    out = report(loadgen(
        runtime, "--model", "mlp", "--clients", "4", "--duration-s", "1", "--batch", "3",
        "--input", "features:FP32:-1,384", "--json", "-",
    ))
    assert out["outputs"] == {"scores": [3, 16]}
    assert out["requests"] >= 4
    assert out["errors"] == {}


def test_budget_parameter_reaches_the_runtime(runtime):
    # A budget far below the model's compute time: the runtime rejects every request up
    # front, which it can only do if it decoded the appended parameter.
    out = report(loadgen(
        runtime, "--model", "mlp", "--rate", "50", "--duration-s", "1",
        "--budget-ms", "0.000001", "--json", "-",
    ))
    assert out["requests"] > 0
    assert out["errors"] == {"DEADLINE_EXCEEDED": out["requests"]}


def test_trace_replay_and_synthetic_fallback(runtime, tmp_path):
    trace = tmp_path / "trace.txt"
    trace.write_text("10\n20\n")
    out = report(loadgen(
        runtime, "--model", "mlp", "--trace", str(trace), "--duration-s", "2", "--json", "-",
    ))
    assert out["requests"] == 30
    result = loadgen(
        runtime, "--model", "mlp", "--trace", str(tmp_path / "absent.txt"), "--mean-rate", "20",
        "--duration-s", "1", "--json", "-",
    )
    assert "synthetic bursty MMPP" in result.stderr
    assert report(result)["errors"] == {}


def test_sigterm_stops_the_load_and_keeps_what_was_measured(runtime, tmp_path):
    # Local mode stops its load this way on Ctrl-C: the report needs what was sent.
    csv = tmp_path / "records.csv"
    before = runtime.metric("sluice_requests_total", model="mlp", code="OK")
    process = subprocess.Popen(
        [sys.executable, "-m", "sluice_local.loadgen", "--target", runtime.url, "--model",
         "mlp", "--rate", "50", "--duration-s", "600", "--records", str(csv), "--json", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: runtime.metric("sluice_requests_total", model="mlp", code="OK")
                   > before + 20, what="load to flow")
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    out = json.loads(stdout)
    # The server's count includes the load generator's probe request.
    assert 20 <= out["requests"] < 50 * 600
    assert out["errors"] == {}
    assert len(csv.read_text().splitlines()) == out["requests"] + 1


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--model", "nope"], "ModelMetadata('nope') failed: NOT_FOUND"),
     (["--model", "mlp", "--input", "features:FP32:-1,5"], "probe request to 'mlp' failed"),
     (["--model", "mlp", "--input", "features:FLOAT:-1,384"], "datatype must be one of"),
     (["--model", "mlp", "--trace", "/nonexistent"], "give --mean-rate")],
)
def test_bad_runs_fail_before_sending_load_with_a_clear_message(runtime, args, message):
    result = loadgen(runtime, *args, "--duration-s", "1")
    assert result.returncode == 2
    assert message in result.stderr
