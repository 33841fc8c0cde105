"""The local base image: Debian bookworm's Python 3.11 from debootstrap, imported into the
tooling's podman storage.

It stands in for ``python:3.11-slim-bookworm``, which no registry reachable here serves:
both Dockerfiles build on it through ``--build-arg PYTHON_IMAGE``. It is rebuilt only when
:data:`RECIPE` changes: the image carries the recipe's digest as a label.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.images.mounts import remove_tree
from tests.images.podman import ImageError, Podman, run_logged

IMAGE = "localhost/sluice-base-python:3.11-bookworm"
RECIPE_LABEL = "sluice.dev/base-recipe"
#: Left behind by a builder that was killed; made only under the build lock.
WORK_PREFIX = ".base-work-"

# pip before 24.2 (bookworm's is 23.0) trusts only the certifi bundle inside it, not the
# system's store. This points it at the system's, which builds replace with the build
# machine's (docs/images.md: a TLS-inspecting proxy's CA).
_PIP_CONF = """\
# tests/images: pip trusts the system's CA bundle (builds mount the host's over it).
[global]
cert = /etc/ssl/certs/ca-certificates.crt
"""


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the base image's content; its digest keys the cache."""

    suite: str
    mirror: str
    #: Installed on top of debootstrap's minbase, which already has groupadd and useradd
    #: (passwd), tar and the C++ runtime that onnxruntime's wheels link against.
    packages: tuple[str, ...]
    #: Emptied after the install: package caches and lists, logs, device nodes (podman
    #: gives every container a /dev of its own).
    emptied: tuple[str, ...]
    #: Files written into the tree (path relative to its root, text).
    files: tuple[tuple[str, str], ...]
    #: ``podman import --change`` instructions: the image's configuration.
    changes: tuple[str, ...]

    def digest(self) -> str:
        """Hex SHA-256 of the recipe."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


RECIPE = Recipe(
    suite="bookworm",
    mirror="http://deb.debian.org/debian",
    # python-is-python3: the Dockerfiles call `python`; ca-certificates: pip's trust store.
    packages=("python3", "python3-venv", "python-is-python3", "ca-certificates"),
    emptied=("dev", "var/cache/apt", "var/lib/apt/lists", "var/log"),
    # The build machine's name and resolver would otherwise be baked in.
    files=(("etc/hostname", ""), ("etc/resolv.conf", ""), ("etc/pip.conf", _PIP_CONF)),
    changes=("ENV LANG=C.UTF-8", 'CMD ["python3"]'),
)


def is_current(podman: Podman) -> bool:
    """True when the local base image exists and was built from :data:`RECIPE`."""
    return podman.inspect(IMAGE, f'{{{{index .Labels "{RECIPE_LABEL}"}}}}') == RECIPE.digest()


def ensure(podman: Podman) -> bool:
    """Build and import the base image unless it is current; True when it was built.

    The caller holds the build lock.
    """
    for stale in podman.cache.glob(f"{WORK_PREFIX}*"):
        remove_tree(stale)
    if is_current(podman):
        return False
    log = podman.fresh_log("base")
    previous = podman.inspect(IMAGE, "{{.Id}}")
    work = Path(tempfile.mkdtemp(dir=podman.cache, prefix=WORK_PREFIX))
    try:
        rootfs = work / "rootfs"
        _debootstrap(rootfs, log)
        _trim(rootfs)
        _import(podman, rootfs, log)
    finally:
        remove_tree(work)
    if previous and previous != podman.inspect(IMAGE, "{{.Id}}"):
        # Refused while images built on it remain; then it goes with them (`clean`).
        podman("rmi", previous, log=log, check=False)
    return True


def _debootstrap(rootfs: Path, log: Path) -> None:
    run_logged(
        ["debootstrap", "--variant=minbase", f"--include={','.join(RECIPE.packages)}",
         RECIPE.suite, str(rootfs), RECIPE.mirror],
        log=log, timeout_s=1800,
    )
    # The image's tag promises 3.11: a suite with another python3 must not pass for it.
    if not (rootfs / "usr/bin/python3.11").exists():
        raise ImageError(f"{RECIPE.suite}'s python3 is not Python 3.11 (see {log})")


def _trim(rootfs: Path) -> None:
    for relative in RECIPE.emptied:
        for entry in (rootfs / relative).iterdir():
            if entry.is_dir() and not entry.is_symlink():
                remove_tree(entry)
            else:
                entry.unlink()
    for relative, text in RECIPE.files:
        (rootfs / relative).write_text(text)


def _import(podman: Podman, rootfs: Path, log: Path) -> None:
    changes = [*RECIPE.changes, f"LABEL {RECIPE_LABEL}={RECIPE.digest()}"]
    with log.open("a") as errors:
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                               stdout=subprocess.PIPE, stderr=errors)
    assert tar.stdout is not None
    try:
        podman("import", *[f"--change={c}" for c in changes], "-", IMAGE,
               log=log, stdin=tar.stdout, timeout_s=900)
    finally:
        tar.stdout.close()
        status = tar.wait()
    if status != 0:
        raise ImageError(f"tar of {rootfs} exited with {status} (see {log})")

