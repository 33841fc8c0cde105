"""The controller manager's garbage collector removes objects whose owner is gone."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.controlplane


def test_owned_object_is_collected_after_its_owner_is_deleted(control_plane, namespace):
    control_plane.kubectl("create", "configmap", "owner", "-n", namespace)
    owner = json.loads(
        control_plane.kubectl("get", "configmap", "owner", "-n", namespace, "-o", "json").stdout
    )
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
        "data": {"k": "v"},
    }
    control_plane.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(child))
    control_plane.kubectl("delete", "configmap", "owner", "-n", namespace)

    def child_gone() -> bool:
        got = control_plane.kubectl(
            "get", "configmap", "child", "-n", namespace, "--ignore-not-found", "-o", "name"
        )
        return got.stdout.strip() == ""

    control_plane.wait_for(child_gone, timeout=120, what="the garbage collector")
