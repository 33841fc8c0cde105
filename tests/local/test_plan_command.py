"""``sluice plan``: the table, JSON, exit statuses and one-line errors, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sluice_core.profiles import PipelineProfile, StageProfile, save_profile
from sluice_local import cli

from tests.core.test_planner_model import synthetic_model

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipelines" / "dialogue.yaml"


@pytest.fixture
def profile_file(tmp_path) -> Path:
    stages = {name: StageProfile(name, {"default": synthetic_model(overhead_ms=1 + i,
                                                                   per_row_ms=0.05 * (i + 1))})
              for i, name in enumerate(("intent", "policy", "response"))}
    path = tmp_path / "dialogue.profile.json"
    save_profile(PipelineProfile("dialogue", {"cores": 2}, stages,
                                 hop_ms={1: (6.0, 10.0), 256: (15.0, 24.0)}), path)
    return path


def sluice(*args: str) -> int:
    return cli.main(["plan", *args])


def test_table_with_a_reason_per_stage(profile_file, capsys):
    assert sluice(str(EXAMPLE), "--profiles", str(profile_file), "--rate", "500") == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("stage"))
    assert header.split() == ["stage", "variant", "budget", "share", "p99", "util", "cores",
                              "replicas", "batch", "delay", "cost"]
    for stage in ("intent", "policy", "response"):
        assert any(line.startswith(f"{stage}: ") and "cheapest allocation" in line
                   for line in out.splitlines())
    assert "meets the SLO" in out
    assert "(hops 30.0 ms)" in out
    assert "why: isolated at 500 req/s" in out


def test_json_is_the_plan(profile_file, capsys):
    assert sluice(str(EXAMPLE), "--profiles", str(profile_file), "--rate", "800", "--scv", "2",
                  "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pipeline"] == "dialogue"
    assert doc["load"] == {"rate_rps": 800.0, "arrival_scv": 2.0}
    assert doc["feasible"] is True
    assert [s["stage"] for s in doc["stages"]] == ["intent", "policy", "response"]
    assert doc["cost_cores"] == pytest.approx(sum(s["cost_cores"] for s in doc["stages"]))


def test_router_cores_count_in_the_cost(profile_file, capsys):
    sluice(str(EXAMPLE), "--profiles", str(profile_file), "--rate", "100", "--json")
    bare = json.loads(capsys.readouterr().out)["cost_cores"]
    sluice(str(EXAMPLE), "--profiles", str(profile_file), "--rate", "100", "--json",
           "--router-cores", "0.5")
    assert json.loads(capsys.readouterr().out)["cost_cores"] == pytest.approx(bare + 0.5)


def test_a_best_effort_plan_exits_1(profile_file, capsys):
    assert sluice(str(EXAMPLE), "--profiles", str(profile_file), "--rate", "100000") == 1
    out = capsys.readouterr().out
    assert "DOES NOT MEET the SLO" in out
    assert "unbounded" in out
    assert "cannot keep up" in out


@pytest.mark.parametrize(("manifest", "profile_text", "message"), [
    ("metadata: {name: x}\nspec: {}\n", None, "spec.slo: is required"),
    ("{not yaml", None, "not valid YAML"),
    (None, "not json", "is not JSON"),
    (None, '{"format": "other"}', "not a Sluice profile"),
])
def test_bad_files_are_one_line_errors(tmp_path, profile_file, capsys, manifest, profile_text,
                                       message):
    spec = EXAMPLE
    if manifest is not None:
        spec = tmp_path / "bad.yaml"
        spec.write_text(manifest)
    profile = profile_file
    if profile_text is not None:
        profile = tmp_path / "bad.json"
        profile.write_text(profile_text)
    assert sluice(str(spec), "--profiles", str(profile), "--rate", "10") == 2
    err = capsys.readouterr().err
    assert err.startswith("sluice plan: error: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_profile_missing_a_stage_is_an_error(tmp_path, capsys):
    path = tmp_path / "partial.json"
    save_profile(PipelineProfile("dialogue", {}, {
        "intent": StageProfile("intent", {"default": synthetic_model()})}), path)
    assert sluice(str(EXAMPLE), "--profiles", str(path), "--rate", "10") == 2
    assert "has no stage 'policy'" in capsys.readouterr().err


def test_missing_files_are_errors(tmp_path, profile_file, capsys):
    assert sluice(str(tmp_path / "none.yaml"), "--profiles", str(profile_file),
                  "--rate", "1") == 2
    assert "cannot read the manifest" in capsys.readouterr().err
    assert sluice(str(EXAMPLE), "--profiles", str(tmp_path / "none.json"), "--rate", "1") == 2
    assert "cannot read profile" in capsys.readouterr().err


@pytest.mark.parametrize("rate", ["-1", "nan", "fast"])
def test_a_bad_rate_is_a_usage_error(profile_file, capsys, rate):
    with pytest.raises(SystemExit) as exited:
        sluice(str(EXAMPLE), "--profiles", str(profile_file), "--rate", rate)
    assert exited.value.code == 2
    assert "--rate" in capsys.readouterr().err
