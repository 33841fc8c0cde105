"""A fused pipeline seen as the one unit the scaler moves: its bounds, batching and profile."""

from pathlib import Path

import pytest
import yaml
from sluice_core.fused import fused_unit
from sluice_core.profiles import load_profile
from sluice_core.spec import ISOLATED, parse_pipeline

ROOT = Path(__file__).parents[2]


def fused_dialogue():
    manifest = yaml.safe_load((ROOT / "examples/pipelines/dialogue.yaml").read_text())
    manifest["spec"]["composition"] = "fused"
    return parse_pipeline(manifest)


PROFILE = load_profile(ROOT / "examples/profiles/dialogue.json")


def test_the_unit_is_one_stage_named_after_the_pipeline_with_the_stages_bounds_summed():
    pipeline = fused_dialogue()
    unit, _ = fused_unit(pipeline, PROFILE)
    assert unit.name == "dialogue"
    assert [s.name for s in unit.stages] == ["dialogue"]
    assert unit.composition == ISOLATED  # one service behind the balancer
    (stage,) = unit.stages
    assert (stage.cpu.initial_value, stage.cpu.min_value, stage.cpu.max_value) == (3, 1.5, 6)
    assert stage.memory.initial_value == 3 * 512 * 2**20
    assert (stage.min_replicas, stage.max_replicas) == (1, 4)
    # The smallest batch every stage takes; the waits add up along the stages.
    assert (stage.max_batch_size, stage.max_delay_ms) == (16, 9)
    assert stage.alternatives == ()
    assert (unit.latency_ms, unit.percentile, unit.scaling_mode) == (100, 99, "hybrid")


@pytest.mark.parametrize(("batch", "cores"), [(1, 0.5), (8, 1.0), (24, 1.25), (256, 2.0),
                                              (3, 3.0)])
def test_the_units_latency_is_the_stages_in_sequence(batch, cores):
    _, profile = fused_unit(fused_dialogue(), PROFILE)
    model = profile.stage("dialogue").variant()
    stages = [PROFILE.stage(s).variant() for s in ("intent", "policy", "response")]
    for q in (0.5, 0.99):
        assert model.latency_ms(batch, cores, q) == pytest.approx(
            sum(s.latency_ms(batch, cores, q) for s in stages), rel=1e-6)
    assert model.mean_latency_ms(batch, cores) == pytest.approx(
        sum(s.mean_latency_ms(batch, cores) for s in stages), rel=1e-6)


def test_one_process_loads_every_model_in_turn():
    _, profile = fused_unit(fused_dialogue(), PROFILE)
    model = profile.stage("dialogue").variant()
    stages = [PROFILE.stage(s).variant() for s in ("intent", "policy", "response")]
    assert model.cold_start_s == pytest.approx(sum(s.cold_start_s for s in stages))
    assert model.rss_mib == pytest.approx(sum(s.rss_mib for s in stages))
    assert profile.hop_ms == PROFILE.hop_ms


def test_per_request_profiles_agree_either_way():
    _, profile = fused_unit(fused_dialogue(), PROFILE)
    _, per_request = fused_unit(fused_dialogue(), PROFILE.per_request(8))
    assert per_request.stage("dialogue").variant().latency_ms(2, 1.0, 0.99) == pytest.approx(
        profile.per_request(8).stage("dialogue").variant().latency_ms(2, 1.0, 0.99))


def test_an_isolated_pipeline_is_not_a_unit():
    pipeline = parse_pipeline(yaml.safe_load(
        (ROOT / "examples/pipelines/dialogue.yaml").read_text()))
    with pytest.raises(ValueError, match="fused"):
        fused_unit(pipeline, PROFILE)
