"""The manifest `sluice split` writes, judged by a real API server holding the CRD (schema
and CEL rules), as `kubectl apply` would judge it."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.local.test_split import split_json
from tests.trained import magika_model

pytestmark = pytest.mark.controlplane


@pytest.mark.parametrize("composition", ["isolated", "fused"])
def test_the_api_server_accepts_the_split_manifest(control_plane, namespace, tmp_path,
                                                    composition):
    report = split_json(magika_model(), tmp_path, "--parts", 4, "--estimate", "--batch", 1,
                        "--name", "magika", "--composition", composition)
    manifest = yaml.safe_load((tmp_path / "magika.yaml").read_text())
    result = control_plane.kubectl("create", "--dry-run=server", "--namespace", namespace,
                                   "-o", "json", "-f", "-", input=json.dumps(manifest))
    created = json.loads(result.stdout)["spec"]
    assert created["composition"] == composition
    assert [s["model"] for s in created["stages"]] == [
        s["model"] for s in manifest["spec"]["stages"]]
    assert [s["model"]["uri"] for s in created["stages"]] == [p["uri"] for p in report["parts"]]
