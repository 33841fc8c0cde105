"""What local mode asks of a stage after each of a policy's actions: in the stage's bounds,
batch sizes in rows, as the simulator holds them."""

from __future__ import annotations

from sluice_core.scaling.types import Allocation, Resize, SetBatching, SetReplicas, SetVariant
from sluice_core.spec import load_pipeline
from sluice_local.up.controller import apply_action, describe, target_of
from sluice_local.up.topology import Batching

from tests.conftest import ROOT

DIALOGUE = load_pipeline(ROOT / "examples" / "pipelines" / "dialogue.yaml")
RESPONSE = DIALOGUE.stage("response")  # cpu 500m..2, replicas 1..4


def test_targets_follow_the_actions_within_the_stage_bounds():
    target = target_of(Allocation(1, 0.5, 16, 5.0, "default"), rows_per_request=8)
    assert target.batching == Batching(128, 5.0)
    assert apply_action(target, Resize("response", 1.5, "burst"), RESPONSE, 8).cores == 1.5
    assert apply_action(target, Resize("response", 8.0, "burst"), RESPONSE, 8).cores == 2.0
    scaled = apply_action(target, SetReplicas("response", 9, 0.1, "load"), RESPONSE, 8)
    assert (scaled.replicas, scaled.cores) == (4, 0.5)
    retuned = apply_action(target, SetBatching("response", 4, 1.0, "replan"), RESPONSE, 8)
    assert retuned.batching == Batching(32, 1.0)
    assert apply_action(target, SetVariant("response", "int8", "cheaper"), RESPONSE,
                        8).variant == "int8"


def test_actions_are_described_for_people_in_rows():
    assert describe(SetBatching("intent", 4, 2.0, "r"), 8) == ("batching",
                                                               "batch 32 rows, 2 ms")
    assert describe(SetReplicas("intent", 3, 1.0, "r"), 8) == ("replicas",
                                                               "3 replicas at 1 cores")
