"""The process node's accounting and its reading of pod specs (pure parts)."""

from __future__ import annotations

import pytest

from tests.nodeagent.accounting import does_not_fit
from tests.nodeagent.images import UnknownImage, container_argv, repository, resolve
from tests.nodeagent.podspec import PodContext, container_plan, expand

NODE = {"cpu": 1.5, "memory": 4 * 2**30}


def test_a_request_beyond_the_node_is_infeasible_and_beyond_what_is_free_deferred():
    others = {"a": {"cpu": 0.5, "memory": 2**30}, "me": {"cpu": 0.25, "memory": 2**28}}
    assert does_not_fit({"cpu": 1.0, "memory": 2**28}, "me", NODE, others) is None
    reason, message = does_not_fit({"cpu": 1.25, "memory": 2**28}, "me", NODE, others)
    assert reason == "Deferred"
    assert "cpu" in message
    assert does_not_fit({"cpu": 2.0, "memory": 0}, "me", NODE, others)[0] == "Infeasible"
    assert does_not_fit({"cpu": 0.1, "memory": 5 * 2**30}, "me", NODE, {})[0] == "Infeasible"


def pod(container: dict) -> dict:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                         "labels": {"app": "x"}},
            "spec": {"containers": [container]}}


def test_a_container_is_composed_as_kubernetes_composes_it():
    container = {"name": "c", "image": "ghcr.io/acme/sluice-runtime:1.2",
                 "args": ["serve", "--host", "$(POD_IP)", "$$(literal)"],
                 "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {
                     "fieldPath": "status.podIP"}}},
                         {"name": "APP", "valueFrom": {"fieldRef": {
                             "fieldPath": "metadata.labels['app']"}}},
                         {"name": "CORES", "valueFrom": {"resourceFieldRef": {
                             "resource": "limits.cpu", "divisor": "1m"}}},
                         {"name": "TOKEN", "valueFrom": {"secretKeyRef": {
                             "name": "s", "key": "t"}}}],
                 "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}},
                 "readinessProbe": {"grpc": {"port": 8001}, "periodSeconds": 1}}
    context = PodContext("10.213.1.2", "10.213.0.1", "n", {("Secret", "s"): {"t": "xyz"}})
    plan = container_plan(pod(container), container, context)
    assert plan.error is None
    assert plan.argv[-4:] == ("serve", "--host", "10.213.1.2", "$(literal)")
    assert plan.env["APP"] == "x"
    assert plan.env["CORES"] == "1500"
    assert plan.env["TOKEN"] == "xyz"
    assert (plan.cpu_request_cores, plan.cpu_limit_cores) == (1.5, 1.5)
    assert plan.memory_limit_bytes == 2**30
    assert (plan.readiness.kind, plan.readiness.port, plan.readiness.period_s) == (
        "grpc", 8001, 1.0)


def test_what_the_node_cannot_run_fails_the_container_with_the_kubelets_reason():
    unknown = {"name": "c", "image": "example.invalid/x:1"}
    plan = container_plan(pod(unknown), unknown, PodContext("ip", "host", "n"))
    assert plan.error_reason == "ErrImagePull"
    assert "example.invalid/x:1" in plan.error
    missing = {"name": "c", "image": "pause", "env": [{"name": "A", "valueFrom": {
        "configMapKeyRef": {"name": "absent", "key": "k"}}}]}
    plan = container_plan(pod(missing), missing, PodContext("ip", "host", "n"))
    assert plan.error_reason == "CreateContainerConfigError"
    with pytest.raises(UnknownImage):
        resolve("nothing-here")


@pytest.mark.parametrize(("image", "name"), [
    ("sluice-runtime:dev", "sluice-runtime"), ("a.io/b/c/pause:3.10", "pause"),
    ("queue@sha256:ab", "queue"), ("registry:5000/x/y:tag", "y")])
def test_images_are_known_by_repository_name(image, name):
    assert repository(image) == name


def test_command_replaces_the_entrypoint_and_args_the_defaults():
    image = resolve("pause")
    assert container_argv(image, None, None) == ["sleep", "infinity"]
    assert container_argv(image, ["sh", "-c"], ["exit 3"]) == ["sh", "-c", "exit 3"]
    assert expand("$(A)-$(B)", {"A": "1"}) == "1-$(B)"
