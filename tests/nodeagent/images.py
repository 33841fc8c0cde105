"""What an image runs on a process node: a table from image names to local commands.

An image is known by its repository's last path element (``ghcr.io/x/sluice-runtime:1.2``
and ``sluice-runtime:dev`` both run the installed runtime); its entrypoint is the local
command, its default arguments the image's ``CMD``. An image the table does not know
fails the pod visibly (``ErrImagePull``), never silently.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LocalImage:
    """An image as a local command: its entrypoint and default arguments."""

    entrypoint: tuple[str, ...]
    default_args: tuple[str, ...] = ()


class UnknownImage(LookupError):
    """The node has no local command for this image."""


#: The images this node runs, by repository name.
IMAGES: Mapping[str, LocalImage] = {
    "sluice-runtime": LocalImage((sys.executable, "-m", "sluice_runtime")),
    "sluice-operator": LocalImage((sys.executable, "-m", "sluice_operator")),
    # Kubernetes' pause container: holds a pod's place and does nothing.
    "pause": LocalImage(("sleep", "infinity")),
}


def repository(image: str) -> str:
    """``image``'s repository name: no registry, path, tag or digest."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return name.split(":", 1)[0]


def resolve(image: str, table: Mapping[str, LocalImage] = IMAGES) -> LocalImage:
    """The local command for ``image``; UnknownImage naming the images known."""
    try:
        return table[repository(image)]
    except KeyError:
        raise UnknownImage(f"image {image} is not one this node runs (it runs "
                           f"{', '.join(sorted(table))})") from None


def container_argv(image: LocalImage, command: list[str] | None,
                   args: list[str] | None) -> list[str]:
    """The process's argv as Kubernetes composes it: ``command`` replaces the entrypoint
    (and drops the image's arguments), ``args`` replace the image's arguments."""
    if command:
        return [*command, *(args or [])]
    return [*image.entrypoint, *(args if args is not None else image.default_args)]
