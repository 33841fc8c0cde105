"""Containers of the built images, run the way a restricted pod runs them, always removed."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.images.podman import Podman


def restricted(user: str) -> list[str]:
    """``podman run`` options for the restricted Pod Security Standard, as the chart asks.

    A numeric non-root ``user`` (``UID:GID``), a read-only root filesystem with a tmpfs on
    /tmp (the chart's emptyDir), no capabilities, no privilege escalation; podman's default
    seccomp profile stands for ``RuntimeDefault``.
    """
    return ["--read-only", "--tmpfs=/tmp", f"--user={user}", "--cap-drop=all",
            "--security-opt=no-new-privileges"]


@dataclass(frozen=True)
class Container:
    """A running container, by name."""

    podman: Podman
    name: str

    def is_running(self) -> bool:
        state = self.podman("container", "inspect", "--format", "{{.State.Running}}", self.name,
                            check=False)
        return state.stdout.strip() == "true"

    def logs(self) -> str:
        """Everything the container wrote to stdout and stderr."""
        return self.podman("logs", self.name, check=False).stdout

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the container as its own user; never raises on failure."""
        return self.podman("exec", self.name, *argv, check=False)

    def ports(self) -> str:
        """Its published ports, as ``podman port`` prints them."""
        return self.podman("port", self.name).stdout.strip()

    def copy_out(self, path: str, directory: Path) -> Path:
        """Copy file ``path`` out of the container into ``directory``; return the copy."""
        target = directory / Path(path).name
        self.podman("cp", f"{self.name}:{path}", str(target))
        return target


@contextmanager
def running(podman: Podman, image: str, options: Sequence[str]) -> Iterator[Container]:
    """Run ``image`` detached with ``options``; removed, even if never started, on exit."""
    container = Container(podman, f"sluice-test-{secrets.token_hex(4)}")
    try:
        podman("run", "--detach", f"--name={container.name}", *options, image)
        yield container
    finally:
        podman("rm", "--force", "--time=10", "--ignore", container.name, check=False)
