"""What kubectl makes of InferencePipeline's short names, against a real API server.

When two served resources claim the same short name, kubectl picks one by discovery order
(built-in groups first) and only warns: `kubectl get ip` has listed IP addresses since
Kubernetes 1.33 made ipaddresses.networking.k8s.io (short name `ip`) served by default.
"""

import json

import pytest

from tests.operator.cluster import pipeline_manifest
from tests.operator.crd import crd

pytestmark = pytest.mark.controlplane

SHORT_NAME = "infpipe"
GROUP = "sluice.dev"
KIND = "InferencePipeline"


def served_resources(control_plane):
    return json.loads(control_plane.kubectl("api-resources", "-o", "json").stdout)["resources"]


def names_of(resource):
    """Every name kubectl resolves to this resource: plural, singular, short names."""
    return {resource["name"], resource.get("singularName", ""),
            *resource.get("shortNames", [])}


def test_api_resources_lists_the_short_name(control_plane):
    (ours,) = [r for r in served_resources(control_plane)
               if (r.get("group"), r["kind"]) == (GROUP, KIND)]
    assert ours["name"] == "inferencepipelines"
    assert SHORT_NAME in ours["shortNames"]
    assert ours["namespaced"] is True


@pytest.mark.parametrize("short_name", crd()["spec"]["names"]["shortNames"])
def test_no_other_served_resource_claims_the_short_name(control_plane, short_name):
    claimants = sorted(f"{r['name']}.{r.get('group') or 'core'}"
                       for r in served_resources(control_plane)
                       if (r.get("group"), r["kind"]) != (GROUP, KIND)
                       and short_name in names_of(r))
    assert claimants == [], f"`kubectl get {short_name}` may resolve to {claimants}"


def test_kubectl_get_short_name_lists_inference_pipelines(control_plane, namespace):
    control_plane.kubectl("apply", "--namespace", namespace, "-f", "-",
                          input=json.dumps(pipeline_manifest("short")))
    listed = control_plane.kubectl("get", SHORT_NAME, "--namespace", namespace, "-o", "name")
    assert listed.stdout.split() == [f"inferencepipeline.{GROUP}/short"]
    # kubectl warns on stderr when a short name could also mean another resource.
    assert listed.stderr == ""
    one = json.loads(control_plane.kubectl("get", SHORT_NAME, "short", "--namespace", namespace,
                                           "-o", "json").stdout)
    assert (one["apiVersion"], one["kind"]) == (f"{GROUP}/v1alpha1", KIND)
