"""Both product images, built by podman from the repository's Dockerfiles on the local base,
and the whole sequence the make targets and the tests run: tools, base, images.

Podman's layer cache (in the tooling's storage) makes a rebuild with unchanged sources a
matter of seconds; a changed source file redoes the layers from its ``COPY`` on.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tests.images import base, tools
from tests.images.podman import Podman

REPO = Path(__file__).resolve().parents[2]
#: The build machine's trust store, mounted over the image's during RUN steps only, so
#: pip trusts what the machine trusts (here a TLS-inspecting proxy) and no image keeps it.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

T = TypeVar("T")


@dataclass(frozen=True)
class ProductImage:
    """One of the images the project ships."""

    name: str
    dockerfile: Path

    @property
    def tag(self) -> str:
        """The local name it is built as: the chart's default name, under localhost/."""
        return f"localhost/sluice-{self.name}:dev"

    @property
    def build_stage_tag(self) -> str:
        """The name its ``build`` stage is kept under, so pruning keeps that stage's cache."""
        return f"localhost/sluice-{self.name}-build:dev"


RUNTIME = ProductImage("runtime", REPO / "runtime" / "Dockerfile")
OPERATOR = ProductImage("operator", REPO / "operator" / "Dockerfile")
PRODUCT_IMAGES = (RUNTIME, OPERATOR)


@dataclass
class Outcome:
    """What :func:`ensure_all` did, and how long each step took."""

    podman: Podman
    #: Debian packages installed by this call.
    installed: list[str] = field(default_factory=list)
    #: Whether the base image was (re)built by this call.
    base_built: bool = False
    #: Seconds per step, in order.
    seconds: dict[str, float] = field(default_factory=dict)


def build_image(podman: Podman, image: ProductImage) -> None:
    """``podman build`` one image from the repository root on the local base."""
    log = podman.fresh_log(image.name)
    trust = [f"--volume={HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"] if HOST_CA_BUNDLE.is_file() else []
    options = [
        # Every base is local: a pull would reach for a registry this machine cannot.
        "--pull=never",
        # RUN steps reach PyPI over the host's network: no bridge, no firewall rules.
        "--network=host",
        # Build steps ignore containers.conf's default_ulimits.
        *[f"--ulimit={limit}" for limit in podman.ulimits()],
        f"--build-arg=PYTHON_IMAGE={base.IMAGE}",
        *trust,
        f"--file={image.dockerfile}",
    ]
    # The build stage first, under a name of its own; the whole image then reuses it.
    podman("build", *options, "--target=build", f"--tag={image.build_stage_tag}", str(REPO),
           log=log, timeout_s=1800)
    podman("build", *options, f"--tag={image.tag}", str(REPO), log=log, timeout_s=1800)


def prune(podman: Podman) -> None:
    """Remove images no name reaches: what earlier builds left when sources changed.

    Each changed source leaves a few hundred megabytes of superseded layers behind; the
    layers current builds start from all carry a name, or lead to one that does.
    """
    podman("image", "prune", "--force", log=podman.fresh_log("prune"))


def ensure_all(cache: Path | None = None,
               progress: Callable[[str], None] = lambda _: None) -> Outcome:
    """Install the tools, then build the base image and both images, each only if needed.

    ``progress`` hears of each step as it starts. One builder at a time per cache.
    """
    podman = Podman.configured(cache)
    outcome = Outcome(podman)
    with (podman.cache / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes

        def step(name: str, action: Callable[[], T]) -> T:
            progress(name)
            started = time.monotonic()
            result = action()
            outcome.seconds[name] = time.monotonic() - started
            return result

        outcome.installed = step("tools", lambda: tools.ensure_installed(podman.fresh_log("apt")))
        outcome.base_built = step("base image", lambda: base.ensure(podman))
        for image in PRODUCT_IMAGES:
            step(f"{image.name} image", lambda image=image: build_image(podman, image))
        step("prune", lambda: prune(podman))
    return outcome
