import pytest
from sluice_operator.reconcile import Notice, controlled_by, stale_children, transition_notices


def child(kind, name, uid="uid-1", controller=True):
    return {"kind": kind, "metadata": {"name": name, "ownerReferences": [
        {"uid": uid, "controller": controller}]}}


def test_controlled_by():
    assert controlled_by(child("Service", "a"), "uid-1")
    assert not controlled_by(child("Service", "a", controller=False), "uid-1")
    assert not controlled_by(child("Service", "a", uid="other"), "uid-1")
    assert not controlled_by({"metadata": {"name": "a"}}, "uid-1")


def test_stale_children_are_ours_and_no_longer_rendered():
    observed = [child("Service", "p-a"), child("Service", "p-b"),
                child("Service", "p-c", uid="previous-pipeline"), child("ConfigMap", "p-a")]
    desired = [("Service", "p-a")]
    assert [(o["kind"], o["metadata"]["name"]) for o in
            stale_children(observed, desired, "uid-1")] == [
        ("Service", "p-b"), ("ConfigMap", "p-a")]


def ready(status, reason, message="m"):
    return {"conditions": [{"type": "Ready", "status": status, "reason": reason,
                            "message": message}]}


@pytest.mark.parametrize(
    ("before", "after", "notices"),
    [
        ({}, ready("True", "Ready"), [Notice("Normal", "Ready", "m")]),
        ({}, ready("Unknown", "StagesNotReady"), []),
        (ready("Unknown", "StagesNotReady"), ready("True", "Ready"),
         [Notice("Normal", "Ready", "m")]),
        (ready("True", "Ready"), ready("True", "Ready", "other text"), []),
        (ready("True", "Ready"), ready("False", "StageFailed"),
         [Notice("Warning", "StageFailed", "m")]),
        (ready("False", "StageFailed"), ready("False", "StageFailed", "x"), []),
        (ready("False", "StageFailed"), ready("False", "InvalidModelURI"),
         [Notice("Warning", "InvalidModelURI", "m")]),
    ],
)
def test_events_mark_ready_transitions_only(before, after, notices):
    assert transition_notices(before, after) == notices
