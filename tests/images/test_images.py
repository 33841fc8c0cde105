"""Both images, built by podman on the local base, run the way the chart and a restricted
pod run them: the runtime answers an OIP request, the operator reconciles a pipeline."""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.controlplane.process import LOOPBACK, free_port
from tests.images import base
from tests.images.build import OPERATOR, RUNTIME
from tests.images.containers import Container, restricted, running
from tests.operator.cluster import Cluster, pipeline_manifest
from tests.runtime.harness import START_TIMEOUT_S, infer, wait_until
from tests.runtime.test_pipeline import STAGES, by_hand, utterances

#: The users the images' USER lines and the chart name.
RUNTIME_USER = "65532:65532"
OPERATOR_USER = "10001:10001"
#: What the operator renders for the example pipeline (isolated: a service per stage).
EXAMPLE_SERVICES = {f"dialogue-{name}" for name in (*STAGES, "router")}


def alive(container: Container) -> None:
    """Fail at once, with its output, when the container has exited."""
    if not container.is_running():
        raise AssertionError(f"{container.name} exited:\n{container.logs()}")


def test_runtime_image_answers_a_request_as_non_root_on_a_read_only_root(images, tmp_path):
    port = free_port()
    options = [
        *restricted(RUNTIME_USER),
        # A user-space forwarder publishes the port on loopback only: no firewall rules.
        "--network=slirp4netns:port_handler=slirp4netns",
        f"--publish={LOOPBACK}:{port}:8001",
    ]
    with running(images.podman, RUNTIME.tag, options) as container:
        client = triton.InferenceServerClient(f"{LOOPBACK}:{port}")

        def ready() -> bool:
            alive(container)
            try:
                return client.is_server_ready(client_timeout=5)
            except InferenceServerException:
                return False

        wait_until(ready, START_TIMEOUT_S, f"the runtime in {container.name} to be ready")
        x = utterances(rows=3, seed=7)
        tokens = infer(client, "dialogue", {"utterance": x}).as_numpy("tokens")
        for stage in STAGES:
            container.copy_out(f"/models/{stage}.onnx", tmp_path)
        # The image's own models, run by hand here, give what the container answered.
        np.testing.assert_array_equal(tokens, by_hand(tmp_path, x))

        assert container.exec("id", "-u").stdout.split() == [RUNTIME_USER.split(":")[0]]
        written = container.exec("touch", "/opt/sluice/written")
        assert written.returncode != 0
        assert "Read-only file system" in written.stderr
        assert container.ports() == f"8001/tcp -> {LOOPBACK}:{port}"
        # Every model's weights were prepared in the tmpfs, none fell back to one thread.
        assert "cannot prepare shared weights" not in container.logs()


@pytest.mark.controlplane
def test_operator_image_answers_health_and_reconciles_a_pipeline(images, control_plane,
                                                                 namespace, tmp_path):
    # The admin kubeconfig, readable by the container's user alone. (The chart's RBAC is
    # the operator tests' subject; here it is the image.)
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copyfile(control_plane.kubeconfig, kubeconfig)
    uid, gid = (int(n) for n in OPERATOR_USER.split(":"))
    os.chown(kubeconfig, uid, gid)
    kubeconfig.chmod(0o600)
    health_port = free_port()
    options = [
        *restricted(OPERATOR_USER),
        # The API server listens on the host's loopback.
        "--network=host",
        f"--volume={kubeconfig}:/etc/sluice/kubeconfig:ro",
        "--env=KUBECONFIG=/etc/sluice/kubeconfig",
        f"--env=SLUICE_HEALTH_HOST={LOOPBACK}",
        f"--env=SLUICE_HEALTH_PORT={health_port}",
        f"--env=SLUICE_NAMESPACES={namespace}",
        f"--env=SLUICE_RUNTIME_IMAGE={RUNTIME.tag}",
    ]
    with running(images.podman, OPERATOR.tag, options) as container:

        def healthy() -> bool:
            alive(container)
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{health_port}/healthz",
                                            timeout=5) as response:
                    return response.status == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_until(healthy, START_TIMEOUT_S, f"/healthz of the operator in {container.name}")
        cluster = Cluster(control_plane, None, namespace)
        cluster.apply(pipeline_manifest())
        try:
            services = cluster.wait(
                lambda: (found := cluster.children("dialogue")) and set(found) == EXAMPLE_SERVICES
                and found,
                what=f"Knative Services {sorted(EXAMPLE_SERVICES)}",
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\noperator log:\n{container.logs()}") from None
        rendered = {c["image"] for s in services.values()
                    for c in s["spec"]["template"]["spec"]["containers"]}
        assert rendered == {RUNTIME.tag}
        assert container.exec("id", "-u").stdout.split() == [str(uid)]


def test_images_were_built_on_the_local_base(images):
    """The Dockerfiles' default base stays the public image; these were built on ours."""
    for image in (RUNTIME, OPERATOR):
        assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in image.dockerfile.read_text()
        history = images.podman("history", "--no-trunc", "--format", "{{.ID}}", image.tag)
        base_id = images.podman.inspect(base.IMAGE, "{{.Id}}")
        assert base_id in history.stdout.split(), image.tag

