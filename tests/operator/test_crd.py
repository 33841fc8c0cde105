"""Static checks of the CRD file; the API server checks it for real in the control-plane tests."""

import pytest

from tests.operator.crd import CHART_CRD_PATH, CRD_PATH, crd, example, schema


def walk(node, path="$"):
    yield path, node
    for key, prop in (node.get("properties") or {}).items():
        yield from walk(prop, f"{path}.{key}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")


def test_chart_ships_the_same_crd_byte_for_byte():
    assert CHART_CRD_PATH.read_bytes() == CRD_PATH.read_bytes()


def test_every_field_is_described():
    undescribed = [path for path, node in walk(schema())
                   if path != "$.metadata" and not node.get("description")]
    assert undescribed == []


def test_names_and_columns():
    spec = crd()["spec"]
    assert (spec["group"], spec["names"]["kind"], spec["scope"]) == (
        "sluice.dev", "InferencePipeline", "Namespaced")
    # Not `ip`: since Kubernetes 1.33 that is ipaddresses.networking.k8s.io.
    assert spec["names"]["shortNames"] == ["infpipe", "pipeline"]
    (version,) = spec["versions"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Ready", "SLO", "Stages", "Endpoint", "Age"]


def unknown_fields(obj, node, path="$"):
    """Fields the API server would prune because the schema does not declare them."""
    if isinstance(obj, dict) and "properties" in node:
        for key, value in obj.items():
            if key not in node["properties"]:
                yield f"{path}.{key}"
            else:
                yield from unknown_fields(value, node["properties"][key], f"{path}.{key}")
    elif isinstance(obj, list) and "items" in node:
        for i, item in enumerate(obj):
            yield from unknown_fields(item, node["items"], f"{path}[{i}]")


def test_example_uses_only_declared_fields():
    assert list(unknown_fields(example(), schema())) == []


@pytest.mark.parametrize("stage_list", ["$.spec.stages", "$.status.stages", "$.status.conditions"])
def test_lists_are_maps_keyed_by_name_or_type(stage_list):
    node = dict(walk(schema()))[stage_list]
    assert node["x-kubernetes-list-type"] == "map"
