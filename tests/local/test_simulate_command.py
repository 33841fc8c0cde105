"""``sluice simulate``: arguments, errors in one line, the JSON other tools read, the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sluice_core.profiles import save_profile
from sluice_core.scaling import registry
from sluice_core.spec import load_pipeline
from sluice_local import cli

from tests.core.test_simulate_support import Scripted, fixed, make_profile, model

ROOT = Path(__file__).resolve().parents[2]
DIALOGUE = ROOT / "examples" / "pipelines" / "dialogue.yaml"
#: What ``--json`` promises (tools depend on these keys).
KEYS = {"policy", "slo_attainment", "p50_ms", "p99_ms", "core_seconds", "requests", "misses",
        "vertical_actions", "horizontal_actions", "slo_ms", "duration_s", "rejected", "late",
        "mean_cores", "peak_cores", "per_stage"}


@pytest.fixture
def profiles(tmp_path):
    pipeline = load_pipeline(DIALOGUE)
    profile = make_profile(pipeline, model(lambda b, c: (0.4 + 0.02 * b) / c, spread=0.3),
                           hop_ms=(2.0, 5.0))
    path = tmp_path / "profile.json"
    save_profile(profile, path)
    return path


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / "trace.txt"
    path.write_text("\n".join(str(n) for n in [100, 300, 50, 0, 200] * 4) + "\n")
    return path


@pytest.fixture
def test_policies(monkeypatch):
    """Every policy name backed by a fixed allocation, through the real registry."""
    made = []

    def factory(name):
        def build(context):
            policy: Scripted = fixed(context.pipeline)
            policy.name = name
            made.append((name, context))
            return policy
        return build

    for name in registry.POLICY_NAMES:
        monkeypatch.setitem(registry._FACTORIES, name, factory(name))
    return made


def _run(capsys, *argv):
    status = cli.main(["simulate", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(("argv", "message"), [
    (["--trace", "{trace}", "--rate", "5"], "--trace FILE or --rate R"),
    ([], "--trace FILE or --rate R"),
    (["--rate", "5", "--mean-rate", "3"], "--mean-rate scales a trace"),
    (["--trace", "{trace}", "--mmpp"], "--mmpp shapes --rate"),
    (["--trace", "{missing}"], "cannot read trace"),
    (["--trace", "{trace}", "--duration-s", "500"], "fewer than the 500 s"),
    (["--rate", "5", "--duration-s", "0.5"], "--duration-s must be at least 1"),
    (["--rate", "5", "--nodes", "0"], "nodes must be >= 1"),
])
def test_workload_errors_are_one_line(capsys, profiles, trace, tmp_path, test_policies, argv,
                                      message):
    argv = [a.format(trace=trace, missing=tmp_path / "nope.txt") for a in argv]
    status, out, err = _run(capsys, DIALOGUE, "--profiles", profiles, "--policy", "static",
                            *argv)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("sluice simulate: error: ")
    assert message in err


@pytest.mark.parametrize(("argv", "message"), [
    (["{missing}", "--profiles", "{profiles}", "--policy", "static"], "cannot read the manifest"),
    (["{pipeline}", "--profiles", "{missing}", "--policy", "static"], "cannot read profile"),
    (["{pipeline}", "--policy", "static"], "--profiles FILE is required"),
    (["{pipeline}", "--profiles", "{profiles}"], "--policy is required"),
    (["{pipeline}", "--profiles", "{profiles}", "--policy", "best"], "unknown policy 'best'"),
])
def test_input_errors_are_one_line(capsys, profiles, tmp_path, test_policies, argv, message):
    argv = [a.format(pipeline=DIALOGUE, profiles=profiles, missing=tmp_path / "nope")
            for a in argv]
    status, _, err = _run(capsys, *argv, "--rate", "5")
    assert status == 2
    assert err.count("\n") == 1
    assert message in err


def test_json_of_one_policy(capsys, profiles, trace, test_policies):
    status, out, err = _run(capsys, DIALOGUE, "--profiles", profiles, "--trace", trace,
                            "--mean-rate", "50", "--policy", "hybrid", "--json", "-",
                            "--seed", "4")
    assert (status, err) == (0, "")
    document = json.loads(out)
    assert document.keys() >= KEYS
    assert document["policy"] == "hybrid"
    assert document["duration_s"] == 20
    assert document["requests"] == pytest.approx(50 * 20, rel=0.2)
    assert document["misses"] == document["rejected"] + document["late"]
    assert 0 <= document["slo_attainment"] <= 1
    assert [s["name"] for s in document["per_stage"]] == ["intent", "policy", "response"]
    # The policy was built from the workload it faces.
    (name, context), = test_policies
    assert name == "hybrid"
    assert sum(context.counts_per_second) == document["requests"]
    assert context.mean_rps == pytest.approx(document["requests"] / 20)
    assert context.peak_rps == max(context.counts_per_second)


def test_json_of_all_policies_to_a_file(capsys, profiles, tmp_path, test_policies):
    path = tmp_path / "out" / "results.json"
    path.parent.mkdir()
    status, out, _ = _run(capsys, DIALOGUE, "--profiles", profiles, "--rate", "30",
                          "--mmpp", "--duration-s", "15", "--policy", "all", "--json", path)
    assert (status, out) == (0, "")
    documents = json.loads(path.read_text())
    assert [d["policy"] for d in documents] == list(registry.POLICY_NAMES)
    assert all(d.keys() >= KEYS for d in documents)
    # Every policy faced the same requests.
    assert len({d["requests"] for d in documents}) == 1


def test_table_without_json(capsys, profiles, test_policies):
    status, out, _ = _run(capsys, DIALOGUE, "--profiles", profiles, "--rate", "20",
                          "--duration-s", "5", "--policy", "all")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("dialogue: 5 s,")
    assert lines[1].split()[:3] == ["policy", "SLO", "met"]
    assert [line.split()[0] for line in lines[2:]] == list(registry.POLICY_NAMES)


def test_same_seed_same_json(capsys, profiles, test_policies):
    argv = [DIALOGUE, "--profiles", profiles, "--rate", "40", "--duration-s", "5",
            "--policy", "static", "--json", "-", "--seed", "9"]
    assert _run(capsys, *argv)[1] == _run(capsys, *argv)[1]


# Against the policies themselves: these pass once sluice_core.scaling.registry has them.

@pytest.mark.parametrize("name", registry.POLICY_NAMES)
def test_registered_policy_runs(capsys, profiles, name):
    status, out, err = _run(capsys, DIALOGUE, "--profiles", profiles, "--rate", "200",
                            "--mmpp", "--duration-s", "60", "--policy", name, "--json", "-")
    assert status == 0, err
    document = json.loads(out)
    assert document.keys() >= KEYS
    assert document["policy"] == name


def test_a_fused_pipeline_is_simulated_as_its_one_unit(capsys, profiles, tmp_path):
    fused = tmp_path / "fused.yaml"
    fused.write_text(DIALOGUE.read_text().replace("composition: isolated",
                                                  "composition: fused"))
    status, out, err = _run(capsys, fused, "--profiles", profiles, "--rate", "200",
                            "--mmpp", "--duration-s", "30", "--policy", "hybrid", "--json", "-")
    assert status == 0, err
    document = json.loads(out)
    assert [s["name"] for s in document["per_stage"]] == ["dialogue"]
    assert document["requests"] > 0
