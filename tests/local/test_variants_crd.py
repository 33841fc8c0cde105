"""The manifest `sluice variants` writes, judged by a real API server holding the CRD
(schema and CEL rules), as `kubectl apply` would judge it."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.local.test_variants_command import MANIFEST, STAGE, sluice
from tests.trained import magika_model

pytestmark = pytest.mark.controlplane


def test_the_api_server_accepts_the_updated_manifest(control_plane, namespace, tmp_path):
    done = sluice("variants", magika_model(), "--manifest", MANIFEST, "--stage", STAGE,
                  "--out", tmp_path, "--variants", "int8,int8-per-channel",
                  "--samples-count", "16", "--no-profile")
    assert done.returncode == 0, done.stderr
    manifest = yaml.safe_load((tmp_path / "magika.yaml").read_text())
    result = control_plane.kubectl("create", "--dry-run=server", "--namespace", namespace,
                                   "-o", "json", "-f", "-", input=json.dumps(manifest))
    created = json.loads(result.stdout)
    variants = created["spec"]["stages"][0]["variants"]
    assert [v["name"] for v in variants] == ["int8", "int8-per-channel"]
    assert variants == manifest["spec"]["stages"][0]["variants"]
